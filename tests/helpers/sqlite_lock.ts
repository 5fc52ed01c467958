// Another process holding a SQLite file's write lock (an operator's `sqlite3` left in a
// transaction, a bridge before this one still closing), for tests of what waits for it.

import assert from "node:assert/strict";

const HOLDER = `
import { DatabaseSync } from "node:sqlite";
const db = new DatabaseSync(Deno.args[0]);
db.exec("BEGIN EXCLUSIVE");
console.log("locked");
const holdMs = Number(Deno.args[1]);
if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs));
else for await (const _ of Deno.stdin.readable) { /* until closed */ }
db.exec("COMMIT");
db.close();
`;

/** Locks the SQLite file at `path` from another process, for `holdMs` or (0) until the
 * returned function lets go; that function also waits for the process to end. */
export async function lockFromOutside(path: string, holdMs = 0): Promise<() => Promise<void>> {
  const holder = new Deno.Command(Deno.execPath(), {
    args: ["eval", HOLDER, path, String(holdMs)],
    stdin: "piped",
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
  return async () => {
    await holder.stdin.close();
    await reader.cancel();
    assert.equal((await holder.status).code, 0);
  };
}
