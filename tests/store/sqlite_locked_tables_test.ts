// bridge.sqlite locked by another process (a `sqlite3` shell left in a transaction, a backup
// tool) while bridge.journal was deleted: the worker's write failed and dropped the commits
// handed to it, to read them back from a journal that had lost their segment, so a message
// answered success was skipped in the tables for good; a reload after a refused callback applied
// the journal on disk (its later commits) before it looked, which put the tables past the lost
// one and passed its own check; and nothing asked the worker to write again, so every callback
// after the lock went was refused for good. Now a failed write keeps its lines, a reload is
// refused before it applies anything while the tables lack a commit only a deleted segment
// held, and each refused reload asks the worker to write what it holds.

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

// m3 either in the segment the file guard's look begins (the reload must not apply it to tables
// lacking m2), or in the deleted one, written before the guard looked (the reload must look).
for (const m3In of ["the new segment", "the deleted segment"] as const) {
  Deno.test({
    name: `bridge.journal deleted before the worker wrote its commits, m3 in ${m3In}: a reload ` +
      "after a refusal waits for the tables to have them",
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
            // The file guard's look (each second) begins a new segment.
            if (m3In === "the new segment") await segmentBegun(journalDirOf(path));
            await store.acceptInbound([textItem("f1", "m3")], online);
            // A refused callback; the reload after it must not read a model without m2 and m3.
            refuse = true;
            await assert.rejects(store.acceptInbound([textItem("f1", "m4")], online), /refused/);
            refuse = false;
            await assert.rejects(
              store.acceptInbound([textItem("f1", "m4")], online),
              /do not have commit/,
            );
          } finally {
            await held.release();
          }
          await acceptedInTime(store, "m4");
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

Deno.test("a failed write too large to keep, its segment deleted: the loss is logged and callbacks are taken again", async () => {
  // Past what a failed write keeps (keepFailedBytes 0 here, 64 MiB by default: 5 s of lines at
  // 10,000 msg/s) the worker lets its lines go and reads them back from the journal; with their
  // segment deleted no write could ever bring them, yet every reload was refused while the
  // tables lacked them: each callback answered 503 until a restart.
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
        assert.ok(
          lines.some((line) => /Commits 2 to 2 .* are lost/.test(line)),
          "the loss is logged",
        );
        assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "m1", "m3"]);
      } finally {
        await store.close();
      }
      await allThereAfterRestart(path, ["m1", "m3"]);
    });
  });
});

Deno.test("a failed write too large to keep, its segment deleted, a later commit in a new one: the loss is logged", async () => {
  // The worker's read-back found the later commit and put the tables past the lost ones, so no
  // reload waited for them: gone after a restart, and nothing said so.
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
        await readAll(store, "a1");
        assert.ok(lines.some((line) => /Commits 2 to 3 .* lost/.test(line)), "the loss is logged");
      } finally {
        await store.close();
      }
      await allThereAfterRestart(path, ["m1", "m4"]);
    });
  });
});

Deno.test("a crash while the worker held a failed write whose segment was deleted: the next start logs the loss", async () => {
  // The kept lines were in memory only; the start applied the new segment's commits past them,
  // and nothing said a message answered success was gone.
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
          // The files as a kill -9 now leaves them (the other process's lock wrote nothing).
          await Deno.mkdir(`${crashed}/bridge.journal`, { recursive: true });
          for (const name of ["bridge.sqlite", "bridge.sqlite-wal"]) {
            await Deno.copyFile(`${dir}/${name}`, `${crashed}/${name}`).catch(() => {});
          }
          for (const entry of Deno.readDirSync(journalDirOf(path))) {
            if (!entry.name.endsWith(".log")) continue;
            await Deno.copyFile(
              `${journalDirOf(path)}/${entry.name}`,
              `${crashed}/bridge.journal/${entry.name}`,
            );
          }
        });
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

Deno.test("a failed write too large to keep, its segment deleted, nothing committed after: reads answer", async () => {
  // Every read waited for commits no write would bring, and failed ('the tables stop at')
  // until some other commit came, on a quiet account for as long as none did.
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
              assert.deepEqual(describe(entries), ["assigned:f1", "m1"]);
            } finally {
              clearTimeout(timer);
            }
            break;
          } catch (error) {
            if (Date.now() > deadline) throw error;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        assert.ok(lines.some((line) => /Commits 2 to 2 .* lost/.test(line)), "the loss is logged");
      } finally {
        await store.close();
      }
    });
  });
});
