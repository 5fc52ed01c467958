// Review of the write-back (branch journal): an older segment deleted while the worker has let go
// of what it was handed (a failed write held more than keepFailedBytes, here 0) and reads back
// from the journal. The read-back ran before the journal's look (each second) wrote the segment
// back: it found the next segment first and applied past the missing commits, so the tables
// moved on without them, the segment was let go of as applied (never written back), agents'
// reads lacked the message and a restart lost it, though it was answered success. Now a
// running reader refuses a journal with a segment missing (the write fails and is made again
// once the look wrote it back).
import assert from "node:assert/strict";
import { openSqliteStore, type SqliteStoreOptions } from "../../src/store/sqlite_store.ts";
import { journalDirOf, openJournalDir } from "../../src/store/sqlite_journal_file.ts";
import { lockFromOutside } from "../helpers/sqlite_lock.ts";
import {
  baseStoreOptions,
  describe,
  presenceOf,
  readAll,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";

/** Every commit in a segment of its own; the worker reads back after any failed write. */
const options = (): SqliteStoreOptions => ({
  ...baseStoreOptions(),
  keepFailedBytes: 0,
  openJournal: (dir, applied, fsync, _bytes, lock) => openJournalDir(dir, applied, fsync, 1, lock),
});

const segments = (dir: string) =>
  [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".log")).sort();

Deno.test("an older segment deleted just before the worker reads back: no commit is skipped", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const journalDir = journalDirOf(path);
    const online = presenceOf("a1");
    const store = await openSqliteStore(path, options());
    try {
      await store.agentOnline("a1", online);
      await store.acceptInbound([textItem("f1", "m1")], online);
      assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "m1"]);
      const unlock = await lockFromOutside(path);
      let m2Segment: string;
      try {
        const before = new Set(segments(journalDir));
        await store.acceptInbound([textItem("f1", "m2")], online);
        m2Segment = segments(journalDir).find((n) => !before.has(n))!;
        assert.ok(m2Segment, "m2 began a segment");
        // The worker's write of m2 waits for the lock and fails: it lets go of m2 (0 kept).
        await new Promise((r) => setTimeout(r, 6_000));
      } finally {
        await unlock();
      }
      // Deleted (a cleanup of old files), and m3 comes before the journal's next look.
      Deno.removeSync(`${journalDir}/${m2Segment}`);
      await store.acceptInbound([textItem("f1", "m3")], online);
      // The journal's look (each second) writes m2's segment back.
      await new Promise((r) => setTimeout(r, 1_500));
      assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "m1", "m2", "m3"]);
    } finally {
      await store.close();
    }
    const again = await openSqliteStore(path, baseStoreOptions());
    try {
      assert.deepEqual(describe(await readAll(again, "a1")), ["assigned:f1", "m1", "m2", "m3"]);
    } finally {
      await again.close();
    }
  });
});
