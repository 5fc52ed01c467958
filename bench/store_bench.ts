// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// The embedded stores alone, with the bridge's write pattern: acceptInbound of text messages
// (~400 bytes) from 1,000 followers to 100 agents, batches as the webhook makes them, on a
// file under a temporary directory. Rounds are interleaved (kv, sqlite, sqlite fsync, …) and
// the table gives medians of the rounds: messages/s (wall, the deferred writes and close
// included), CPU µs per message (the whole process, workers included) and the main thread's
// CPU µs per message (the thread that answers WeChat, from /proc/thread-self/schedstat).
// Run: deno run -A bench/store_bench.ts [messages per case, default 30000] [rounds, default 3]
//   [stores, comma-separated names as in the table's first column, default all]

import { cpuUsage } from "node:process";
import { setImmediate } from "node:timers";
import { openKvStore } from "../src/store/kv_store.ts";
import { openSqliteStore } from "../src/store/sqlite_store.ts";
import { createMemoryStore } from "../src/store/memory_store.ts";
import type { Presence, Store } from "../src/core/store.ts";
import { storeItem, threadCpuNs } from "./store_items.ts";
import { median } from "./stats.ts";

const TOTAL = Number(Deno.args[0] ?? 30_000);
const ROUNDS = Number(Deno.args[1] ?? 3);
const AGENTS = 100;
const FOLLOWERS = 1000;
const BATCHES = [1, 12, 32];

const agentIds = Array.from({ length: AGENTS }, (_, i) => `agent${i}`);
const presence: Presence = { isOnline: () => true, onlineAgents: () => agentIds };

const item = (i: number) =>
  storeItem(
    i,
    FOLLOWERS,
    `message ${i}: a question about an order, as followers write them. `.repeat(3),
  );

/** CPU time of the calling thread, ns (Linux): what the main thread spent. */

/** Messages/s, CPU µs per message and main-thread CPU µs per message, for one store and batch. */
async function run(store: Store, batch: number): Promise<[number, number, number]> {
  for (const a of agentIds) await store.agentOnline(a, presence);
  // One per commit is slow on Deno KV and with fsync: a tenth of the sample gives the rate.
  const count = batch === 1 ? TOTAL / 10 : TOTAL;
  const items = Array.from({ length: count }, (_, i) => item(i));
  const cpu = cpuUsage();
  const main = threadCpuNs();
  const started = performance.now();
  for (let i = 0; i < items.length; i += batch) {
    await store.acceptInbound(items.slice(i, i + batch), presence);
    // Through the event loop between batches, as the server goes: timers (deferred writes)
    // run where they would.
    await new Promise((resolve) => setImmediate(resolve));
  }
  // The main thread's part is what the messages cost it, not the store's close.
  const mainUs = (threadCpuNs() - main) / 1000;
  await store.close();
  const seconds = (performance.now() - started) / 1000;
  const used = cpuUsage(cpu);
  return [count / seconds, (used.user + used.system) / count, mainUs / count];
}

const modelOptions = {
  companyId: "",
  now: Date.now,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 24 * 3600_000,
};
const retentionMs = 30 * 24 * 3600_000;
const dir = await Deno.makeTempDir({ prefix: "store_bench_" });
let n = 0;
const allStores: Array<[string, () => Promise<Store>]> = [
  ["memory", () => Promise.resolve(createMemoryStore(modelOptions))],
  ["Deno KV", () => openKvStore(`${dir}/kv${n++}.kv`, { ...modelOptions, retentionMs })],
  [
    "SQLite (WAL, synchronous=NORMAL)",
    () => openSqliteStore(`${dir}/s${n++}.sqlite`, { ...modelOptions, retentionMs }),
  ],
  [
    "SQLite, STORE_FSYNC=1 (synchronous=FULL)",
    () => openSqliteStore(`${dir}/f${n++}.sqlite`, { ...modelOptions, retentionMs, fsync: true }),
  ],
];
const only = Deno.args[2]?.split(",");
const stores = allStores.filter(([name]) => !only || only.some((o) => name.startsWith(o)));

const rates = new Map<string, number[]>();
const cpus = new Map<string, number[]>();
const mains = new Map<string, number[]>();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const batch of BATCHES) {
      for (const [name, open] of stores) {
        const [rate, cpu, main] = await run(await open(), batch);
        const key = `${name}|${batch}`;
        rates.set(key, [...rates.get(key) ?? [], rate]);
        cpus.set(key, [...cpus.get(key) ?? [], cpu]);
        mains.set(key, [...mains.get(key) ?? [], main]);
      }
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
const rows = stores.map(([name]) => {
  const cells = BATCHES.map((b) => {
    const key = `${name}|${b}`;
    const cpu = `${fmt(median(cpus.get(key)!))} µs`;
    return `${fmt(median(rates.get(key)!))}/s, ${cpu} (main ${fmt(median(mains.get(key)!))} µs)`;
  });
  return `| ${name} | ${cells.join(" | ")} |`;
});
const kvAt = (b: number) => median(rates.get(`Deno KV|${b}`) ?? [NaN]);
const sqAt = (b: number) => median(rates.get(`SQLite (WAL, synchronous=NORMAL)|${b}`) ?? [NaN]);
console.log(
  [
    `acceptInbound on a file, ${TOTAL} messages per case (${TOTAL / 10} at 1 per commit), ` +
    `medians of ${ROUNDS} interleaved rounds`,
    `(messages/s, CPU µs per message, the main thread's part), ${AGENTS} agents, ` +
    `${FOLLOWERS} followers`,
    "",
    `| store | ${BATCHES.map((b) => `${b} per commit`).join(" | ")} |`,
    `| --- | ${BATCHES.map(() => "---").join(" | ")} |`,
    ...rows,
    "",
    `SQLite ÷ Deno KV: ${
      BATCHES.map((b) => `${(sqAt(b) / kvAt(b)).toFixed(2)}× at ${b}`).join(", ")
    }`,
  ].join("\n"),
);
