// acceptInbound throughput of the memory store against the Deno KV store (in memory and on a
// file), in batches of 1, 10 and 100 messages: what one KV commit per batch costs.
// Run: deno run -A bench/kv_store_bench.ts [messages per case, default 20000]

import { openKvStore } from "../src/store/kv_store.ts";
import { createMemoryStore } from "../src/store/memory_store.ts";
import type { Presence, Store } from "../src/core/store.ts";
import { storeItem } from "./store_items.ts";

const TOTAL = Number(Deno.args[0] ?? 20_000);
const AGENTS = 10;
const FOLLOWERS = 1000;

const presence: Presence = {
  isOnline: () => true,
  onlineAgents: () => Array.from({ length: AGENTS }, (_, i) => `agent${i}`),
};

const item = (i: number) =>
  storeItem(i, FOLLOWERS, `message ${i}: a short question about an order, as followers write them`);

async function run(store: Store, batch: number, count: number): Promise<number> {
  for (let a = 0; a < AGENTS; a++) await store.agentOnline(`agent${a}`, presence);
  const items = Array.from({ length: count }, (_, i) => item(i));
  const started = performance.now();
  for (let i = 0; i < items.length; i += batch) {
    await store.acceptInbound(items.slice(i, i + batch), presence);
  }
  const seconds = (performance.now() - started) / 1000;
  await store.close();
  return count / seconds;
}

const modelOptions = {
  companyId: "",
  now: Date.now,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 24 * 3600_000,
};
const retentionMs = 30 * 24 * 3600_000;
const dir = await Deno.makeTempDir({ prefix: "kv_store_bench_" });
const stores: Array<[string, (batch: number) => Promise<Store>]> = [
  ["memory", () => Promise.resolve(createMemoryStore(modelOptions))],
  ["kv :memory:", () => openKvStore(":memory:", { ...modelOptions, retentionMs })],
  ["kv file", (batch) => openKvStore(`${dir}/bench_${batch}.kv`, { ...modelOptions, retentionMs })],
];

const rows: string[] = [];
try {
  for (const [name, open] of stores) {
    const cells: string[] = [];
    for (const batch of [1, 10, 100]) {
      // Batches of one are slow on KV: a smaller sample gives the same rate.
      const rate = await run(await open(batch), batch, batch === 1 ? TOTAL / 4 : TOTAL);
      cells.push(Math.round(rate).toLocaleString("en-US"));
    }
    rows.push(`| ${name} | ${cells.join(" | ")} |`);
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
// deno-lint-ignore no-console
console.log(
  [
    `acceptInbound, messages/s (${TOTAL} messages per case, ${TOTAL / 4} for batch 1)`,
    "| store | batch 1 | batch 10 | batch 100 |",
    "| --- | --- | --- | --- |",
    ...rows,
  ].join("\n"),
);
