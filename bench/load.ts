// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// The load generator: one run of one workload against one server, as its own process so its
// CPU is not the server's. Usage: deno run -A bench/load.ts '<LoadConfig as JSON>'.
// Prints one JSON line (LoadResult) on stdout. Every loop is bounded in count and in time.
import {
  type AgentPool,
  connectAgents,
  connectStalledAgent,
  drainStalledAgent,
  Receipts,
} from "./agents.ts";
import { type ClientKind, createPoster, type Poster, type PreparedPost } from "./http_client.ts";
import { agentFor, followerFor, msgId, textXml } from "./messages.ts";
import { readCpuMs, readRss } from "./proc.ts";
import { type Spread, spread } from "./stats.ts";

export interface LoadConfig {
  mode: "throughput" | "rate" | "slow" | "idle";
  /** Full URL of the XML webhook. */
  postUrl: string;
  /** Agent socket URL up to the id, e.g. `ws://127.0.0.1:P/…/msg?userid=`. */
  wsBase: string;
  /** "json" for the bridge's envelopes, "raw" for the baseline's forwarded XML. */
  format: "json" | "raw";
  agents: number;
  /** throughput: messages posted; rate and slow: messages per second. */
  messages: number;
  /** throughput: requests in flight; rate and slow: connections in the pool. */
  concurrency: number;
  durationS: number;
  /** First MsgId number; every run against one server needs its own range. */
  idBase: number;
  client: ClientKind;
  /** Posted and awaited before measuring, so the server's JIT is warm. */
  warmup: number;
  /** How long to wait for messages still in flight after the last POST answered. */
  drainS: number;
  /** The server's PID, for its CPU time and RSS. */
  serverPid: number;
  /** More processes the workload runs on (another bridge instance, redis-server): their CPU
   * time over the same window goes to `otherCpuMs`, in this order. */
  otherPids?: number[];
  /** idle: the agent counts at which RSS is read; the last is held for `durationS`. */
  steps: number[];
  /** slow: every n-th message goes to the agent that never reads. */
  slowEvery: number;
  /** Followers per agent, message i from `followerFor(i, …)`; unset: ten, by MsgId. */
  followersPerAgent?: number;
}

export interface LoadResult {
  mode: LoadConfig["mode"];
  sent: number;
  httpErrors: number;
  received: number;
  lost: number;
  duplicates: number;
  others: number;
  heartbeats: number;
  elapsedMs: number;
  perSecond: number;
  /** POST sent to WebSocket frame received, ms. */
  latency: Spread;
  /** POST sent to HTTP response read, ms. */
  answer: Spread;
  /** Largest delay of a POST behind its schedule (rate and slow), ms. */
  maxLagMs: number;
  clientCpuMs: number;
  serverCpuMs: number;
  /** CPU time of each of `otherPids` over the measured window, ms. */
  otherCpuMs: number[];
  rssBefore: number;
  /** idle: RSS at each step; others: RSS at the end. */
  rss: number[];
  peakRss: number;
  closedByServer: number;
  /** slow: how the server treated the agent that never reads ("closed 4001 …", "open"). */
  stalled?: string;
  error?: string;
}

const LONG_TEXT = "The agent that never reads gets long messages so its buffers fill fast. ".repeat(
  110,
); // about 8 KB

async function main(): Promise<void> {
  const config = JSON.parse(Deno.args[0] ?? "{}") as LoadConfig;
  const result = emptyResult(config);
  const hardStop = setTimeout(() => {
    console.log(JSON.stringify({ ...result, error: "load generator timed out" }));
    Deno.exit(2);
  }, (config.durationS + config.drainS + 120) * 1000);
  try {
    if (config.mode === "idle") await runIdle(config, result);
    else await runMessages(config, result);
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  }
  clearTimeout(hardStop);
  console.log(JSON.stringify(result));
  Deno.exit(0); // sockets the server never closed must not keep this process alive
}

function emptyResult(config: LoadConfig): LoadResult {
  const none = { p50: NaN, p99: NaN, max: NaN };
  return {
    mode: config.mode,
    sent: 0,
    httpErrors: 0,
    received: 0,
    lost: 0,
    duplicates: 0,
    others: 0,
    heartbeats: 0,
    elapsedMs: 0,
    perSecond: 0,
    latency: none,
    answer: none,
    maxLagMs: 0,
    clientCpuMs: 0,
    serverCpuMs: 0,
    otherCpuMs: [],
    rssBefore: readRss(config.serverPid),
    rss: [],
    peakRss: 0,
    closedByServer: 0,
  };
}

/** throughput, rate and slow: agents connected, messages posted, every receipt checked. */
async function runMessages(config: LoadConfig, result: LoadResult): Promise<void> {
  const agentIds = Array.from({ length: config.agents }, (_, i) => `agent${i}`);
  const sentAt = new Map<string, number>();
  const receipts = new Receipts(config.format, sentAt);
  const agents = await connectAgents(config.wsBase, agentIds, receipts);
  const stalled = config.mode === "slow"
    ? await connectStalledAgent(config.wsBase + "agent_stalled")
    : null;
  const poster = createPoster(config.client, config.postUrl, config.concurrency);
  try {
    await warmUp(config, poster, receipts, sentAt);
    const total = config.mode === "throughput"
      ? config.messages
      : Math.round(config.messages * config.durationS);
    const bodies: PreparedPost[] = [];
    const ids: string[] = []; // "" for a message to the stalled agent: it is not tracked
    for (let i = 0; i < total; i++) {
      const id = msgId(config.idBase + config.warmup + i);
      const toStalled = stalled !== null && i % config.slowEvery === 0;
      bodies.push(poster.prepare(
        textXml(
          toStalled ? "agent_stalled" : agentFor(i, config.agents),
          id,
          toStalled ? LONG_TEXT : `hello ${i}`,
          config.followersPerAgent && !toStalled
            ? followerFor(i, config.agents, config.followersPerAgent)
            : undefined,
        ),
      ));
      ids.push(toStalled ? "" : id);
    }
    const answers: number[] = [];
    const warmReceived = receipts.receivedAt.size;
    const serverCpu0 = readCpuMs(config.serverPid);
    const otherCpu0 = (config.otherPids ?? []).map(readCpuMs);
    const clientCpu0 = readCpuMs(Deno.pid);
    const t0 = performance.now();
    const post = async (i: number) => {
      const body = bodies[i]!;
      const id = ids[i]!;
      const start = performance.now();
      if (id) sentAt.set(id, start);
      try {
        const status = await poster.post(body);
        if (status < 200 || status >= 300) result.httpErrors++;
      } catch {
        result.httpErrors++;
      }
      answers.push(performance.now() - start);
      result.sent++;
    };
    // Posting stops at the cap (a rate run gets a second of slack for a lagging generator);
    // what is still in flight then gets `drainS` to arrive.
    const slack = config.mode === "throughput" ? 0 : 1;
    const postUntil = t0 + (config.durationS + slack) * 1000;
    const drainMs = config.drainS * 1000;
    if (config.mode === "throughput") {
      await closedLoop(total, config.concurrency, postUntil, post);
    } else {
      result.maxLagMs = await openLoop(total, config.messages, postUntil, drainMs, post);
    }
    const postedTracked = ids.filter((id) => id !== "" && sentAt.has(id)).length;
    // The goal counts the warm-up messages too: they are in `receivedAt` already.
    await receipts.waitFor(warmReceived + postedTracked, drainMs);
    let last = t0;
    const latencies: number[] = [];
    for (const [id, at] of receipts.receivedAt) {
      const sent = sentAt.get(id);
      if (sent === undefined || sent < t0) continue; // a warm-up message
      latencies.push(at - sent);
      if (at > last) last = at;
    }
    result.serverCpuMs = readCpuMs(config.serverPid) - serverCpu0;
    result.otherCpuMs = (config.otherPids ?? []).map((pid, i) => readCpuMs(pid) - otherCpu0[i]!);
    result.clientCpuMs = readCpuMs(Deno.pid) - clientCpu0;
    result.received = latencies.length;
    result.lost = postedTracked - latencies.length;
    result.duplicates = receipts.duplicates;
    result.others = receipts.others;
    result.heartbeats = receipts.heartbeats;
    // Throughput counts until the last message arrived, not until the last POST answered.
    result.elapsedMs = (latencies.length > 0 ? last : performance.now()) - t0;
    result.perSecond = (result.sent * 1000) / result.elapsedMs;
    result.latency = spread(latencies);
    result.answer = spread(answers);
    result.rss = [readRss(config.serverPid)];
    result.closedByServer = agents.closedByServer();
    if (stalled) result.stalled = await drainStalledAgent(stalled, 1000);
  } finally {
    poster.close();
    agents.close();
    stalled?.close();
  }
}

async function warmUp(
  config: LoadConfig,
  poster: Poster,
  receipts: Receipts,
  sentAt: Map<string, number>,
): Promise<void> {
  if (config.warmup <= 0) return;
  const ids: string[] = [];
  await closedLoop(config.warmup, config.concurrency, performance.now() + 30_000, async (i) => {
    const id = msgId(config.idBase + i);
    ids.push(id);
    sentAt.set(id, 0);
    await poster.post(textXml(agentFor(i, config.agents), id, `warm ${i}`)).catch(() => 0);
  });
  await receipts.waitFor(ids.length, 10_000);
}

/** Posts `total` messages with `concurrency` in flight, stopping at `deadline`. */
async function closedLoop(
  total: number,
  concurrency: number,
  deadline: number,
  post: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < total && performance.now() < deadline) await post(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/**
 * Posts `total` messages at `rate` per second on a fixed schedule, whatever the answers take
 * (open loop), until `deadline`; waits up to `drainMs` for the answers; resolves to the
 * largest lag of a POST behind its schedule, in ms.
 */
async function openLoop(
  total: number,
  rate: number,
  deadline: number,
  drainMs: number,
  post: (i: number) => Promise<void>,
): Promise<number> {
  const inFlight: Promise<void>[] = [];
  const t0 = performance.now();
  let next = 0;
  let maxLag = 0;
  while (next < total && performance.now() < deadline) {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - t0) * rate) / 1000) + 1);
    if (due > next) maxLag = Math.max(maxLag, now - t0 - (next * 1000) / rate);
    for (; next < due; next++) inFlight.push(post(next));
    // A timer tick (about 1 ms) between bursts: busy-waiting would take the server's CPU.
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.race([
    Promise.all(inFlight),
    new Promise((resolve) => setTimeout(resolve, drainMs)),
  ]);
  return maxLag;
}

/** idle: agents connect and do nothing; the server's RSS is read at each step. */
async function runIdle(config: LoadConfig, result: LoadResult): Promise<void> {
  const receipts = new Receipts(config.format, new Set());
  const pools: AgentPool[] = [];
  try {
    // A few agents first, so that code paths compiled on first use are not counted per socket.
    pools.push(await connectAgents(config.wsBase, ["warm0", "warm1", "warm2"], receipts));
    await settle();
    result.rssBefore = readRss(config.serverPid);
    let connected = 0;
    for (const step of config.steps) {
      const ids = Array.from({ length: step - connected }, (_, i) => `agent${connected + i}`);
      pools.push(await connectAgents(config.wsBase, ids, receipts, { timeoutMs: 60_000 }));
      connected = step;
      await settle();
      result.rss.push(readRss(config.serverPid));
    }
    // Hold the last step: heartbeats flow, and the peak is what a real server would need.
    const until = performance.now() + config.durationS * 1000;
    const heartbeatsBefore = receipts.heartbeats;
    let peak = 0;
    while (performance.now() < until) {
      peak = Math.max(peak, readRss(config.serverPid));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    result.peakRss = Math.max(peak, readRss(config.serverPid));
    result.heartbeats = receipts.heartbeats - heartbeatsBefore; // during the hold only
    result.others = receipts.others;
    result.closedByServer = pools.reduce((n, p) => n + p.closedByServer(), 0);
  } finally {
    for (const pool of pools) pool.close();
  }
}

/** Lets the server finish what connecting started (timers, buffers) before RSS is read. */
function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 500));
}

if (import.meta.main) await main();
