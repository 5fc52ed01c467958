// The SQLite store's worker, holding lines up to 100 ms or 4 MiB, through the store itself:
// more than 4 MiB of commits in one window, and envelopes of every odd shape (lone surrogates,
// keys that are numbers, `__proto__`, `seq`/`result` inside msg) whose history items the
// worker cuts out of the logged frames; read back equal to what was delivered, byte for byte.
import assert from "node:assert/strict";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import type { LogEntry } from "../../src/core/store.ts";
import { baseStoreOptions, presenceOf, textItem, withTempDir } from "./_durable_store_cases.ts";

const asItem = (e: LogEntry) => {
  const { seq: _, ...rest } = e.envelope.data as Record<string, unknown>;
  return JSON.stringify({ ...rest, direction: "in" });
};

async function historyOf(
  store: Awaited<ReturnType<typeof openSqliteStore>>,
  follower: string,
): Promise<string[]> {
  const page = await store.readHistory(follower, null, 10_000);
  return page.items.map((i) => JSON.stringify(i));
}

Deno.test("more than 4 MiB of commits in one window of the worker read back whole", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    let store = await openSqliteStore(path, baseStoreOptions());
    const online = presenceOf("a1");
    await store.agentOnline("a1", online);
    const delivered: LogEntry[] = [];
    // Committed back to back (each commit is written before its promise settles): ~9 MiB.
    const pending = [];
    for (let i = 0; i < 300; i++) {
      pending.push(store.acceptInbound([textItem("oBig", `${i} ${"长".repeat(10_000)}`)], online));
    }
    for (const p of await Promise.all(pending)) delivered.push(...p.deliveries);
    const expected = delivered.filter((e) => e.envelope.data.msg_type === "text").map(asItem);
    assert.equal(expected.length, 300);
    // Past the worker's wait: written by its own batches, not by a read's flush.
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(await historyOf(store, "oBig"), expected);
    await store.close();
    store = await openSqliteStore(path, baseStoreOptions());
    try {
      assert.deepEqual(await historyOf(store, "oBig"), expected);
    } finally {
      await store.close();
    }
  });
});

Deno.test("history cut out of frames of odd envelopes equals what was delivered", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    let store = await openSqliteStore(path, baseStoreOptions());
    const online = presenceOf("a1");
    await store.agentOnline("a1", online);
    const msgs: Array<Record<string, unknown>> = [
      { content: "lone \ud800 high, lone \udc00 low, pair \ud83d\ude00" },
      { content: '\u2028\u2029 \\ " \x1f \x00' },
      { "10": "b", "2": "a", content: "number keys" },
      JSON.parse('{"__proto__":{"seq":1},"content":"proto"}'),
      {
        seq: 5,
        result: { code: 1, message: "m" },
        content: ',"seq":2},"result":{"code":1001,"message":"common"}}',
      },
      { nested: { deep: [{ seq: 2 }, '},"result":'] }, n: 1e21, m: -0, f: 0.1 },
    ];
    const delivered: LogEntry[] = [];
    for (const msg of msgs) {
      const item = textItem("oOdd", "");
      item.envelope.data.msg = msg;
      delivered.push(...(await store.acceptInbound([item], online)).deliveries);
    }
    const expected = delivered.filter((e) => e.envelope.data.msg_type === "text").map(asItem);
    assert.equal(expected.length, msgs.length);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(await historyOf(store, "oOdd"), expected);
    await store.close();
    store = await openSqliteStore(path, baseStoreOptions());
    try {
      assert.deepEqual(await historyOf(store, "oOdd"), expected);
    } finally {
      await store.close();
    }
  });
});
