// bridge.sqlite locked by another process (a `sqlite3` shell left in a transaction, a backup
// tool) while bridge.journal was deleted: the worker's write failed and dropped the commits
// handed to it, to read them back from a journal that had lost their segment, so a message
// answered success was skipped in the tables for good; a reload after a refused callback applied
// the journal on disk (its later commits) before it looked, which put the tables past the lost
// one and passed its own check; and nothing asked the worker to write again, so every callback
// after the lock went was refused for good. Later a reload was refused (503) while the tables
// lacked a commit only a deleted segment held, and one the worker let go of was lost. Now the
// journal writes deleted segments back from the files it holds open before anything more is
// appended, and a reload looks first: nothing is refused for the deletion, nothing lost.

import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { openSqliteStore, type SqliteStoreOptions } from "../../src/store/sqlite_store.ts";
import { journalDirOf, openJournalDir } from "../../src/store/sqlite_journal_file.ts";
import { lockFromOutside } from "../helpers/sqlite_lock.ts";
import { canTrace, holdThreadIdle, mustTrace, threadsNamed } from "../helpers/thread_hold.ts";
import type { Store } from "../../src/core/store.ts";
import {
  baseStoreOptions,
  describe,
  presenceOf,
  readAll,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";

/** Runs `fn` with the store's log lines (info and up) kept in `lines`. */
async function withStoreLogs(fn: (lines: string[]) => Promise<void>): Promise<void> {
  const lines: string[] = [];
  await configure({
    sinks: { keep: (record: LogRecord) => lines.push(record.message.map(String).join("")) },
    loggers: [
      { category: ["bridge", "store"], sinks: ["keep"], lowestLevel: "info" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  try {
    await fn(lines);
  } finally {
    await reset();
  }
}

/** With bridge.sqlite locked by another process: f1's m2 is answered, the worker's write of it
 * fails, and the journal's directory is deleted; then `then`, still locked. */
async function m2LostWhileLocked(
  store: Store,
  path: string,
  lines: string[],
  then: () => Promise<void> = async () => {},
): Promise<void> {
  const unlock = await lockFromOutside(path);
  try {
    // Answered success; the worker's write of it waits for the lock, then fails.
    await store.acceptInbound([textItem("f1", "m2")], presenceOf("a1"));
    await logged(lines, /Cannot write the journal to the tables/);
    await Deno.remove(journalDirOf(path), { recursive: true });
    await then();
  } finally {
    await unlock();
  }
}

/** Resolves once `lines` has one matching `pattern`. */
async function logged(lines: string[], pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!lines.some((line) => pattern.test(line))) {
    if (Date.now() > deadline) throw new Error(`Not logged: ${pattern}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves once the journal directory `dir` holds a segment again. */
async function segmentBegun(dir: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  const begun = () => {
    try {
      return [...Deno.readDirSync(dir)].some((entry) => entry.name.endsWith(".log"));
    } catch {
      return false;
    }
  };
  while (!begun()) {
    if (Date.now() > deadline) throw new Error(`No segment was begun in ${dir}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Store options whose journal refuses appends while `refusing()`, as a full disk does. */
function refusingWhen(refusing: () => boolean): SqliteStoreOptions {
  return {
    ...baseStoreOptions(),
    openJournal: (...args) => {
      const journal = openJournalDir(...args);
      return {
        ...journal,
        append(id, bytes) {
          if (refusing()) throw new Error("refused: no space left on device");
          journal.append(id, bytes);
        },
      };
    },
  };
}

/** The store at `path` opened with `options`, with agent a1 online and f1's m1 in the tables. */
async function openWithM1(path: string, options: SqliteStoreOptions): Promise<Store> {
  const store = await openSqliteStore(path, options);
  const online = presenceOf("a1");
  await store.agentOnline("a1", online);
  await store.acceptInbound([textItem("f1", "m1")], online);
  assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "m1"]);
  return store;
}

/** Sends `content` from f1 until the store takes it (refused while the tables lack a commit). */
async function acceptedInTime(store: Store, content: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (true) {
    try {
      await store.acceptInbound([textItem("f1", content)], presenceOf("a1"));
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** After a restart on `path`: a1's log and f1's history hold `expected` (texts after f1's
 * assignment), in order, once each. */
async function allThereAfterRestart(path: string, expected: string[]): Promise<void> {
  const store = await openSqliteStore(path, baseStoreOptions());
  try {
    assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", ...expected]);
    const history = await store.readHistory("f1", null, 50);
    assert.deepEqual(history.items.map((item) => item.msg["content"]), expected);
  } finally {
    await store.close();
  }
}

Deno.test("bridge.journal deleted while bridge.sqlite is locked elsewhere: the write that failed is made once the lock goes", async () => {
  await withStoreLogs(async (lines) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      let refuse = false;
      const store = await openWithM1(path, refusingWhen(() => refuse));
      try {
        const online = presenceOf("a1");
        await m2LostWhileLocked(store, path, lines, async () => {
          refuse = true;
          await assert.rejects(store.acceptInbound([textItem("f1", "m3")], online), /refused/);
          refuse = false;
        });
        // WeChat sends m3 again: refused while the tables lack m2, taken once they have it.
        await acceptedInTime(store, "m3");
        assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "m1", "m2", "m3"]);
      } finally {
        await store.close();
      }
      await allThereAfterRestart(path, ["m1", "m2", "m3"]);
    });
  });
});

if (!canTrace && !mustTrace) {
  // deno-lint-ignore no-console
  console.log("Skipping the held-worker reload test: strace is missing or may not trace here");
}

// m3 either in the segment written back by the file guard's look (the reload must not read a
// model without m2), or in the deleted one, written before the guard looked (the reload must
// look, and write it back, before it reads).
for (const m3In of ["the segment written back", "the deleted segment"] as const) {
  Deno.test({
    name: `bridge.journal deleted before the worker wrote its commits, m3 in ${m3In}: a reload ` +
      "after a refusal reads them back, and the next callback is taken",
    ignore: !canTrace && !mustTrace,
    fn: async () => {
      if (!canTrace) throw new Error("strace is missing or may not trace here (CI=true)");
      await withTempDir(async (dir) => {
        const path = `${dir}/bridge.sqlite`;
        let refuse = false;
        const store = await openWithM1(path, refusingWhen(() => refuse));
        try {
          const online = presenceOf("a1");
          const workers = await threadsNamed(Deno.pid, /^worker-\d+$/);
          assert.equal(workers.length, 1, `one worker thread, found ${workers.length}`);
          // Held where it waits for work: what is handed to it now stays unwritten.
          const held = await holdThreadIdle(workers[0]!);
          try {
            await held.entered;
            await store.acceptInbound([textItem("f1", "m2")], online);
            await Deno.remove(journalDirOf(path), { recursive: true });
            // The file guard's look (each second) writes the segment back.
            if (m3In === "the segment written back") await segmentBegun(journalDirOf(path));
            await store.acceptInbound([textItem("f1", "m3")], online);
            // A refused callback; the reload after it must not read a model without m2 and m3.
            refuse = true;
            await assert.rejects(store.acceptInbound([textItem("f1", "m4")], online), /refused/);
            refuse = false;
            // Taken at once, the tables still lacking m2 and m3: the journal on disk has them.
            await store.acceptInbound([textItem("f1", "m4")], online);
          } finally {
            await held.release();
          }
          assert.deepEqual(
            describe(await readAll(store, "a1")),
            ["assigned:f1", "m1", "m2", "m3", "m4"],
          );
        } finally {
          await store.close();
        }
        await allThereAfterRestart(path, ["m1", "m2", "m3", "m4"]);
      });
    },
  });
}

/** Asserts `lines` say no commit was lost. */
function noLossLogged(lines: string[]): void {
  assert.ok(!lines.some((line) => /are lost/.test(line)), lines.join("\n"));
}

Deno.test("a failed write too large to keep, its segment deleted: read back from the segment written back, nothing refused or lost", async () => {
  // Past what a failed write keeps (keepFailedBytes 0 here, 64 MiB by default: 5 s of lines at
  // 10,000 msg/s) the worker lets its lines go and reads them back from the journal; with their
  // segment deleted they were lost, and said so. Now the segment is written back first.
  await withStoreLogs(async (lines) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      let refuse = false;
      const store = await openWithM1(path, { ...refusingWhen(() => refuse), keepFailedBytes: 0 });
      try {
        const online = presenceOf("a1");
        await m2LostWhileLocked(store, path, lines, async () => {
          refuse = true;
          await assert.rejects(store.acceptInbound([textItem("f1", "m3")], online), /refused/);
          refuse = false;
        });
        await acceptedInTime(store, "m3");
        assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "m1", "m2", "m3"]);
        assert.ok(lines.some((line) => /written back from the open files/.test(line)));
        noLossLogged(lines);
      } finally {
        await store.close();
      }
      await allThereAfterRestart(path, ["m1", "m2", "m3"]);
    });
  });
});

Deno.test("a failed write too large to keep, its segment deleted, a later commit after it: nothing lost", async () => {
  // The worker's read-back found the later commit in a new segment and put the tables past the
  // lost ones. Now the later one follows them in the segment written back.
  await withStoreLogs(async (lines) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      const store = await openWithM1(path, { ...baseStoreOptions(), keepFailedBytes: 0 });
      try {
        const online = presenceOf("a1");
        await m2LostWhileLocked(store, path, lines, async () => {
          // Into the deleted segment, before the file guard's look.
          await store.acceptInbound([textItem("f1", "m3")], online);
        });
        await segmentBegun(journalDirOf(path));
        await store.acceptInbound([textItem("f1", "m4")], online);
        assert.deepEqual(
          describe(await readAll(store, "a1")),
          ["assigned:f1", "m1", "m2", "m3", "m4"],
        );
        noLossLogged(lines);
      } finally {
        await store.close();
      }
      await allThereAfterRestart(path, ["m1", "m2", "m3", "m4"]);
    });
  });
});

/** Copies the files of the store at `dir` to `to` as a kill -9 now leaves them (the other
 * process's lock wrote nothing). Synchronous: no look of the store's runs in between. */
function copyAsCrashed(dir: string, to: string): void {
  Deno.mkdirSync(`${to}/bridge.journal`, { recursive: true });
  for (const name of ["bridge.sqlite", "bridge.sqlite-wal"]) {
    try {
      Deno.copyFileSync(`${dir}/${name}`, `${to}/${name}`);
    } catch { /* none */ }
  }
  for (const entry of Deno.readDirSync(`${dir}/bridge.journal`)) {
    if (!entry.name.endsWith(".log")) continue;
    Deno.copyFileSync(`${dir}/bridge.journal/${entry.name}`, `${to}/bridge.journal/${entry.name}`);
  }
}

Deno.test("a crash while the worker held a failed write whose segment was deleted and written back: the next start has it", async () => {
  // The kept lines were in memory only, and the start applied the new segment's commits past
  // them. Now they are in the segment written back.
  await withStoreLogs(async (lines) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      const crashed = `${dir}/crashed`;
      const store = await openWithM1(path, baseStoreOptions());
      try {
        const online = presenceOf("a1");
        await m2LostWhileLocked(store, path, lines, async () => {
          await segmentBegun(journalDirOf(path));
          await store.acceptInbound([textItem("f1", "m3")], online);
          copyAsCrashed(dir, crashed);
        });
      } finally {
        await store.close();
      }
      lines.length = 0;
      const again = await openSqliteStore(`${crashed}/bridge.sqlite`, baseStoreOptions());
      try {
        assert.deepEqual(describe(await readAll(again, "a1")), ["assigned:f1", "m1", "m2", "m3"]);
        noLossLogged(lines);
      } finally {
        await again.close();
      }
    });
  });
});

Deno.test("a crash before the look found an older segment deleted: the next start logs the loss", async () => {
  // Deleted and crashed before any look (each second) wrote it back, the segment's commits are
  // in no file, and a start applied the later segments' past them in silence.
  await withStoreLogs(async (lines) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      const crashed = `${dir}/crashed`;
      const store = await openWithM1(path, {
        ...baseStoreOptions(),
        // A segment a commit: m2 alone in its own.
        openJournal: (dir, applied, fsync, _bytes, lock) =>
          openJournalDir(dir, applied, fsync, 1, lock),
      });
      try {
        const online = presenceOf("a1");
        const unlock = await lockFromOutside(path);
        try {
          for (const m of ["m2", "m3"]) await store.acceptInbound([textItem("f1", m)], online);
          const journal = journalDirOf(path);
          const holding = (m: string) =>
            [...Deno.readDirSync(journal)].filter((e) =>
              e.name.endsWith(".log") &&
              Deno.readTextFileSync(`${journal}/${e.name}`).includes(`"${m}"`)
            ).map((e) => `${journal}/${e.name}`);
          const [segment] = holding("m2");
          assert.ok(segment !== undefined && holding("m3")[0] !== segment);
          Deno.removeSync(segment);
          copyAsCrashed(dir, crashed);
        } finally {
          await unlock();
        }
        // The running store writes it back at its next look.
        assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "m1", "m2", "m3"]);
      } finally {
        await store.close();
      }
      lines.length = 0;
      const again = await openSqliteStore(`${crashed}/bridge.sqlite`, baseStoreOptions());
      try {
        assert.deepEqual(describe(await readAll(again, "a1")), ["assigned:f1", "m1", "m3"]);
        assert.ok(lines.some((line) => /Commits 2 to 2 .* lost/.test(line)), lines.join("\n"));
      } finally {
        await again.close();
      }
    });
  });
});

Deno.test("a failed write too large to keep, its segment deleted, nothing committed after: reads answer, with it", async () => {
  // Every read waited for commits no write would bring, and failed ('the tables stop at')
  // until some other commit came, on a quiet account for as long as none did. Now the segment
  // written back brings them.
  await withStoreLogs(async (lines) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      const store = await openWithM1(path, { ...baseStoreOptions(), keepFailedBytes: 0 });
      try {
        await m2LostWhileLocked(store, path, lines);
        await segmentBegun(journalDirOf(path));
        const deadline = Date.now() + 10_000;
        while (true) {
          try {
            // A read that hangs counts as one that fails.
            let timer: ReturnType<typeof setTimeout> | undefined;
            const hung = new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error("the read hung")), 3000);
            });
            try {
              const entries = await Promise.race([readAll(store, "a1"), hung]);
              assert.deepEqual(describe(entries), ["assigned:f1", "m1", "m2"]);
            } finally {
              clearTimeout(timer);
            }
            break;
          } catch (error) {
            if (Date.now() > deadline) throw error;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        noLossLogged(lines);
      } finally {
        await store.close();
      }
    });
  });
});
