// A bridge that starts while another process still holds the SQLite file (the one before it
// closing after SIGTERM, checkpointing its WAL) waits for the lock instead of failing to start
// with "database is locked": busy_timeout is the first setting made on the connection.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openSqliteDatabase } from "../../src/store/sqlite_schema.ts";

const HOLDER = `
import { DatabaseSync } from "node:sqlite";
const db = new DatabaseSync(Deno.args[0]);
db.exec("BEGIN EXCLUSIVE");
console.log("locked");
await new Promise((r) => setTimeout(r, 700));
db.exec("COMMIT");
db.close();
`;

Deno.test("openSqliteDatabase() waits for a lock another process holds", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sqlite_locked_" });
  try {
    const path = `${dir}/bridge.sqlite`;
    // A file in rollback-journal mode, so an exclusive transaction locks out the WAL switch.
    const first = new DatabaseSync(path);
    first.exec("PRAGMA journal_mode = DELETE; CREATE TABLE t (x)");
    first.close();
    const holder = new Deno.Command(Deno.execPath(), {
      args: ["eval", HOLDER, path],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let said = "";
    while (!said.includes("locked")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the lock holder ended before locking");
      said += value;
    }
    const db = openSqliteDatabase(path);
    try {
      const mode = db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
      assert.equal(mode.journal_mode, "wal");
    } finally {
      db.close();
    }
    await reader.cancel();
    assert.equal((await holder.status).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
