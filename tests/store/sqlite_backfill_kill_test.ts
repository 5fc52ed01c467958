// A bridge.sqlite from before the table of replies left unanswered gets it filled from history
// once, at its first open. Killed during that fill (a start on a big file: a second or more),
// the table stood empty, and the next open, finding it, never filled it: every reply the
// older bridge had left "sending" stayed so. The fill in a child process killed as soon as the
// table can be seen; the next open must find them all.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openSqliteDatabase } from "../../src/store/sqlite_schema.ts";

const ROWS = 200_000;
const SENDING_EVERY = 1_000;

Deno.test("a bridge.sqlite from before, its first open killed while filling the unanswered table: the next open finds them all", async () => {
  const dir = await Deno.makeTempDir({ prefix: "backfill-kill-" });
  const path = `${dir}/bridge.sqlite`;
  try {
    // The file as a bridge before the table left it: history only, some replies "sending".
    const old = openSqliteDatabase(path);
    old.exec("DROP TABLE unanswered");
    old.exec(`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ${ROWS})
      INSERT INTO history (follower_id, n, item, expires_at)
      SELECT 'o' || (i / 50), i % 50, '{"id":"r' || i || '","msg_type":"text","send_time":1,' ||
        '"msg":{"content":"' || hex(randomblob(100)) || '"},"direction":"out","status":"' ||
        (CASE WHEN i % ${SENDING_EVERY} = 0 THEN 'sending' ELSE 'sent' END) || '"}',
        9999999999999 FROM c`);
    old.close();

    const schema = new URL("../../src/store/sqlite_schema.ts", import.meta.url).href;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { openSqliteDatabase } from ${JSON.stringify(schema)};` +
        `openSqliteDatabase(${JSON.stringify(path)}).close();`,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const look = new DatabaseSync(path);
    let seen = false;
    try {
      const table = look.prepare(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'unanswered'",
      );
      const deadline = Date.now() + 60_000;
      while (!seen && Date.now() < deadline) {
        seen = table.get() !== undefined;
        if (!seen) await new Promise((r) => setTimeout(r, 2));
      }
    } finally {
      look.close();
    }
    try {
      child.kill("SIGKILL");
    } catch (error) {
      // The child finished its open first (a loaded machine saw the table only at commit).
      if (!(error instanceof TypeError)) throw error;
    }
    await child.status;
    assert.ok(seen, "the child made the table");

    const next = openSqliteDatabase(path);
    try {
      const { count } = next.prepare("SELECT count(*) AS count FROM unanswered").get() as {
        count: number;
      };
      assert.equal(count, ROWS / SENDING_EVERY);
    } finally {
      next.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
