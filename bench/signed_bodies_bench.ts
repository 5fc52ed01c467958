// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// What WECHAT_MAX_AGE_S costs the embedded stores per callback: each message one commit
// (acceptInbound of one ~400-byte text), without and with its signature's first body kept
// (firstBody, then bodiesKept before the answer, as the webhook does), and a callback that
// commits nothing but its signature (a retry under a new one). Rounds interleaved; medians of
// wall µs per callback and of the main thread's CPU µs (the thread that answers WeChat).
// Run: deno run -A bench/signed_bodies_bench.ts [callbacks per case, default 5000] [rounds, 3]

import { setImmediate } from "node:timers";
import { openKvStore } from "../src/store/kv_store.ts";
import { openSqliteStore } from "../src/store/sqlite_store.ts";
import { bodyHash } from "../src/wechat/signed_bodies.ts";
import type { Presence, Store } from "../src/core/store.ts";
import { storeItem, threadCpuNs } from "./store_items.ts";
import { median } from "./stats.ts";

const TOTAL = Number(Deno.args[0] ?? 5000);
const ROUNDS = Number(Deno.args[1] ?? 3);
const presence: Presence = { isOnline: () => true, onlineAgents: () => ["agent0"] };

const item = (i: number) =>
  storeItem(i, 1000, `message ${i}: a question about an order. `.repeat(6));

type Mode = "unset" | "set" | "signature only";

/** Wall and main-thread CPU µs per callback. */
async function run(store: Store, mode: Mode): Promise<[number, number]> {
  await store.agentOnline("agent0", presence);
  const items = Array.from({ length: TOTAL }, (_, i) => item(i));
  const signatures = items.map((_, i) => (i + 1).toString(16).padStart(40, "0"));
  const main = threadCpuNs();
  const started = performance.now();
  for (let i = 0; i < items.length; i++) {
    if (mode !== "unset") {
      await store.firstBody!(signatures[i]!, bodyHash(String(i)), 300_000);
    }
    if (mode !== "signature only") await store.acceptInbound([items[i]!], presence);
    if (mode !== "unset") await store.bodiesKept!();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const wall = (performance.now() - started) * 1000 / TOTAL;
  const cpu = (threadCpuNs() - main) / 1000 / TOTAL;
  await store.close();
  return [wall, cpu];
}

const options = {
  companyId: "",
  now: Date.now,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 3600_000,
  retentionMs: 86_400_000,
};
const stores: Record<string, (dir: string) => Promise<Store>> = {
  sqlite: (dir) => openSqliteStore(`${dir}/bridge.sqlite`, options),
  "sqlite fsync": (dir) => openSqliteStore(`${dir}/bridge.sqlite`, { ...options, fsync: true }),
  kv: (dir) => openKvStore(`${dir}/bridge.kv`, options),
};
const modes: Mode[] = ["unset", "set", "signature only"];
const results = new Map<string, Array<[number, number]>>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, open] of Object.entries(stores)) {
    for (const mode of modes) {
      const dir = await Deno.makeTempDir({ prefix: "signed-bench-" });
      try {
        const key = `${name} | ${mode}`;
        results.set(key, [...results.get(key) ?? [], await run(await open(dir), mode)]);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    }
  }
}
console.log(`${TOTAL} callbacks a case, one commit each, medians of ${ROUNDS} rounds`);
console.log("| store | WECHAT_MAX_AGE_S | wall µs/callback | main thread CPU µs/callback |");
console.log("| --- | --- | --- | --- |");
for (const [key, samples] of results) {
  const wall = median(samples.map((s) => s[0])).toFixed(1);
  const cpu = median(samples.map((s) => s[1])).toFixed(1);
  console.log(`| ${key} | ${wall} | ${cpu} |`);
}
