// With STORE_FSYNC=1 every commit survives power loss. DATA_DIR removed while the bridge runs is
// made again and bridge.sqlite written back by a rename: until the directories holding those
// names are on the disk too, a power cut can take the copy (the next start opens an empty file,
// and the journal kept holds only what came after it). Seen with strace, the real system calls.

import assert from "node:assert/strict";
import { canTrace as strace, mustTrace as inCi } from "../helpers/thread_hold.ts";
import { withTempDir } from "./_durable_store_cases.ts";

const CHILD = `
import { openSqliteStore } from ${
  JSON.stringify(new URL("../../src/store/sqlite_store.ts", import.meta.url).href)
};
const dir = Deno.args[0];
const path = dir + "/bridge.sqlite";
const store = await openSqliteStore(path, {
  companyId: "c", now: Date.now, newId: () => crypto.randomUUID(),
  dedupTtlMs: 60000, retentionMs: 3600000, fsync: true,
});
// A commit, read back from the tables: the worker has the file open and the journal a segment.
await store.putQuickReply({ id: "q1", title: "t", text: "hello", updated_at: 1, updated_by: "a" });
await store.listQuickReplies();
Deno.removeSync(dir, { recursive: true });
while (true) {
  try { Deno.statSync(path); break; } catch { await new Promise((r) => setTimeout(r, 20)); }
}
await store.close();
`;

if (!strace && !inCi) {
  // deno-lint-ignore no-console
  console.log("Skipping the STORE_FSYNC=1 DATA_DIR test: strace is missing or may not trace here");
}

Deno.test({
  name: "STORE_FSYNC=1: DATA_DIR made again and bridge.sqlite written back reach the disk",
  ignore: !strace && !inCi,
  fn: async () => {
    if (!strace) throw new Error("strace is missing or may not trace here (CI=true)");
    await withTempDir(async (root) => {
      const dir = `${root}/data`;
      const trace = `${root}/trace`;
      const out = await new Deno.Command("strace", {
        args: [
          "-f",
          "-y",
          "-e",
          "trace=mkdir,mkdirat,rename,renameat,renameat2,fsync,fdatasync",
          "-o",
          trace,
          Deno.execPath(),
          "eval",
          CHILD,
          dir,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const lines = Deno.readTextFileSync(trace).split("\n");
      const at = (re: RegExp, from = 0) => lines.findIndex((l, i) => i >= from && re.test(l));
      const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      const synced = (path: string, from: number) =>
        at(new RegExp(`(fsync|fdatasync)\\(\\d+<${esc(path)}>\\) = 0`), from) >= 0;
      const made = at(new RegExp(`mkdir(at)?\\(.*"${esc(dir)}", .*\\) = 0`));
      assert.ok(made >= 0, "DATA_DIR was made again");
      assert.ok(synced(root, made), "its parent synced after DATA_DIR was made again");
      const renamed = at(new RegExp(`rename.*"${esc(dir)}/bridge\\.sqlite"\\) = 0`));
      assert.ok(renamed >= 0, "bridge.sqlite was written back");
      assert.ok(synced(dir, renamed), "DATA_DIR synced after the rename");
    });
  },
});

const JOURNAL_CHILD = `
import { openJournalDir } from ${
  JSON.stringify(new URL("../../src/store/sqlite_journal_file.ts", import.meta.url).href)
};
import { CommitLine } from ${
  JSON.stringify(new URL("../../src/store/sqlite_journal_line.ts", import.meta.url).href)
};
const dir = Deno.args[0];
const journal = openJournalDir(dir, 0, true);
for (let i = 1; i <= 3; i++) {
  journal.append(i, new TextEncoder().encode(new CommitLine(i, i).text()));
}
Deno.removeSync(dir, { recursive: true });
journal.ensure();
journal.close();
`;

Deno.test({
  name: "STORE_FSYNC=1: journal segments written back reach the disk before they count",
  ignore: !strace && !inCi,
  fn: async () => {
    if (!strace) throw new Error("strace is missing or may not trace here (CI=true)");
    await withTempDir(async (root) => {
      const dir = `${root}/bridge.journal`;
      const trace = `${root}/trace`;
      const out = await new Deno.Command("strace", {
        args: [
          "-f",
          "-y",
          "-e",
          "trace=rename,renameat,renameat2,fsync,fdatasync",
          "-o",
          trace,
          Deno.execPath(),
          "eval",
          JOURNAL_CHILD,
          dir,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const lines = Deno.readTextFileSync(trace).split("\n");
      const at = (re: RegExp, from = 0) => lines.findIndex((l, i) => i >= from && re.test(l));
      const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
      const segment = `${dir}/${"1".padStart(20, "0")}.log`;
      const copied = at(new RegExp(`fdatasync\\(\\d+<${esc(segment)}\\.restoring>\\) = 0`));
      assert.ok(copied >= 0, "the copy was fdatasync'd under its temporary name");
      const renamed = at(new RegExp(`rename.*"${esc(segment)}"\\) = 0`), copied);
      assert.ok(renamed >= 0, "then renamed into the segment's name");
      const synced = at(new RegExp(`fsync\\(\\d+<${esc(dir)}>\\) = 0`), renamed);
      assert.ok(synced >= 0, "then the directory synced");
    });
  },
});
