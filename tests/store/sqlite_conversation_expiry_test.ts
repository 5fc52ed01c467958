// History on SQLite expires by conversation (README: HISTORY_RETENTION_DAYS after its last
// message): pruneExpired() keeps every row of a conversation whose last message is younger,
// however old its first, and deletes all of one whose last message's time has come, in chunks
// when it is longer than one.

import assert from "node:assert/strict";
import { pruneExpired } from "../../src/store/sqlite_journal.ts";
import { openSqliteDatabase } from "../../src/store/sqlite_schema.ts";

const DAY = 24 * 3600_000;
const T0 = Date.UTC(2026, 0, 1);
const RETENTION = 30 * DAY;

Deno.test("pruneExpired() expires a conversation by its last message", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "bridge-conversation-expiry-" });
  const db = openSqliteDatabase(`${dir}/bridge.sqlite`);
  const insert = db.prepare(
    "INSERT INTO history (follower_id, n, item, expires_at) VALUES (?, ?, '{}', ?)",
  );
  const rows = (f: string) =>
    Number(
      (db.prepare("SELECT count(*) AS n FROM history WHERE follower_id = ?").get(f) as {
        n: number;
      }).n,
    );
  try {
    // oLive wrote on days 0 and 20 and 40; oDone on day 0 and 5, 6,000 rows (over a chunk).
    for (const [n, day] of [[1, 0], [2, 20], [3, 40]]) {
      insert.run("oLive", n!, T0 + day! * DAY + RETENTION);
    }
    const contact = db.prepare("INSERT INTO contacts (follower_id, json) VALUES (?, ?)");
    for (const f of ["oLive", "oDone", "oKept"]) {
      const preview = { msg_type: "text", preview: "still going", direction: "in" };
      contact.run(f, JSON.stringify({ follower_id: f, agent_id: "ann", last_message: preview }));
    }
    insert.run("oKept", 1, T0 + 100 * DAY);
    db.exec("BEGIN");
    for (let n = 1; n <= 6_000; n++) {
      insert.run("oDone", n, T0 + (n < 6_000 ? 0 : 5) * DAY + RETENTION);
    }
    db.exec("COMMIT");

    await t.step("day 45: the live conversation is whole, the one done 40 days ago is gone", () => {
      pruneExpired(db, T0 + 45 * DAY);
      assert.equal(rows("oLive"), 3);
      assert.equal(rows("oDone"), 0);
    });

    await t.step(
      "a kept row past its own time waits for the last message's, not each prune",
      () => {
        const first = db.prepare(
          "SELECT expires_at AS e FROM history WHERE follower_id = 'oLive' AND n = 1",
        ).get() as { e: number };
        assert.equal(first.e, T0 + 40 * DAY + RETENTION);
      },
    );

    await t.step("day 70: its last message is 30 days old, and it goes", () => {
      pruneExpired(db, T0 + 70 * DAY);
      assert.equal(rows("oLive"), 0);
    });

    await t.step("a conversation gone takes its contact's preview, not the contact", () => {
      const json = (f: string) =>
        JSON.parse(
          (db.prepare("SELECT json FROM contacts WHERE follower_id = ?").get(f) as {
            json: string;
          }).json,
        );
      assert.equal(json("oDone").last_message, null);
      assert.equal(json("oDone").agent_id, "ann");
      assert.equal(json("oLive").last_message, null);
      assert.equal(json("oKept").last_message.preview, "still going");
    });
  } finally {
    db.close();
    await Deno.remove(dir, { recursive: true });
  }
});
