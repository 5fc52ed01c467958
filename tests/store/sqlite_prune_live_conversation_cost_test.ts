// Review of retention15: the pruner moves a live conversation's rows past their time on to its
// last message's expiry, a chunk at a time; each chunk was found by the follower and its expiry,
// which walked again every row moved before it, so the work grew with the square of the
// conversation (1,000,000 rows: 25 s of the worker's thread, no commit applied meanwhile, each
// time those rows came due again). Eight times the rows must cost about eight times the time, not sixty.
import assert from "node:assert/strict";
import { pruneExpired } from "../../src/store/sqlite_journal.ts";
import { openSqliteDatabase } from "../../src/store/sqlite_schema.ts";

const DAY = 24 * 3600_000;

function pruneMs(rows: number): number {
  const dir = Deno.makeTempDirSync({ prefix: "bridge-prune-live-" });
  const db = openSqliteDatabase(`${dir}/bridge.sqlite`);
  try {
    const now = Date.now();
    const insert = db.prepare(
      "INSERT INTO history (follower_id, n, item, expires_at) VALUES (?, ?, '{}', ?)",
    );
    db.exec("BEGIN");
    for (let n = 1; n < rows; n++) insert.run("oLive", n, now - DAY + n);
    insert.run("oLive", rows, now + DAY);
    db.exec("COMMIT");
    const t = performance.now();
    pruneExpired(db, now);
    const ms = performance.now() - t;
    const left = db.prepare("SELECT count(*) AS c FROM history WHERE expires_at <= ?").get(now) as {
      c: number;
    };
    assert.equal(left.c, 0);
    return ms;
  } finally {
    db.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("moving a live conversation's expired rows costs in proportion to its rows", () => {
  const small = pruneMs(50_000);
  const large = pruneMs(400_000);
  assert.ok(
    large < small * 16,
    `50,000 rows: ${small.toFixed(0)} ms; 400,000: ${large.toFixed(0)} ms`,
  );
});
