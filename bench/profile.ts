// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// Profiles one bridge under the throughput workload and prints its top self time, with the
// server's CPU per message. Usage: deno run -A bench/profile.ts [--env K=V ...] [--rounds N]
// [--top N]; the .cpuprofile is kept in bench/results/profile.cpuprofile.
import { parseArgs } from "node:util";
import { runLoad } from "./load_runner.ts";
import { FULL, loadConfig } from "./plan.ts";
import { topSelfTime } from "./profile_summary.ts";
import { ROOT, startBridge } from "./systems.ts";
import { stopAll } from "./servers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    env: { type: "string", multiple: true, default: [] },
    rounds: { type: "string", default: "3" },
    top: { type: "string", default: "40" },
    "no-prof": { type: "boolean", default: false },
  },
});
const env = Object.fromEntries(values.env.map((kv) => kv.split(/=(.*)/s).slice(0, 2)));
const dir = await Deno.makeTempDir({ prefix: "bench_prof_" });
try {
  const bridge = await startBridge({ env, cpuProfDir: values["no-prof"] ? undefined : dir });
  const cpu: number[] = [];
  try {
    for (let round = 0; round < Number(values.rounds); round++) {
      const r = await runLoad(
        loadConfig(FULL, bridge, { mode: "throughput", idBase: (round + 1) * 10_000_000 }),
      );
      cpu.push((r.serverCpuMs * 1000) / r.sent);
      console.log(
        `round ${round + 1}: ${r.perSecond.toFixed(0)} msg/s, server ${
          ((r.serverCpuMs * 1000) / r.sent).toFixed(1)
        } µs CPU/msg, lost ${r.lost}, dup ${r.duplicated}`,
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
