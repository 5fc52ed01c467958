// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// `deno task bench`: the bridge against a bare Deno baseline (and a Node.js ws relay), in
// interleaved rounds on this machine, printed as one markdown table and written to
// bench/results/latest.md. Flags: --quick (smaller sizes), --clients (compare the load
// generator's HTTP clients), --cpu-prof (profile the bridge during throughput and latency).
import { parseArgs } from "node:util";
import { runLoad } from "./load_runner.ts";
import { FULL, loadConfig, QUICK } from "./plan.ts";
import { describeMachine, num, renderTable, type Row } from "./report.ts";
import { topSelfTime } from "./profile_summary.ts";
import { bigStore, manyAgents } from "./scale.ts";
import { stopAll } from "./servers.ts";
import { median } from "./stats.ts";
import { probe, ROOT, startBaseline, startBridge, startNodeRelay, type System } from "./systems.ts";
import {
  type Context,
  Delivery,
  deliveryRow,
  heartbeats,
  idle,
  latency,
  type Maybe,
  redis,
  slowAgent,
  throughput,
} from "./workloads.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    clients: { type: "boolean", default: false },
    "cpu-prof": { type: "boolean", default: false },
    // Groups of rows to run, comma-separated (default all): core (throughput, latency, slow
    // agent), idle (idle sockets, heartbeats), redis, scale (1,000 agents, a big store).
    only: { type: "string", default: "core,idle,redis,scale" },
  },
});
const groups = new Set(flags.only.split(",").map((g) => g.trim()));

const RESULTS = `${ROOT}bench/results`;
const started = performance.now();
const log = (message: string) => {
  const s = ((performance.now() - started) / 1000).toFixed(0).padStart(3);
  console.error(`[bench ${s}s] ${message}`);
};

async function main(): Promise<void> {
  Deno.addSignalListener("SIGINT", () => {
    stopAll().finally(() => Deno.exit(130));
  });
  await Deno.mkdir(RESULTS, { recursive: true });
  await installNodeRelay();
  const plan = flags.quick ? QUICK : FULL;
  const machine = await describeMachine();
  log(machine);
  const ctx: Context = { plan, log, delivery: new Delivery() };
  const profDir = flags["cpu-prof"] ? await Deno.makeTempDir({ prefix: "bench_prof_" }) : undefined;

  const rows: Row[] = [];
  let extra = "";
  if (groups.has("core")) extra += await core(ctx, rows, profDir);
  const bridgeAvailable = await Deno.stat(`${ROOT}main.ts`).then(() => "", () => "no main.ts");
  if (groups.has("idle")) {
    rows.push(await idle(ctx, bridgeAvailable));
    rows.push(await heartbeats(ctx, bridgeAvailable));
    rows.push(await heartbeats(ctx, bridgeAvailable, { guard: false }));
  }
  if (groups.has("redis") || groups.has("scale")) {
    const base = await startBaseline();
    try {
      if (groups.has("redis")) rows.push(...await redis(ctx, base, bridgeAvailable));
      if (groups.has("scale")) rows.push(...await manyAgents(ctx, base, bridgeAvailable));
    } finally {
      await base.stop();
    }
  }
  if (groups.has("scale")) rows.push(await bigStore(ctx, bridgeAvailable));
  rows.push(deliveryRow(ctx, bridgeAvailable));

  const seconds = (performance.now() - started) / 1000;
  const report =
    `# Bench results\n\n${new Date().toISOString()}${flags.quick ? " (--quick)" : ""}; ` +
    `${seconds.toFixed(0)} s in total.\n\nMachine: ${machine}.\n\n${renderTable(rows)}${extra}`;
  await Deno.writeTextFile(`${RESULTS}/latest.md`, report);
  console.log(report);
  log(`written to bench/results/latest.md`);
}

/** The rows against the bare baseline and the Node relay: throughput, latency, a slow agent. */
async function core(ctx: Context, rows: Row[], profDir: string | undefined): Promise<string> {
  let extra = "";
  const baseline = await startBaseline();
  const relay = await attempt(startNodeRelay);
  const bridge = await attemptBridge(() => startBridge({ cpuProfDir: profDir }));
  const memory = await attemptBridge(() =>
    startBridge({ label: "bridge STORE=memory", env: { STORE: "memory" } })
  );
  // Deno KV, the default store before SQLite: the same rounds show what the change bought.
  const kv = await attemptBridge(() =>
    startBridge({ label: "bridge STORE=kv", env: { STORE: "kv" } })
  );
  // The default store behind a proxy that guards connections: what the relay costs.
  const unguarded = await attemptBridge(() =>
    startBridge({ label: "bridge CONNECTION_GUARD=off", env: { CONNECTION_GUARD: "off" } })
  );
  // Power-loss durability: what waiting for the disk costs on this machine.
  const fsync = await attemptBridge(() =>
    startBridge({ label: "bridge STORE_FSYNC=1", env: { STORE_FSYNC: "1" } })
  );
  const others = [relay, memory, kv, unguarded, fsync];
  const stopOthers = async () => {
    for (const s of others.splice(0)) if (typeof s !== "string") await s.stop();
  };
  try {
    if (flags.clients) extra += await compareClients(ctx, baseline);
    rows.push(
      ...await throughput(ctx, baseline, { bridge, memory, relay, kv, unguarded, fsync }),
    );
    // The rows below compare the bridge with the baseline alone: the servers only the
    // throughput rows need would otherwise idle beside them, with their timers and V8's
    // idle-time collections, on the same two cores as the latency being measured.
    await stopOthers();
    rows.push(await latency(ctx, baseline, bridge));
    rows.push(await slowAgent(ctx, baseline, bridge));
  } finally {
    await stopOthers();
    if (typeof bridge !== "string") await bridge.stop();
    await baseline.stop();
  }
  if (profDir) {
    extra += await summarizeProfile(profDir);
    await Deno.remove(profDir, { recursive: true });
  }
  return extra;
}

/** `npm install` for the node relay when its node_modules is missing (it is gitignored). */
async function installNodeRelay(): Promise<void> {
  const dir = `${ROOT}bench/node_relay`;
  if (await Deno.stat(`${dir}/node_modules/ws`).then(() => true, () => false)) return;
  log("npm install --prefix bench/node_relay");
  const out = await new Deno.Command("npm", {
    args: ["install", "--prefix", dir, "--no-audit", "--no-fund"],
    stdout: "piped",
    stderr: "piped",
  }).output().catch((err) => ({ success: false, stderr: new TextEncoder().encode(String(err)) }));
  if (!out.success) log(`npm install failed: ${new TextDecoder().decode(out.stderr).trim()}`);
}

async function attempt(start: () => Promise<System>): Promise<Maybe> {
  try {
    return await start();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    log(reason);
    return reason;
  }
}

/** Starts a bridge and checks that it delivers one message before any round relies on it. */
async function attemptBridge(start: () => Promise<System>): Promise<Maybe> {
  const exists = await Deno.stat(`${ROOT}main.ts`).then(() => true, () => false);
  if (!exists) return "main.ts does not exist yet";
  const system = await attempt(start);
  if (typeof system === "string") return system;
  const why = await probe(system, system);
  if (!why) return system;
  log(`${system.label}: ${why}`);
  await system.stop();
  return why;
}

/** The load generator's cost per request with each HTTP client, against the baseline. */
async function compareClients(ctx: Context, baseline: System): Promise<string> {
  const kinds = ["raw", "fetch", "node"] as const;
  const results = new Map<string, { cpu: number[]; rate: number[] }>();
  for (const kind of kinds) results.set(kind, { cpu: [], rate: [] });
  for (let round = 1; round <= ctx.plan.rounds; round++) {
    for (const kind of kinds) {
      ctx.log(`client ${kind} round ${round}`);
      const r = await runLoad(loadConfig(ctx.plan, baseline, { mode: "throughput", client: kind }));
      results.get(kind)!.cpu.push((r.clientCpuMs * 1000) / r.sent);
      results.get(kind)!.rate.push(r.perSecond);
    }
  }
  const lines = kinds.map((kind) => {
    const r = results.get(kind)!;
    return `| ${kind} | ${num(median(r.cpu), 1)} µs | ${num(median(r.rate))} msg/s |`;
  });
  return `\n## Load generator HTTP clients (against the baseline)\n\n` +
    `| client | generator CPU per message | baseline throughput |\n| --- | ---: | ---: |\n` +
    `${lines.join("\n")}\n`;
}

/** Top self-time functions of the bridge's CPU profile (throughput, latency, slow agent). */
async function summarizeProfile(dir: string): Promise<string> {
  const files: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".cpuprofile")) files.push(e.name);
  if (files.length === 0) return "\n## Bridge CPU profile\n\nNo .cpuprofile was written.\n";
  const path = `${RESULTS}/bridge.cpuprofile`;
  // Workers (the SQLite checkpointer) write profiles of their own: the main thread's is largest.
  files.sort((a, b) => Deno.statSync(`${dir}/${b}`).size - Deno.statSync(`${dir}/${a}`).size);
  await Deno.copyFile(`${dir}/${files[0]}`, path);
  const top = topSelfTime(JSON.parse(await Deno.readTextFile(path)), 20);
  return `\n## Bridge CPU profile (bench/results/bridge.cpuprofile), top self time\n\n` +
    "| share | self ms | function |\n| ---: | ---: | --- |\n" +
    top.map((t) => `| ${(t.share * 100).toFixed(1)}% | ${t.ms.toFixed(0)} | \`${t.name}\` |`)
      .join("\n") +
    "\n";
}

try {
  await main();
} finally {
  await stopAll();
}
