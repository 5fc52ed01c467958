// A bridge that starts while another process still holds the SQLite file (the one before it
// closing after SIGTERM, checkpointing its WAL) waits for the lock instead of failing to start
// with "database is locked": busy_timeout is the first setting made on the connection.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openSqliteDatabase } from "../../src/store/sqlite_schema.ts";
import { lockFromOutside } from "../helpers/sqlite_lock.ts";

Deno.test("openSqliteDatabase() waits for a lock another process holds", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sqlite_locked_" });
  try {
    const path = `${dir}/bridge.sqlite`;
    // A file in rollback-journal mode, so an exclusive transaction locks out the WAL switch.
    const first = new DatabaseSync(path);
    first.exec("PRAGMA journal_mode = DELETE; CREATE TABLE t (x)");
    first.close();
    // Held 700 ms: the open below waits on this thread, where nothing could let go.
    const unlock = await lockFromOutside(path, 700);
    const db = openSqliteDatabase(path);
    try {
      const mode = db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
      assert.equal(mode.journal_mode, "wal");
    } finally {
      db.close();
    }
    await unlock();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
