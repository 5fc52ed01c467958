// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// Row (4) alone, to compare commits with many samples: a fresh bridge, row (4)'s load (half the
// messages, ~8 KB each, to one agent that never reads) for --rounds rounds, each round's webhook
// answer time printed as p50/p99/max ms. --warm runs the core rows' throughput and latency load
// first, as the full bench does before row (4). Usage: deno run -A bench/slow_agent.ts [label]
// [--rounds N] [--warm] [--env K=V ...]; run it in checkouts of two commits in turn.
import { parseArgs } from "node:util";
import { runLoad } from "./load_runner.ts";
import { FULL, loadConfig } from "./plan.ts";
import { startBridge } from "./systems.ts";
import { stopAll } from "./servers.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    env: { type: "string", multiple: true, default: [] },
    rounds: { type: "string", default: "3" },
    warm: { type: "boolean", default: false },
  },
});
const env = Object.fromEntries(values.env.map((kv) => kv.split(/=(.*)/s).slice(0, 2)));
const bridge = await startBridge({ env });
try {
  if (values.warm) {
    for (let i = 0; i < FULL.rounds; i++) {
      await runLoad(loadConfig(FULL, bridge, { mode: "throughput" }));
    }
    await runLoad(
      loadConfig(FULL, bridge, {
        mode: "rate",
        messages: FULL.rate,
        durationS: FULL.latencyS,
        concurrency: 64,
      }),
    );
  }
  const rounds: string[] = [];
  for (let r = 0; r < Number(values.rounds); r++) {
    const res = await runLoad(
      loadConfig(FULL, bridge, {
        mode: "slow",
        messages: FULL.rate,
        durationS: FULL.slowS,
        concurrency: 64,
        slowEvery: 2,
      }),
    );
    const { p50, p99, max } = res.answer;
    rounds.push(`${p50.toFixed(2)}/${p99.toFixed(2)}/${max.toFixed(2)} lost ${res.lost}`);
  }
  console.log(`${positionals[0] ?? "bridge"}: ${rounds.join("  ")}`);
} finally {
  await bridge.stop();
  await stopAll();
}
