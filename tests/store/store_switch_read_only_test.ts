// The store-switch check at a SQLite start reads bridge.kv to see whether it holds data. Opening
// it as a Deno KV store lets KV sweep its expired entries (the signed callbacks' bodies carry an
// expiry), which writes the file; and any read-only look at either file leaves an empty `-wal`
// beside it, dated now. Either way the file looked at seems written after the store started,
// and the next start (an idle run in between) is refused though the other store never ran.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { checkStoreSwitch } from "../../src/store/store_switch.ts";
import { openKvStore } from "../../src/store/kv_store.ts";
import { openStore } from "../../src/store/open_store.ts";
import { loadConfig } from "../../src/config.ts";
import { baseStoreOptions, presenceOf, textItem, withTempDir } from "./_durable_store_cases.ts";

const nobody = presenceOf();

/** bridge.sqlite in `dir`, in WAL mode, with what `statements` write. */
function sqliteFile(dir: string, ...statements: string[]): void {
  const db = new DatabaseSync(`${dir}/bridge.sqlite`);
  db.exec("PRAGMA journal_mode = WAL");
  for (const sql of statements) db.exec(sql);
  db.close();
}

/** bridge.kv in `dir` as `writes` (code with `kv` open) leave it, from a process that has ended,
 * as a real STORE=kv run's is. */
async function kvFile(dir: string, writes: string): Promise<void> {
  const path = JSON.stringify(`${dir}/bridge.kv`);
  const run = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--unstable-kv",
      `const kv = await Deno.openKv(${path});\n${writes}\nkv.close();`,
    ],
  }).output();
  assert.ok(run.success, new TextDecoder().decode(run.stderr));
}

Deno.test("the SQLite start's look at bridge.kv leaves its time as it was", async () => {
  await withTempDir(async (dir) => {
    // A SQLite file a start has marked, as kv_migration leaves it; a STORE=kv run's file.
    sqliteFile(
      dir,
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
      "INSERT INTO meta (key, value) VALUES ('origin', 'test')",
    );
    await kvFile(
      dir,
      `await kv.set(["contacts", "follower-1"], { agent_id: "1" });
      for (let i = 0; i < 20; i++) await kv.set(["signed", i], [String(i), 0], { expireIn: 1 });`,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    // bridge.kv written well before bridge.sqlite: the start warns and goes on.
    const sqliteAt = Deno.statSync(`${dir}/bridge.sqlite`).mtime!;
    const before = new Date(sqliteAt.getTime() - 3600_000);
    for (const file of ["bridge.kv", "bridge.kv-wal", "bridge.kv-shm"]) {
      await Deno.utime(`${dir}/${file}`, before, before).catch(() => {});
    }
    await checkStoreSwitch(dir, "sqlite");
    // The next start (the SQLite file untouched meanwhile: an idle run) starts too.
    await checkStoreSwitch(dir, "sqlite");
    assert.equal(Deno.statSync(`${dir}/bridge.kv`).mtime!.getTime(), before.getTime());
  });
});

Deno.test("the STORE=kv start's look at bridge.sqlite does not date it now", async () => {
  await withTempDir(async (dir) => {
    sqliteFile(
      dir,
      "CREATE TABLE contacts (follower_id TEXT PRIMARY KEY, json TEXT)",
      "INSERT INTO contacts VALUES ('follower-1', '{}')",
    );
    await kvFile(dir, `await kv.set(["contacts", "follower-2"], { agent_id: "1" });`);
    // The SQLite data is the older (a run on it, then STORE=kv from then on): a warn, no refusal.
    const kvAt = Deno.statSync(`${dir}/bridge.kv`).mtime!;
    const before = new Date(kvAt.getTime() - 3600_000);
    await Deno.utime(`${dir}/bridge.sqlite`, before, before);
    await checkStoreSwitch(dir, "kv");
    // An idle STORE=kv run, then its restart.
    await checkStoreSwitch(dir, "kv");
  });
});

Deno.test("STORE=kv serving beside older SQLite data restarts, idle, as often as it likes", async () => {
  await withTempDir(async (dir) => {
    const sqlite = { ...loadConfig({ DATA_DIR: dir }), dataDir: dir };
    const kv = { ...sqlite, store: "kv" as const };
    const first = await openStore(sqlite);
    await first.acceptInbound([textItem("oAnn", "while on sqlite")], nobody);
    await first.close();
    // A STORE=kv run after it (store_switch_test's "a newer KV file").
    const older = await openKvStore(`${dir}/bridge.kv`, baseStoreOptions());
    await older.acceptInbound([textItem("oBen", "while on kv")], nobody);
    await older.close();
    // STORE=kv, its data the newer: it serves, and so do its restarts with nothing written.
    for (let start = 0; start < 3; start++) {
      const store = await openStore(kv);
      assert.equal(await store.queueDepth(), 1, `start ${start}`);
      await store.close();
    }
  });
});
