// The SQLite worker: a worker that cannot open the tables must not leave reads waiting.
import assert from "node:assert/strict";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { openJournalDir } from "../../src/store/sqlite_journal_file.ts";
import {
  baseStoreOptions,
  presenceOf,
  readAll,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";

Deno.test("openSqliteStore(): a read answers (or fails) when the worker could not open the tables", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const store = await openSqliteStore(path, {
      ...baseStoreOptions(),
      openJournal: (...args) => {
        const journal = openJournalDir(...args);
        // The worker, started next, cannot open the file (any open error: EMFILE, EACCES...);
        // the main thread's connection keeps the one it has.
        Deno.renameSync(path, `${dir}/moved.sqlite`);
        Deno.mkdirSync(path);
        return journal;
      },
    });
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      await store.acceptInbound([textItem("f1", "one")], online);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        readAll(store, "a1").then(() => "answered", (e) => `failed: ${e}`),
        new Promise<string>((r) => timer = setTimeout(() => r("still waiting after 10 s"), 10_000)),
      ]);
      clearTimeout(timer);
      assert.notEqual(outcome, "still waiting after 10 s");
    } finally {
      await store.close();
    }
  });
});
