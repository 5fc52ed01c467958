// Review of the write-back (branch journal), README: "Deleted and lost to a crash before the look
// that writes it back, a segment's commits are logged lost at the next start." Only the first
// missing commit was looked for: a segment lost between two the start still has (an older one
// deleted alone, then a kill -9 before the look) was applied past without a word.
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { openSqliteStore, type SqliteStoreOptions } from "../../src/store/sqlite_store.ts";
import { journalDirOf, openJournalDir } from "../../src/store/sqlite_journal_file.ts";
import { lockFromOutside } from "../helpers/sqlite_lock.ts";
import { baseStoreOptions, presenceOf, textItem, withTempDir } from "./_durable_store_cases.ts";

const options = (): SqliteStoreOptions => ({
  ...baseStoreOptions(),
  openJournal: (dir, applied, fsync, _bytes, lock) => openJournalDir(dir, applied, fsync, 1, lock),
});

const segments = (dir: string) =>
  [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".log")).sort();

Deno.test("a segment lost between two others is logged lost at the next start", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const journalDir = journalDirOf(path);
    const copy = `${dir}/copy`;
    const online = presenceOf("a1");
    const store = await openSqliteStore(path, options());
    let middle: string;
    try {
      await store.agentOnline("a1", online);
      await store.acceptInbound([textItem("f1", "m1")], online);
      await store.readHistory("f1", null, 50);
      const unlock = await lockFromOutside(path);
      try {
        const before = new Set(segments(journalDir));
        for (const m of ["m2", "m3", "m4"]) {
          await store.acceptInbound([textItem("f1", m)], online);
        }
        const begun = segments(journalDir).filter((n) => !before.has(n));
        assert.ok(begun.length >= 3, begun.join());
        middle = begun[1]!;
        // What a kill -9 leaves once the middle segment is deleted, before the look: the
        // files as they are, without it.
        Deno.mkdirSync(`${copy}/bridge.journal`, { recursive: true });
        for (const suffix of ["", "-wal", "-shm"]) {
          try {
            Deno.copyFileSync(path + suffix, `${copy}/bridge.sqlite${suffix}`);
          } catch { /* none */ }
        }
        for (const name of segments(journalDir)) {
          if (name !== middle) {
            Deno.copyFileSync(`${journalDir}/${name}`, `${copy}/bridge.journal/${name}`);
          }
        }
      } finally {
        await unlock();
      }
    } finally {
      await store.close();
    }
    const lines: string[] = [];
    await configure({
      sinks: { keep: (record: LogRecord) => lines.push(record.message.map(String).join("")) },
      loggers: [
        { category: ["bridge", "store"], sinks: ["keep"], lowestLevel: "info" },
        { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
      ],
    });
    try {
      const again = await openSqliteStore(`${copy}/bridge.sqlite`, baseStoreOptions());
      await again.close();
    } finally {
      await reset();
    }
    assert.ok(
      lines.some((line) => /answered success but are lost/.test(line)),
      `not logged lost (segment ${middle} missing): ${lines.join(" | ")}`,
    );
  });
});
