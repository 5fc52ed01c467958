// The journal's directory that cannot be made again (a file in its way): every callback is
// refused (503) meanwhile, and the store's reload after each refusal looked at the journal and
// logged at warn that it could not begin a segment: one line for every callback and every
// WeChat retry, on top of the file guard's own line each second that already says so.

import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { journalDirOf } from "../../src/store/sqlite_journal_file.ts";
import {
  baseStoreOptions,
  presenceOf,
  readAll,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";

Deno.test("a file in the journal's way: refused callbacks log nothing each, the guard's look says it each second", async () => {
  const lines: string[] = [];
  await configure({
    sinks: { keep: (record: LogRecord) => lines.push(record.message.map(String).join("")) },
    loggers: [
      { category: ["bridge"], sinks: ["keep"], lowestLevel: "info" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  try {
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      const store = await openSqliteStore(path, baseStoreOptions());
      try {
        const online = presenceOf("a1");
        await store.agentOnline("a1", online);
        await store.acceptInbound([textItem("f1", "m1")], online);
        await readAll(store, "a1");
        await Deno.remove(journalDirOf(path), { recursive: true });
        await Deno.writeTextFile(journalDirOf(path), "in the way");
        const deadline = Date.now() + 10_000;
        while (!lines.some((line) => /Cannot look at/.test(line))) {
          assert.ok(Date.now() < deadline, "the guard's look says it");
          await new Promise((r) => setTimeout(r, 20));
        }
        const before = lines.length;
        for (let i = 0; i < 20; i++) {
          await assert.rejects(store.acceptInbound([textItem("f1", `r${i}`)], online));
        }
        const during = lines.slice(before).filter((line) => !/Cannot look at/.test(line));
        assert.deepEqual(during, [], "nothing logged for each refused callback");
        await Deno.remove(journalDirOf(path));
        const taken = Date.now() + 10_000;
        while (true) {
          try {
            await store.acceptInbound([textItem("f1", "m2")], online);
            break;
          } catch (error) {
            if (Date.now() > taken) throw error;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      } finally {
        await store.close();
      }
    });
  } finally {
    await reset();
  }
});
