// How cost grows (issue #17): (6) 1,000 agents and 100,000 followers, throughput and latency
// against the baseline with as many agents, in interleaved rounds; (7) a store holding
// 1,000,000 contacts: start time, RSS after start and a webhook's answer time, beside a bridge
// started on an empty store in the same rounds.
import type { LoadResult } from "./load.ts";
import { runLoad } from "./load_runner.ts";
import { loadConfig } from "./plan.ts";
import { mb, ms, num, ratio, type Row } from "./report.ts";
import { readRss } from "./proc.ts";
import { seedStore } from "./seed_store.ts";
import { median } from "./stats.ts";
import { startBridge, type System } from "./systems.ts";
import type { Context } from "./workloads.ts";

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

const p = (rs: LoadResult[], which: "latency" | "answer", at: "p50" | "p99") =>
  median(rs.map((r) => r[which][at]));
const lossText = (rs: LoadResult[]) =>
  `lost ${rs.reduce((n, r) => n + r.lost, 0)}, dup ${rs.reduce((n, r) => n + r.duplicates, 0)}`;
const errorsOf = (rs: LoadResult[]) => {
  const errors = [...new Set(rs.map((r) => r.error).filter((e) => e))];
  return errors.length > 0 ? ` Errors: ${errors.join("; ")}.` : "";
};

async function run(ctx: Context, what: string, fn: () => Promise<LoadResult>) {
  ctx.log(what);
  try {
    return await fn();
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) } as LoadResult;
  }
}

/** (6) 1,000 agents, 100,000 followers (seeded), throughput and p99 against the baseline. */
export async function manyAgents(
  ctx: Context,
  baseline: System,
  bridgeAvailable: string,
): Promise<Row[]> {
  const { plan } = ctx;
  const agents = plan.scaleAgents;
  const followers = agents * plan.scaleFollowersPerAgent;
  const name = `${num(agents)} agents, ${num(followers)} followers`;
  const tputName = `(6) throughput, ${name}`;
  const latName = `(6l) latency at ${num(plan.rate)}/s, ${name}`;
  if (bridgeAvailable) return [notAvailable(tputName, bridgeAvailable), notAvailable(latName, "")];
  const dataDir = await Deno.makeTempDir({ prefix: "bench_scale_" });
  let bridge: System | null = null;
  try {
    seedStore(dataDir, agents, plan.scaleFollowersPerAgent);
    bridge = await startBridge({ label: "bridge, 100k followers", dataDir });
    const common = { agents, followersPerAgent: plan.scaleFollowersPerAgent };
    const tput = new Map<System, LoadResult[]>([[baseline, []], [bridge, []]]);
    const lat = new Map<System, LoadResult[]>([[baseline, []], [bridge, []]]);
    const systems: System[] = [baseline, bridge];
    for (let round = 1; round <= plan.rounds; round++) {
      for (const s of systems) {
        const t = await run(
          ctx,
          `scale throughput round ${round}: ${s.label}`,
          () => runLoad(loadConfig(plan, s, { mode: "throughput", ...common })),
        );
        tput.get(s)!.push(t);
        const l = await run(
          ctx,
          `scale latency round ${round}: ${s.label}`,
          () =>
            runLoad(loadConfig(plan, s, {
              mode: "rate",
              messages: plan.rate,
              durationS: plan.scaleLatencyS,
              concurrency: 64,
              ...common,
            })),
        );
        lat.get(s)!.push(l);
        if (s === bridge) {
          ctx.delivery.add(t);
          ctx.delivery.add(l);
        }
      }
    }
    const ratios = (m: Map<System, LoadResult[]>, f: (r: LoadResult) => number) =>
      median(m.get(bridge!)!.map((r, i) => f(r) / f(m.get(baseline)![i]!)));
    const rate = (s: System) => median(tput.get(s)!.map((r) => r.perSecond));
    const cpu = (s: System) =>
      median(tput.get(s)!.map((r) => (r.serverCpuMs * 1000) / Math.max(1, r.sent)));
    const spread = (s: System) =>
      `p50 ${ms(p(lat.get(s)!, "latency", "p50"))}, p99 ${ms(p(lat.get(s)!, "latency", "p99"))}`;
    const ours = [...tput.get(bridge)!, ...lat.get(bridge)!];
    return [
      {
        workload: tputName,
        bridge: `${num(rate(bridge))} msg/s`,
        baseline: `${num(rate(baseline))} msg/s`,
        ratio: ratio(ratios(tput, (r) => r.perSecond)),
        target: "",
        status: "",
        notes: `${num(plan.throughputMessages)} msgs × ${plan.rounds} rounds, ${plan.inFlight} ` +
          `in flight, message i from follower i / ${num(agents)} of agent i % ${num(agents)}; ` +
          `the followers are in the store before start (SQLite); server ${num(cpu(bridge))} µs ` +
          `CPU/msg (baseline ${num(cpu(baseline))}); ${lossText(tput.get(bridge)!)}.` +
          errorsOf(ours),
      },
      {
        workload: latName,
        bridge: spread(bridge),
        baseline: spread(baseline),
        ratio: ratio(ratios(lat, (r) => r.latency.p99)),
        target: "",
        status: "",
        notes: `${plan.scaleLatencyS} s a round, ratio of p99s; ${lossText(lat.get(bridge)!)}.`,
      },
    ];
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return [notAvailable(tputName, why), notAvailable(latName, why)];
  } finally {
    await bridge?.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

/** (7) a store of 1,000,000 contacts against an empty one: start, RSS, answer time. */
export async function bigStore(ctx: Context, bridgeAvailable: string): Promise<Row> {
  const { plan } = ctx;
  const agents = plan.scaleAgents;
  const contacts = agents * plan.bigStoreFollowersPerAgent;
  const workload = `(7) a store holding ${num(contacts)} contacts: start, RSS, webhook answer`;
  if (bridgeAvailable) return notAvailable(workload, bridgeAvailable);
  const seeded = await Deno.makeTempDir({ prefix: "bench_big_" });
  try {
    ctx.log(`seeding ${num(contacts)} contacts`);
    const seedMs = seedStore(seeded, agents, plan.bigStoreFollowersPerAgent);
    const sizeOf = async () => (await Deno.stat(`${seeded}/bridge.sqlite`)).size;
    const fileBytes = await sizeOf();
    type Sample = { startMs: number; rss: number; answer: LoadResult };
    const samples = { big: [] as Sample[], empty: [] as Sample[] };
    for (let round = 1; round <= plan.rounds; round++) {
      for (const which of ["empty", "big"] as const) {
        const bridge = await startBridge({
          label: which === "big" ? `bridge, ${num(contacts)} contacts` : "bridge, empty store",
          dataDir: which === "big" ? seeded : undefined,
        });
        try {
          const rss = readRss(bridge.server.pid);
          const answer = await run(
            ctx,
            `big store round ${round}: ${bridge.label}`,
            () =>
              runLoad(loadConfig(plan, bridge, {
                mode: "rate",
                messages: plan.bigStoreRate,
                durationS: plan.bigStoreS,
                concurrency: 64,
                agents,
                followersPerAgent: plan.bigStoreFollowersPerAgent,
              })),
          );
          ctx.delivery.add(answer);
          samples[which].push({ startMs: bridge.startMs ?? NaN, rss, answer });
        } finally {
          await bridge.stop();
        }
      }
    }
    const cell = (s: Sample[]) =>
      `start ${num(median(s.map((x) => x.startMs)))} ms, RSS ${mb(median(s.map((x) => x.rss)))}, ` +
      `answer p50 ${ms(p(s.map((x) => x.answer), "answer", "p50"))}, p99 ${
        ms(p(s.map((x) => x.answer), "answer", "p99"))
      }`;
    const answers = samples.big.map((x) => x.answer);
    return {
      workload,
      bridge: cell(samples.big),
      baseline: "",
      ratio: ratio(
        median(samples.big.map((x, i) => x.rss / (samples.empty[i]?.rss ?? NaN))),
      ),
      target: "",
      status: "",
      notes: `the same bridge on an empty store, same rounds: ${cell(samples.empty)}; ratio = ` +
        `RSS after start ÷ the empty store's. ${num(agents)} agents with ` +
        `${num(plan.bigStoreFollowersPerAgent)} contacts each, written to the SQLite file ` +
        `before start (${(fileBytes / 1024 / 1024).toFixed(0)} MB, seeded in ` +
        `${num(seedMs / 1000, 1)} s); start = spawn to listening; answer time at ` +
        `${num(plan.bigStoreRate)}/s for ${plan.bigStoreS} s to those contacts; ` +
        `${lossText(answers)}; medians of ${plan.rounds} rounds.` + errorsOf(answers),
    };
  } catch (err) {
    return notAvailable(workload, err instanceof Error ? err.message : String(err));
  } finally {
    await Deno.remove(seeded, { recursive: true }).catch(() => {});
  }
}
