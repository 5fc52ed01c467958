// The workloads of issue #10, each run in interleaved rounds (baseline, bridge, baseline,
// bridge, …) and summarized as table rows. Ratios are medians of per-round ratios, so a noisy
// neighbour that slows one round slows both sides of that round's ratio.
import type { LoadConfig, LoadResult } from "./load.ts";
import { runLoad } from "./load_runner.ts";
import { readOpenFilesLimit } from "./proc.ts";
import { loadConfig, type Plan } from "./plan.ts";
import { kb, mb, met, ms, num, ratio, type Row } from "./report.ts";
import { median } from "./stats.ts";
import {
  holdsSqlite,
  probe,
  startBaseline,
  startBridge,
  startRedis,
  type System,
} from "./systems.ts";

/** A system under test, or why it is not available. */
export type Maybe = System | string;

export interface Context {
  plan: Plan;
  log(message: string): void;
  /** Delivery over every bridge run: the "no message lost or duplicated" target. */
  delivery: Delivery;
}

export class Delivery {
  runs = 0;
  sent = 0;
  lost = 0;
  duplicates = 0;
  httpErrors = 0;
  errors: string[] = [];

  add(result: LoadResult): void {
    this.runs++;
    this.sent += result.sent;
    this.lost += result.lost;
    this.duplicates += result.duplicates;
    this.httpErrors += result.httpErrors;
    if (result.error) this.errors.push(result.error);
  }
}

function notAvailable(workload: string, reason: string, target = ""): Row {
  return {
    workload,
    bridge: `not available: ${reason}`,
    baseline: "",
    ratio: "",
    target,
    status: "n/a",
    notes: "",
  };
}

async function measure(ctx: Context, system: System, what: string, run: () => Promise<LoadResult>) {
  ctx.log(`${what}: ${system.label}`);
  try {
    return await run();
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    ctx.log(`  ${error}`);
    return { error } as Partial<LoadResult> as LoadResult;
  }
}

/** A difference with its sign: "+5.5", "-20.1". */
const signed = (n: number) => (n >= 0 ? "+" : "") + num(n, 1);

/** Per-round ratios a[i] / b[i], then their median. */
function medianRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((x, i) => x / (b[i] ?? NaN)));
}

/**
 * `plan.rounds` interleaved rounds of one load: the baseline, then the bridge unless it is not
 * available. The bridge's results count for delivery.
 */
async function baselineThenBridge(
  ctx: Context,
  what: string,
  baseline: System,
  bridge: Maybe,
  config: (s: System) => LoadConfig,
): Promise<{ base: LoadResult[]; ours: LoadResult[] }> {
  const base: LoadResult[] = [];
  const ours: LoadResult[] = [];
  for (let round = 1; round <= ctx.plan.rounds; round++) {
    base.push(
      await measure(ctx, baseline, `${what} round ${round}`, () => runLoad(config(baseline))),
    );
    if (typeof bridge === "string") continue;
    const result = await measure(
      ctx,
      bridge,
      `${what} round ${round}`,
      () => runLoad(config(bridge)),
    );
    ours.push(result);
    ctx.delivery.add(result);
  }
  return { base, ours };
}

/** "p50 …, p99 …, max …": the medians over the rounds of one of a result's spreads. */
function spreadText(results: readonly LoadResult[], which: "latency" | "answer"): string {
  const at = (p: "p50" | "p99" | "max") => ms(median(results.map((r) => r[which][p])));
  return `p50 ${at("p50")}, p99 ${at("p99")}, max ${at("max")}`;
}

/** "lost N, dup M" summed over the rounds. */
function lossText(results: readonly LoadResult[]): string {
  return `lost ${results.reduce((n, r) => n + r.lost, 0)}, dup ` +
    `${results.reduce((n, r) => n + r.duplicates, 0)}`;
}

function errorsOf(results: readonly LoadResult[]): string {
  const errors = [...new Set(results.map((r) => r.error).filter((e) => e))];
  return errors.length > 0 ? ` Errors: ${errors.join("; ")}.` : "";
}

function cpuPerMessage(results: readonly LoadResult[], side: "server" | "client"): number {
  return median(
    results.map((r) => ((side === "server" ? r.serverCpuMs : r.clientCpuMs) * 1000) / r.sent),
  );
}

/** The systems of the throughput rounds besides the baseline: a string says why one is not
 * running. */
export interface ThroughputSystems {
  bridge: Maybe;
  memory: Maybe;
  relay: Maybe;
  kv?: Maybe;
  unguarded?: Maybe;
  /** The default store with STORE_FSYNC=1: what power-loss durability costs. */
  fsync?: Maybe;
}

/** (1) throughput of the default store (SQLite), with STORE=memory, STORE=kv, STORE_FSYNC=1
 * and the node ws relay beside it, and what persistence costs. */
export async function throughput(
  ctx: Context,
  baseline: System,
  systemsUnder: ThroughputSystems,
): Promise<Row[]> {
  const { bridge, memory, relay } = systemsUnder;
  const kv = systemsUnder.kv ?? "not started";
  const unguarded = systemsUnder.unguarded ?? "not started";
  const fsync = systemsUnder.fsync ?? "not started";
  const { plan } = ctx;
  const runs = new Map<System, LoadResult[]>();
  const systems = [baseline, bridge, memory, relay, kv, unguarded, fsync].filter((
    s,
  ): s is System => typeof s !== "string");
  for (const s of systems) runs.set(s, []);
  let memoryNote = "";
  let kvNote = "";
  for (let round = 1; round <= plan.rounds; round++) {
    for (const system of systems) {
      const result = await measure(
        ctx,
        system,
        `throughput round ${round}`,
        () => runLoad(loadConfig(plan, system, { mode: "throughput" })),
      );
      runs.get(system)!.push(result);
      if (system !== baseline && system !== relay) ctx.delivery.add(result);
    }
    if (round === 1 && typeof bridge !== "string" && bridge.dataDir) {
      if (!await holdsSqlite(bridge.dataDir)) {
        kvNote = "The default store wrote no SQLite file under DATA_DIR: not persisting? ";
      }
    }
    if (round === 1 && typeof memory !== "string" && memory.dataDir) {
      if (await holdsSqlite(memory.dataDir)) {
        memoryNote = "STORE=memory looks ignored: its DATA_DIR holds an SQLite file. ";
      }
    }
  }
  const base = runs.get(baseline)!;
  const baseRate = base.map((r) => r.perSecond);
  const rate = (s: Maybe) => typeof s === "string" ? [] : runs.get(s)!.map((r) => r.perSecond);
  const size = `${num(plan.throughputMessages)} msgs × ${plan.rounds} rounds, ` +
    `${plan.inFlight} in flight, ${plan.agents} agents`;
  const relayRatio = medianRatio(rate(relay), baseRate);
  const relayText = typeof relay === "string"
    ? `node ws relay not available: ${relay}`
    : `node ws relay ${num(median(rate(relay)))} msg/s (${ratio(relayRatio)} baseline, ` +
      `${num(cpuPerMessage(runs.get(relay)!, "server"))} µs CPU/msg)`;
  const describe = (results: LoadResult[]) => {
    const posted = Math.min(...results.map((r) => r.sent));
    const capped = posted < plan.throughputMessages
      ? ` Capped at ${plan.throughputCapS} s: ${num(posted)} posted in the slowest round.`
      : "";
    const http = results.reduce((n, r) => n + r.httpErrors, 0);
    return `${lossText(results)}, HTTP errors ${http}; server ` +
      `${num(cpuPerMessage(results, "server"))} µs CPU/msg (baseline ` +
      `${num(cpuPerMessage(base, "server"))}), load generator ${
        num(cpuPerMessage(results, "client"))
      }.` +
      capped + errorsOf(results);
  };
  const rows: Row[] = [];
  if (typeof bridge === "string") {
    rows.push({
      ...notAvailable(
        "(1) throughput, default store (SQLite)",
        bridge,
        "≥ 0.50× baseline, ahead of node relay",
      ),
      baseline: `${num(median(baseRate))} msg/s`,
      notes: `${size}; ${relayText}.${errorsOf(base)}`,
    });
  } else {
    const r = medianRatio(rate(bridge), baseRate);
    const aheadOfRelay = typeof relay === "string" || medianRatio(rate(bridge), rate(relay)) > 1;
    rows.push({
      workload: "(1) throughput, default store (SQLite)",
      bridge: `${num(median(rate(bridge)))} msg/s`,
      baseline: `${num(median(baseRate))} msg/s`,
      ratio: ratio(r),
      target: "≥ 0.50× baseline, ahead of node relay",
      status: met(r >= 0.5 && aheadOfRelay),
      notes: `${kvNote}${size}; ${relayText}; ${describe(runs.get(bridge)!)}`,
    });
  }
  /** A row for one more system of the same rounds, without a target of its own. */
  const beside = (workload: string, system: System, comparison: string): Row => ({
    workload,
    bridge: `${num(median(rate(system)))} msg/s`,
    baseline: `${num(median(baseRate))} msg/s`,
    ratio: ratio(medianRatio(rate(system), baseRate)),
    target: "",
    status: "",
    notes: `same rounds; ${comparison}; ${describe(runs.get(system)!)}`,
  });
  if (typeof unguarded !== "string") {
    // The same bridge behind a proxy that guards connections (docs/production.md): no relay.
    rows.push(beside(
      "(1p) throughput, default store, CONNECTION_GUARD=off",
      unguarded,
      `÷ the guarded default ${ratio(medianRatio(rate(unguarded), rate(bridge)))}`,
    ));
  }
  if (typeof fsync !== "string") {
    rows.push(beside(
      "(1f) throughput, default store, STORE_FSYNC=1",
      fsync,
      `the default (no fsync) ÷ this ${ratio(medianRatio(rate(bridge), rate(fsync)))}: each ` +
        "journal write is followed by fdatasync before WeChat is answered, and the tables' by " +
        "synchronous=FULL",
    ));
  }
  if (typeof kv !== "string") {
    rows.push(beside(
      "(1k) throughput, STORE=kv (Deno KV, the default before)",
      kv,
      `default store ÷ KV ${ratio(medianRatio(rate(bridge), rate(kv)))}`,
    ));
  }
  if (typeof memory === "string") {
    rows.push(notAvailable("(1m) throughput, STORE=memory", memory, "≥ 0.80× baseline"));
    rows.push(notAvailable("persistence cost per message", `needs STORE=memory: ${memory}`));
    return rows;
  }
  const rm = medianRatio(rate(memory), baseRate);
  rows.push({
    workload: "(1m) throughput, STORE=memory",
    bridge: `${num(median(rate(memory)))} msg/s`,
    baseline: `${num(median(baseRate))} msg/s`,
    ratio: ratio(rm),
    target: "≥ 0.80× baseline",
    status: memoryNote ? "n/a" : met(rm >= 0.8),
    notes: memoryNote + describe(runs.get(memory)!),
  });
  if (typeof bridge !== "string") {
    const kv = runs.get(bridge)!;
    const mem = runs.get(memory)!;
    const wall = median(kv.map((r, i) => 1e6 / r.perSecond - 1e6 / (mem[i]?.perSecond ?? NaN)));
    const cpu = median(
      kv.map((r, i) =>
        (r.serverCpuMs * 1000) / r.sent -
        ((mem[i]?.serverCpuMs ?? NaN) * 1000) / (mem[i]?.sent ?? NaN)
      ),
    );
    rows.push({
      workload: "persistence cost per message (SQLite − memory)",
      bridge: `${signed(wall)} µs wall, ${signed(cpu)} µs CPU`,
      baseline: "",
      ratio: ratio(medianRatio(rate(bridge), rate(memory))),
      target: "",
      status: "",
      notes: kvNote + memoryNote + "wall = 1/throughput per message; CPU = server CPU time per " +
        "message; ratio = SQLite throughput / memory throughput.",
    });
  }
  return rows;
}

/** (2) POST-to-WebSocket latency at a fixed rate. */
export async function latency(ctx: Context, baseline: System, bridge: Maybe): Promise<Row> {
  const { plan } = ctx;
  const workload = `(2) latency at ${num(plan.rate)}/s for ${plan.latencyS} s`;
  const target = "p99 ≤ 2× baseline and < 5 ms";
  const { base, ours } = await baselineThenBridge(
    ctx,
    "latency",
    baseline,
    bridge,
    (s) =>
      loadConfig(plan, s, {
        mode: "rate",
        messages: plan.rate,
        durationS: plan.latencyS,
        concurrency: 64,
      }),
  );
  const show = (rs: LoadResult[]) => spreadText(rs, "latency");
  const lag = (rs: LoadResult[]) => num(Math.max(...rs.map((r) => r.maxLagMs)), 1);
  if (typeof bridge === "string") {
    return { ...notAvailable(workload, bridge, target), baseline: show(base) };
  }
  const r = medianRatio(ours.map((x) => x.latency.p99), base.map((x) => x.latency.p99));
  const p99 = median(ours.map((x) => x.latency.p99));
  return {
    workload,
    bridge: show(ours),
    baseline: show(base),
    ratio: ratio(r),
    target,
    status: met(r <= 2 && p99 < 5),
    notes: `ratio of p99s; medians of ${plan.rounds} rounds; ${lossText(ours)}; ` +
      `generator lag behind schedule ≤ ${lag(ours)} ms (baseline ${lag(base)} ms).` +
      errorsOf(ours),
  };
}

/** (3) RSS per idle connection, each round on fresh processes. */
export async function idle(ctx: Context, bridgeAvailable: string): Promise<Row> {
  const { plan } = ctx;
  const steps = plan.idleSteps;
  const last = steps.length - 1;
  const workload = `(3) idle agents, RSS per connection at ${steps.map((s) => num(s)).join(" / ")}`;
  const target = "≤ 1.20× baseline per connection";
  const perConn = (r: LoadResult) => steps.map((n, i) => ((r.rss[i] ?? NaN) - r.rssBefore) / n);
  const base: number[][] = [];
  const ours: number[][] = [];
  const errors: LoadResult[] = [];
  const once = async (start: () => Promise<System>, into: number[][]) => {
    let system: System | null = null;
    try {
      system = await start();
      const s = system;
      const result = await measure(
        ctx,
        s,
        `idle`,
        () => runLoad(loadConfig(plan, s, { mode: "idle", steps, durationS: 0, warmup: 0 })),
      );
      if (result.error) errors.push(result);
      else into.push(perConn(result));
    } catch (err) {
      errors.push({ error: err instanceof Error ? err.message : String(err) } as LoadResult);
    } finally {
      await system?.stop();
    }
  };
  for (let round = 1; round <= plan.rounds; round++) {
    ctx.log(`idle round ${round}`);
    await once(startBaseline, base);
    if (!bridgeAvailable) await once(() => startBridge(), ours);
  }
  const show = (rows: number[][]) =>
    steps.map((_, i) => kb(median(rows.map((r) => r[i] ?? NaN)))).join(" / ");
  if (bridgeAvailable) {
    return { ...notAvailable(workload, bridgeAvailable, target), baseline: show(base) };
  }
  const r = medianRatio(ours.map((x) => x[last] ?? NaN), base.map((x) => x[last] ?? NaN));
  return {
    workload,
    bridge: show(ours),
    baseline: show(base),
    ratio: ratio(r),
    target,
    status: met(r <= 1.2),
    notes: `ratio at ${num(steps[last] ?? 0)}; (VmRSS after − before) / agents, fresh processes, ` +
      `3 warm-up agents before "before".` + errorsOf(errors),
  };
}

/** Descriptors per client connection with the connection guard on (the bridge's default). */
const GUARD_FDS_PER_CONNECTION = 3;

/** 10,000 idle agents with heartbeats flowing: the bridge's whole RSS; `guard: false` runs
 * it with CONNECTION_GUARD=off (one descriptor a connection), as behind a proxy. */
export async function heartbeats(
  ctx: Context,
  bridgeAvailable: string,
  options: { guard: boolean } = { guard: true },
): Promise<Row> {
  const { plan } = ctx;
  const workload = `(3h${options.guard ? "" : "p"}) ${num(plan.heartbeatAgents)} idle agents ` +
    `with heartbeats${options.guard ? "" : ", CONNECTION_GUARD=off"}`;
  const target = plan.heartbeatAgents >= 10_000 ? "< 400 MB" : "< 400 MB (at 10,000)";
  if (bridgeAvailable) return notAvailable(workload, bridgeAvailable, target);
  const perConnection = options.guard ? GUARD_FDS_PER_CONNECTION : 1;
  // The connection guard holds three descriptors a connection (src/http/connections.ts): past
  // this machine's hard limit the bridge is started with a raised one, as docs/production.md
  // tells users to do (LimitNOFILE); where that is not permitted, the row runs as many agents
  // as the limit allows and says so, instead of failing at the agent the limit stops.
  const need = (agents: number) => perConnection * agents + 1024;
  const hardLimit = readOpenFilesLimit().hard;
  let agents = plan.heartbeatAgents;
  let how = "";
  if (need(agents) > hardLimit) {
    const why = await cannotRaiseOpenFiles(need(agents));
    if (why === "") {
      how = ` The bridge ran with its open-file limit raised to ${num(need(agents))} ` +
        `(\`prlimit --nofile\`, as LimitNOFILE in docs/production.md): the connection guard ` +
        `holds 3 descriptors a connection, over this machine's hard limit of ${num(hardLimit)}.`;
    } else {
      agents = Math.floor((hardLimit - 1024) / perConnection / 100) * 100;
      how = ` Only ${num(agents)} agents: the connection guard holds 3 descriptors a ` +
        `connection, ${num(need(plan.heartbeatAgents))} for ${num(plan.heartbeatAgents)}, over ` +
        `this machine's hard limit of ${num(hardLimit)}, which cannot be raised here (${why}).`;
    }
  }
  let system: System | null = null;
  try {
    system = await startBridge({
      env: {
        HEARTBEAT_INTERVAL_S: String(plan.heartbeatIntervalS),
        ...(options.guard ? {} : { CONNECTION_GUARD: "off" }),
      },
      openFiles: agents === plan.heartbeatAgents ? need(agents) : undefined,
    });
    const s = system;
    const result = await measure(ctx, s, "heartbeats", () =>
      runLoad(loadConfig(plan, s, {
        mode: "idle",
        steps: [agents],
        durationS: plan.heartbeatHoldS,
        warmup: 0,
      })));
    if (result.error) return { ...notAvailable(workload, result.error + how, target) };
    const expected = agents * Math.floor(plan.heartbeatHoldS / plan.heartbeatIntervalS);
    const whole = agents === plan.heartbeatAgents;
    return {
      workload,
      bridge: whole
        ? `${mb(result.peakRss)} peak RSS`
        : `n/a; ${mb(result.peakRss)} peak RSS at ${num(agents)}`,
      baseline: "",
      ratio: "",
      target,
      status: !whole ? "n/a" : agents >= 10_000 ? met(result.peakRss < 400 * 1024 * 1024) : "",
      notes: `HEARTBEAT_INTERVAL_S=${plan.heartbeatIntervalS} for this row, held ` +
        `${plan.heartbeatHoldS} s: the agents read ${num(result.heartbeats)} heartbeats in the ` +
        `hold (about ${
          num(expected)
        }, one each per interval; a window boundary can add one); ${result.closedByServer} sockets closed by the server.` +
        how,
    };
  } catch (err) {
    return notAvailable(workload, (err instanceof Error ? err.message : String(err)) + how, target);
  } finally {
    await system?.stop();
  }
}

/** "" when this process may start a child with `openFiles` descriptors, else why not. */
async function cannotRaiseOpenFiles(openFiles: number): Promise<string> {
  try {
    const out = await new Deno.Command("prlimit", {
      args: [`--nofile=${openFiles}:${openFiles}`, "--", "true"],
      stdout: "null",
      stderr: "piped",
    }).output();
    return out.success ? "" : new TextDecoder().decode(out.stderr).trim();
  } catch (err) {
    return `prlimit: ${err instanceof Error ? err.message : err}`;
  }
}

/** (4) the webhook's own answer time while one agent never reads. */
export async function slowAgent(ctx: Context, baseline: System, bridge: Maybe): Promise<Row> {
  const { plan } = ctx;
  const workload = `(4) webhook answer time at ${num(plan.rate)}/s, one agent never reads`;
  const { base, ours } = await baselineThenBridge(
    ctx,
    "slow agent",
    baseline,
    bridge,
    (s) =>
      loadConfig(plan, s, {
        mode: "slow",
        messages: plan.rate,
        durationS: plan.slowS,
        concurrency: 64,
        slowEvery: 2,
      }),
  );
  const show = (rs: LoadResult[]) => spreadText(rs, "answer");
  const growth = (rs: LoadResult[]) => mb(median(rs.map((r) => (r.rss[0] ?? NaN) - r.rssBefore)));
  const what =
    `half the messages (~8 KB each) go to one agent that never reads, for ${plan.slowS} s`;
  if (typeof bridge === "string") {
    return { ...notAvailable(workload, bridge), baseline: show(base), notes: what };
  }
  return {
    workload,
    bridge: show(ours),
    baseline: show(base),
    ratio: ratio(medianRatio(ours.map((x) => x.answer.p99), base.map((x) => x.answer.p99))),
    target: "(none in #10) other agents lose nothing",
    status: met(ours.every((x) => x.lost === 0 && x.duplicates === 0 && !x.error)),
    notes:
      `${what}; other agents: ${lossText(ours)}; server RSS growth per round ${growth(ours)} ` +
      `(baseline ${growth(base)}); the agent that never reads: ` +
      `${[...new Set(ours.map((x) => x.stalled ?? "?"))].join(", ")} ` +
      `(baseline: ${[...new Set(base.map((x) => x.stalled ?? "?"))].join(", ")}).` + errorsOf(ours),
  };
}

/**
 * (5) Redis: one bridge instance on Redis, and two sharing it (posts to A, agents on B), side by
 * side, each with throughput and latency, in the same interleaved rounds as the baseline.
 */
export async function redis(
  ctx: Context,
  baseline: System,
  bridgeAvailable: string,
): Promise<Row[]> {
  const { plan } = ctx;
  const one = "(5) one instance with REDIS_URL";
  const two = "(5b) two instances with REDIS_URL (post to A, agents on B)";
  const unavailable = (why: string) => [notAvailable(one, why), notAvailable(two, why)];
  if (bridgeAvailable) return unavailable(bridgeAvailable);
  let url = Deno.env.get("REDIS_URL") ?? "";
  const started: { stop(): Promise<void> }[] = [];
  /** redis-server's PID when the bench started it, for its CPU per message. */
  let redisPid: number | undefined;
  try {
    if (!url) {
      const server = await startRedis();
      if (!server) return unavailable("REDIS_URL unset and no redis-server on PATH");
      started.push(server);
      redisPid = server.pid;
      url = `redis://127.0.0.1:${server.port}`;
    }
    const a = await startBridge({ label: "bridge A", env: { REDIS_URL: url } });
    started.push(a);
    const b = await startBridge({ label: "bridge B", env: { REDIS_URL: url } });
    started.push(b);
    const why = await probe(a, b);
    if (why) return unavailable(`${why} (REDIS_URL not supported yet?)`);
    const cross: System = { ...b, postUrl: a.postUrl, label: "bridge A → B" };
    const systems = [baseline, a, cross];
    // The CPU of both instances and of redis-server (when started here) over each run's window.
    const others = (s: System): number[] =>
      s === baseline
        ? []
        : [s === a ? b.server.pid : a.server.pid, ...(redisPid ? [redisPid] : [])];
    const tput = new Map<System, LoadResult[]>(systems.map((s) => [s, []]));
    const lat = new Map<System, LoadResult[]>(systems.map((s) => [s, []]));
    // Half the main latency row's rate: two instances and Redis share the same two cores.
    const rate = Math.round(plan.rate / 2);
    for (let round = 1; round <= plan.rounds; round++) {
      for (const s of systems) {
        const t = await measure(
          ctx,
          s,
          `redis throughput round ${round}`,
          () =>
            runLoad(
              loadConfig(plan, s, {
                mode: "throughput",
                messages: plan.redisMessages,
                otherPids: others(s),
              }),
            ),
        );
        tput.get(s)!.push(t);
        const l = await measure(
          ctx,
          s,
          `redis latency round ${round}`,
          () =>
            runLoad(
              loadConfig(plan, s, { mode: "rate", messages: rate, durationS: plan.redisLatencyS }),
            ),
        );
        lat.get(s)!.push(l);
        if (s !== baseline) {
          ctx.delivery.add(t);
          ctx.delivery.add(l);
        }
      }
    }
    const perSecond = (s: System) => tput.get(s)!.map((r) => r.perSecond);
    const cell = (s: System) =>
      `${num(median(perSecond(s)))} msg/s; ${spreadText(lat.get(s)!, "latency")}`;
    const row = (workload: string, s: System, notes: string): Row => ({
      workload,
      bridge: cell(s),
      baseline: cell(baseline),
      ratio: ratio(medianRatio(perSecond(s), perSecond(baseline))),
      target: "",
      status: "",
      notes: `throughput ${num(plan.redisMessages)} msgs, latency ${num(rate)}/s for ` +
        `${plan.redisLatencyS} s, × ${plan.rounds} rounds; ratio of throughputs; ` +
        `${lossText([...tput.get(s)!, ...lat.get(s)!])}; ${cpuText(tput.get(s)!, redisPid)}; ` +
        `${notes}` +
        errorsOf([...tput.get(s)!, ...lat.get(s)!]),
    });
    return [
      row(one, a, "posts and agents on the same instance"),
      row(two, cross, "every message crosses Redis pub/sub to the other instance"),
    ];
  } catch (err) {
    return unavailable(err instanceof Error ? err.message : String(err));
  } finally {
    for (const s of started.reverse()) await s.stop();
  }
}

/** Server CPU per message in a Redis row's throughput runs: both bridge instances together,
 * and redis-server's own when the bench started it. */
function cpuText(results: readonly LoadResult[], redisPid: number | undefined): string {
  const per = (f: (r: LoadResult) => number) =>
    num(median(results.map((r) => (f(r) * 1000) / r.sent)));
  const bridges = per((r) => r.serverCpuMs + (r.otherCpuMs?.[0] ?? NaN));
  const redis = redisPid ? `, redis-server ${per((r) => r.otherCpuMs?.[1] ?? NaN)}` : "";
  return `CPU µs/msg: bridge A+B ${bridges}${redis}`;
}

/** The "no message lost or duplicated" target, over every bridge run above. */
export function deliveryRow(ctx: Context, bridgeAvailable: string): Row {
  const d = ctx.delivery;
  const workload = "delivery over every bridge run";
  const target = "0 lost, 0 duplicated";
  if (bridgeAvailable) return notAvailable(workload, bridgeAvailable, target);
  // `--only idle` sends no message: nothing to judge.
  if (d.runs === 0) return notAvailable(workload, "no run sent messages", target);
  return {
    workload,
    bridge: `${num(d.lost)} lost, ${num(d.duplicates)} dup of ${num(d.sent)}`,
    baseline: "",
    ratio: "",
    target,
    status: met(d.lost === 0 && d.duplicates === 0),
    notes: `${d.runs} runs; HTTP errors ${d.httpErrors}; receipt matched by data.id = MsgId.` +
      (d.errors.length > 0 ? ` Errors: ${[...new Set(d.errors)].join("; ")}.` : ""),
  };
}
