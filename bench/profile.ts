// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// Profiles one bridge under the throughput workload and prints its top self time, with the
// server's CPU per message. Usage: deno run -A bench/profile.ts [--env K=V ...] [--rounds N]
// [--top N]; the .cpuprofile is kept in bench/results/profile.cpuprofile.
import { parseArgs } from "node:util";
import { runLoad } from "./load_runner.ts";
import { fullRound } from "./plan.ts";
import { topSelfTime } from "./profile_summary.ts";
import { ROOT, startBaseline, startBridge } from "./systems.ts";
import { stopAll } from "./servers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    env: { type: "string", multiple: true, default: [] },
    rounds: { type: "string", default: "3" },
    top: { type: "string", default: "40" },
    "no-prof": { type: "boolean", default: false },
    // "rate": the latency row's load (2,000/s for 8 s) instead of throughput.
    mode: { type: "string", default: "throughput" },
    // The bare baseline instead of the bridge (no profile): the machine's own noise.
    baseline: { type: "boolean", default: false },
  },
});
const env = Object.fromEntries(values.env.map((kv) => kv.split(/=(.*)/s).slice(0, 2)));
const dir = await Deno.makeTempDir({ prefix: "bench_prof_" });
try {
  if (values.baseline) values["no-prof"] = true;
  const bridge = values.baseline
    ? await startBaseline()
    : await startBridge({ env, cpuProfDir: values["no-prof"] ? undefined : dir });
  const cpu: number[] = [];
  try {
    for (let round = 0; round < Number(values.rounds); round++) {
      const idBase = (round + 1) * 10_000_000;
      const r = await runLoad(fullRound(bridge, values.mode, idBase));
      cpu.push((r.serverCpuMs * 1000) / r.sent);
      console.log(
        `round ${round + 1}: ${r.perSecond.toFixed(0)} msg/s, server ${
          ((r.serverCpuMs * 1000) / r.sent).toFixed(1)
        } µs CPU/msg, p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms, ` +
          `lost ${r.lost}`,
      );
    }
  } finally {
    await bridge.stop();
  }
  if (!values["no-prof"]) {
    // Workers (the SQLite checkpointer) write profiles of their own: the main thread's is largest.
    const files = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".cpuprofile"))
      .map((e) => `${dir}/${e.name}`).sort((a, b) => Deno.statSync(b).size - Deno.statSync(a).size);
    const path = `${ROOT}bench/results/profile.cpuprofile`;
    await Deno.copyFile(files[0]!, path);
    for (const t of topSelfTime(JSON.parse(await Deno.readTextFile(path)), Number(values.top))) {
      console.log(`${(t.share * 100).toFixed(1).padStart(5)}%  ${t.name}`);
    }
  }
} finally {
  await Deno.remove(dir, { recursive: true });
  await stopAll();
}
