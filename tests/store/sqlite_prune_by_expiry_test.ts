// pruneExpired() finds rows past their time by their expiry, wherever they are in their table:
// a cut HISTORY_RETENTION_DAYS or a clock set back writes rows that expire before older ones,
// and a pruner that looked only at the oldest rows by id kept them as long as those lived. The
// expiry indexes it uses are created on the first open of a file from before them.

import assert from "node:assert/strict";
import { pruneExpired } from "../../src/store/sqlite_journal.ts";
import { openSqliteDatabase } from "../../src/store/sqlite_schema.ts";

const NOW = Date.UTC(2026, 5, 1);
const DAY = 24 * 3600_000;
/** More rows than one prune chunk, all still kept, ahead of the expired one in each table. */
const AHEAD = 5_001;

const EXPIRY_INDEXES = [
  "log_expiry",
  "history_expiry",
  "dedup_expiry",
  "signed_bodies_expiry",
  "forget_cuts_expiry",
  "unanswered_expiry",
];

function count(db: ReturnType<typeof openSqliteDatabase>, sql: string): number {
  return Number((db.prepare(sql).get() as { n: number }).n);
}

Deno.test("pruneExpired() deletes a row past its expiry behind a chunk of rows kept longer", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "bridge-prune-expiry-" });
  const db = openSqliteDatabase(`${dir}/bridge.sqlite`);
  try {
    db.exec("BEGIN");
    const later = NOW + 300 * DAY;
    const earlier = NOW - DAY;
    const rows: Array<[string, (i: number, expiry: number) => Array<string | number>]> = [
      ["INSERT INTO log (agent_id, seq, frame, expires_at) VALUES (?, ?, '{}', ?)", (i, e) => [
        "a",
        i,
        e,
      ]],
      [
        "INSERT INTO history (follower_id, n, item, expires_at) VALUES (?, ?, '{}', ?)",
        (i, e) => [`o${i}`, 1, e],
      ],
      ["INSERT INTO dedup (keys, expires_at) VALUES ('[]', ?)", (_i, e) => [e]],
      ["INSERT INTO signed_bodies (entries, expires_at) VALUES ('[]', ?)", (_i, e) => [e]],
      ["INSERT INTO forget_cuts (follower_id, cut, expires_at) VALUES (?, '{}', ?)", (i, e) => [
        `o${i}`,
        e,
      ]],
      [
        "INSERT INTO unanswered (follower_id, n, at, expires_at) VALUES (?, 1, 0, ?)",
        (i, e) => [`o${i}`, e],
      ],
    ];
    for (const [sql, args] of rows) {
      const insert = db.prepare(sql);
      for (let i = 0; i < AHEAD; i++) insert.run(...args(i, later));
      insert.run(...args(AHEAD, earlier));
    }
    db.exec("COMMIT");

    pruneExpired(db, NOW);

    for (const table of ["log", "history", "dedup", "signed_bodies", "forget_cuts", "unanswered"]) {
      await t.step(`${table}: the expired row is gone, the rest kept`, () => {
        assert.equal(
          count(db, `SELECT count(*) AS n FROM ${table} WHERE expires_at <= ${NOW}`),
          0,
        );
        assert.equal(count(db, `SELECT count(*) AS n FROM ${table}`), AHEAD);
      });
    }
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openSqliteDatabase() adds the expiry indexes to a file from before them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bridge-prune-index-" });
  const path = `${dir}/bridge.sqlite`;
  try {
    const old = openSqliteDatabase(path);
    old.prepare("INSERT INTO history (follower_id, n, item, expires_at) VALUES ('o', 1, '{}', 1)")
      .run();
    for (const name of EXPIRY_INDEXES) old.exec(`DROP INDEX ${name}`);
    old.close();

    const db = openSqliteDatabase(path);
    try {
      const names = db.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%_expiry'",
      ).all().map((row) => row.name).sort();
      assert.deepEqual(names, [...EXPIRY_INDEXES].sort());
      const plan = db.prepare(
        "EXPLAIN QUERY PLAN SELECT id FROM history WHERE expires_at <= ? LIMIT 5000",
      ).all(NOW).map((row) => String(row.detail)).join("\n");
      assert.match(plan, /history_expiry/);
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
