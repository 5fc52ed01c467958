// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// The Redis store's script alone: batches of follower messages (100 agents, 1,000 followers,
// as the bench's throughput rows send them) through acceptInbound, and what Redis spent on
// them by its own INFO commandstats: µs per message inside the script, and the commands it
// ran. No timing of our own, so a busy machine moves it little. Needs a Redis:
//   deno run -A bench/redis_script_bench.ts [redis://127.0.0.1:6391] [messages] [batch]

import { Redis } from "redis";
import { createRedisStore } from "../src/store/redis_store.ts";
import type { InboundItem } from "../src/core/store.ts";
import type { Envelope } from "../src/protocol/envelope.ts";

const url = Deno.args[0] ?? "redis://127.0.0.1:6391";
const messages = Number(Deno.args[1] ?? 20_000);
const batch = Number(Deno.args[2] ?? 10);
const prefix = `script_bench_${crypto.randomUUID().slice(0, 8)}:`;
const AGENTS = 100;
const FOLLOWERS_PER_AGENT = 10;

function item(i: number): InboundItem {
  const agent = `agent${i % AGENTS}`;
  const follower = `follower${i % (AGENTS * FOLLOWERS_PER_AGENT)}`;
  const id = String(1_000_000_000_000_000_000n + BigInt(i));
  const envelope: Envelope = {
    data: {
      id,
      name: follower,
      avatar: "",
      msg_type: "text",
      contact_id: follower,
      company_id: "",
      send_time: 1_700_000_000,
      msg: { content: `hello ${i}`, msg_id: id },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId: follower,
    name: null,
    to: agent,
    envelope,
    kind: "message",
    receivedAt: Date.now(),
    dedupKey: id,
  };
}

const store = await createRedisStore({
  url,
  prefix,
  companyId: "",
  now: Date.now,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 60_000,
  heartbeatMs: 60_000,
});
const raw = new Redis(url);
const presence = { isOnline: () => true, onlineAgents: () => new Set<string>() };
try {
  for (let a = 0; a < AGENTS; a++) await store.agentOnline(`agent${a}`, presence);
  // Warm-up: every follower bound once, as in a running bridge.
  for (let i = 0; i < AGENTS * FOLLOWERS_PER_AGENT; i += batch) {
    await store.acceptInbound(Array.from({ length: batch }, (_, j) => item(i + j)), presence);
  }
  await raw.config("RESETSTAT");
  for (let i = 0; i < messages; i += batch) {
    const n = 1e6 + i;
    await store.acceptInbound(Array.from({ length: batch }, (_, j) => item(n + j)), presence);
  }
  const stats = await raw.info("commandstats");
  const rows = [...stats.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)]
    .map(([, name, calls, usec]) => ({ name: name!, calls: Number(calls), usec: Number(usec) }));
  const script = rows.find((r) => r.name === "evalsha");
  const inner = rows.filter((r) => r.name !== "evalsha");
  console.log(
    `${messages} messages in batches of ${batch}: ${
      ((script?.usec ?? 0) / messages).toFixed(1)
    } µs per message in the script (its commands ${
      (inner.reduce((s, r) => s + r.usec, 0) / messages).toFixed(1)
    } µs), ${(inner.reduce((s, r) => s + r.calls, 0) / messages).toFixed(2)} commands`,
  );
  for (const r of inner.sort((a, b) => b.calls - a.calls)) {
    console.log(`  ${r.name.padEnd(16)} ${(r.calls / messages).toFixed(2)} per message`);
  }
} finally {
  await store.close();
  let cursor = "0";
  do {
    const [next, keys] = await raw.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await raw.del(...keys);
  } while (cursor !== "0");
  raw.disconnect();
}
