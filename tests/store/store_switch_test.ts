// One DATA_DIR run on SQLite, then with STORE=kv, then on SQLite again: each start opened its own
// file and the other's data was hidden without a word (a follower's message answered `success`
// under STORE=kv never reached an agent back on SQLite). Now a start that would hide data written
// after its own refuses, saying what to do; the migration of a KV DATA_DIR still runs once.

import assert from "node:assert/strict";
import { openKvStore } from "../../src/store/kv_store.ts";
import { openStore } from "../../src/store/open_store.ts";
import { loadConfig } from "../../src/config.ts";
import { baseStoreOptions, presenceOf, textItem, withTempDir } from "./_durable_store_cases.ts";

const nobody = presenceOf();

/** Asserts that opening `config`'s store is refused with `message`; a store opened is closed. */
async function refused(config: Parameters<typeof openStore>[0], message: RegExp) {
  let store: Awaited<ReturnType<typeof openStore>> | undefined;
  try {
    store = await openStore(config);
  } catch (error) {
    assert.match((error as Error).message, message);
    return;
  }
  await store.close();
  assert.fail(`opened, not refused (${message})`);
}

Deno.test("sqlite, STORE=kv, sqlite on one DATA_DIR: refused, never silent", async (t) => {
  await withTempDir(async (dir) => {
    const sqlite = { ...loadConfig({ DATA_DIR: dir }), dataDir: dir };
    const kv = { ...sqlite, store: "kv" as const };
    await t.step("a message waits in SQLite", async () => {
      const store = await openStore(sqlite);
      await store.acceptInbound([textItem("oAnn", "while on sqlite")], nobody);
      await store.close();
    });
    await t.step("STORE=kv is refused: the SQLite store's data would be hidden", async () => {
      await refused(
        kv,
        /Cannot start with STORE=kv: .*bridge\.sqlite holds .*Start without STORE=kv.*or move bridge\.sqlite \(with bridge\.sqlite-wal and bridge\.sqlite-shm\) and bridge\.journal out of DATA_DIR/,
      );
      await assert.rejects(Deno.stat(`${dir}/bridge.kv`), Deno.errors.NotFound);
    });
    await t.step("a KV file written after it (an older bridge's STORE=kv run)", async () => {
      const store = await openKvStore(`${dir}/bridge.kv`, baseStoreOptions());
      await store.acceptInbound([textItem("oBen", "while on kv")], nobody);
      await store.close();
    });
    await t.step("back on SQLite: refused, the KV file's messages are not lost", async () => {
      await refused(
        sqlite,
        /Cannot start on SQLite: .*bridge\.kv holds .*after .*bridge\.sqlite.*Start with STORE=kv.*or move bridge\.kv/,
      );
    });
    await t.step("STORE=kv, its data the newer, serves it", async () => {
      const store = await openStore(kv);
      assert.equal(await store.queueDepth(), 1);
      await store.close();
    });
    await t.step(
      "bridge.kv moved aside as the message says: SQLite starts with its own",
      async () => {
        await refused(sqlite, /Cannot start on SQLite/);
        await Deno.rename(`${dir}/bridge.kv`, `${dir}/kv-aside`);
        const store = await openStore(sqlite);
        assert.equal(await store.queueDepth(), 1);
        assert.equal((await store.getContact("oAnn"))?.follower_id, "oAnn");
        await store.close();
      },
    );
  });
});
