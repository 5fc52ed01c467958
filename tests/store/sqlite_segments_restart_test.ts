// The SQLite store with a journal of many small segments, deleted off the thread that answers
// as the worker applies them: closing and reopening the same DATA_DIR in one process while
// deletions may be pending loses nothing, leaves no segment behind and no operation running.

import assert from "node:assert/strict";
import { openSqliteStore, type SqliteStoreOptions } from "../../src/store/sqlite_store.ts";
import { journalDirOf, openJournalDir } from "../../src/store/sqlite_journal_file.ts";
import {
  baseStoreOptions,
  describe,
  presenceOf,
  readAll,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";

/** A journal that begins a new segment past 300 bytes: one every commit or two. */
const smallSegments: SqliteStoreOptions["openJournal"] = (dir, applied, fsync, _bytes, lock) =>
  openJournalDir(dir, applied, fsync, 300, lock);

const options = (): SqliteStoreOptions => ({
  ...baseStoreOptions(),
  applyDelayMs: 1,
  openJournal: smallSegments,
});

const segments = (path: string) =>
  [...Deno.readDirSync(journalDirOf(path))].filter((e) => e.name.endsWith(".log")).length;

Deno.test("openSqliteStore() with small journal segments: reopened at once, nothing is lost", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const expected: string[] = ["assigned:f1"];
    const online = presenceOf("a1");
    for (let round = 0; round < 5; round++) {
      const store = await openSqliteStore(path, options());
      try {
        if (round === 0) await store.agentOnline("a1", online);
        for (let i = 0; i < 40; i++) {
          const text = `r${round} m${i}`;
          await store.acceptInbound([textItem("f1", text)], online);
          expected.push(text);
          // Let the worker apply some, so segments are being deleted as the store closes.
          if (i % 8 === 0) await new Promise((resolve) => setTimeout(resolve, 60));
        }
        // A read has the tables take everything; the segments they have go soon after, while the
        // store runs (on Deno's blocking pool: polled, not timed).
        assert.deepEqual(describe(await readAll(store, "a1")), expected);
        const deadline = Date.now() + 10_000;
        while (segments(path) > 1 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.ok(segments(path) <= 1, `round ${round}: applied segments go while it runs`);
      } finally {
        await store.close();
      }
      assert.equal(segments(path), 0, `round ${round}: the journal is empty once closed`);
    }
    const store = await openSqliteStore(path, options());
    try {
      assert.deepEqual(describe(await readAll(store, "a1")), expected);
    } finally {
      await store.close();
    }
  });
});
