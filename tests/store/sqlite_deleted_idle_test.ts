// bridge.sqlite deleted while the bridge is idle: it was written back only on the next commit
// applied, readiness probe or stop, and a crash (kill -9, OOM, power cut) before any of them left
// a DATA_DIR with no tables and only the journal's last segment, every older message gone.
// Now the file guard looks every second of its own.

import assert from "node:assert/strict";
import { openSqliteStore, type SqliteStoreOptions } from "../../src/store/sqlite_store.ts";
import { journalDirOf, openJournalDir } from "../../src/store/sqlite_journal_file.ts";
import {
  baseStoreOptions,
  describe,
  fileExists as exists,
  presenceOf,
  readAll,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";

/** A journal that begins a new segment past 300 bytes, so applied segments are let go. */
const options = (): SqliteStoreOptions => ({
  ...baseStoreOptions(),
  applyDelayMs: 1,
  openJournal: (dir, applied, fsync, _bytes, lock) =>
    openJournalDir(dir, applied, fsync, 300, lock),
});

const segments = (path: string) =>
  [...Deno.readDirSync(journalDirOf(path))].filter((e) => e.name.endsWith(".log")).length;

/** What a crash leaves: the files on the disk as they are now, nothing of the open handles. */
function copyDataDir(from: string, to: string): void {
  Deno.mkdirSync(to, { recursive: true });
  for (const entry of Deno.readDirSync(from)) {
    if (entry.isDirectory) copyDataDir(`${from}/${entry.name}`, `${to}/${entry.name}`);
    else if (entry.isFile && entry.name !== "lock") {
      Deno.copyFileSync(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  }
}

Deno.test("bridge.sqlite deleted while the store is idle: written back before any commit, a crash then loses nothing", async (t) => {
  await withTempDir(async (dir) => {
    const data = `${dir}/data`;
    const path = `${data}/bridge.sqlite`;
    const expected: string[] = ["assigned:f1"];
    const store = await openSqliteStore(path, options());
    try {
      await t.step("forty messages reach the tables; their segments are let go", async () => {
        const online = presenceOf("a1");
        await store.agentOnline("a1", online);
        for (let i = 0; i < 40; i++) {
          await store.acceptInbound([textItem("f1", `m${i}`)], online);
          expected.push(`m${i}`);
        }
        assert.deepEqual(describe(await readAll(store, "a1")), expected);
        const deadline = Date.now() + 10_000;
        while (segments(path) > 1 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        assert.ok(segments(path) <= 1, "applied segments are deleted while the store runs");
      });
      await t.step("the file goes, and comes back with nothing written or asked", async () => {
        for (const suffix of ["", "-wal", "-shm"]) Deno.removeSync(path + suffix);
        // Polled, not timed: without a look of its own the guard never notices.
        const deadline = Date.now() + 10_000;
        while (!exists(path) && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.ok(exists(path), "bridge.sqlite is written back while the store is idle");
      });
    } finally {
      // The crash: a copy of the disk as it is now, the store never closed on it.
      copyDataDir(data, `${dir}/after-crash`);
      await store.close();
    }
    await t.step("a start on what the crash left has every message", async () => {
      const reopened = await openSqliteStore(`${dir}/after-crash/bridge.sqlite`, options());
      try {
        assert.deepEqual(describe(await readAll(reopened, "a1")), expected);
      } finally {
        await reopened.close();
      }
    });
  });
});

Deno.test("bridge.sqlite that could not be written back is tried again at close", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const expected: string[] = ["assigned:f1"];
    const store = await openSqliteStore(path, options());
    let closed = false;
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      for (let i = 0; i < 40; i++) {
        await store.acceptInbound([textItem("f1", `m${i}`)], online);
        expected.push(`m${i}`);
      }
      assert.deepEqual(describe(await readAll(store, "a1")), expected);
      // Where the copy is made something stands that cannot be written over (as a full disk
      // refuses it): the write-back fails, /readyz says so.
      Deno.mkdirSync(`${path}.restoring/held`, { recursive: true });
      for (const suffix of ["", "-wal", "-shm"]) Deno.removeSync(path + suffix);
      await t.step("the write-back fails, and readiness says so", async () => {
        const deadline = Date.now() + 10_000;
        let problem = "";
        while (problem === "" && Date.now() < deadline) {
          await store.ping().catch((error) => problem = (error as Error).message);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.match(problem, /cannot be written back/);
      });
      // The operator makes room, and stops the bridge as the message says.
      Deno.removeSync(`${path}.restoring`, { recursive: true });
      await store.close();
      closed = true;
    } finally {
      if (!closed) await store.close();
    }
    await t.step("the next start has every message", async () => {
      const reopened = await openSqliteStore(path, options());
      try {
        assert.deepEqual(describe(await readAll(reopened, "a1")), expected);
      } finally {
        await reopened.close();
      }
    });
  });
});
