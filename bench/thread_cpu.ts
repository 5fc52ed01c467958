// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// The bridge's CPU per message by thread, under the throughput workload: the main thread (the
// one that answers WeChat), the SQLite store's worker, V8's helpers. /proc/PID/task/*/stat of
// the server, after one warm-up round, over the next ones; `--mode rate` measures the latency
// row's load (2,000/s for 8 s a round) instead.
// Usage: deno run -A bench/thread_cpu.ts [--env K=V ...] [--rounds N] [--mode rate]
import { parseArgs } from "node:util";
import { runLoad } from "./load_runner.ts";
import { fullRound } from "./plan.ts";
import { startBridge } from "./systems.ts";
import { stopAll } from "./servers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    env: { type: "string", multiple: true, default: [] },
    rounds: { type: "string", default: "2" },
    mode: { type: "string", default: "throughput" },
  },
});
const env = Object.fromEntries(values.env.map((kv) => kv.split(/=(.*)/s).slice(0, 2)));
/** Clock ticks (user + system, 100 a second) per thread name; the main thread is "main". */
function ticksByThread(pid: number): Map<string, number> {
  const ticks = new Map<string, number>();
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const stat = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/stat`);
    const name = task.name === String(pid)
      ? "main"
      : stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")).replace(/[0-9]+$/, "#");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks.set(name, (ticks.get(name) ?? 0) + Number(fields[11]) + Number(fields[12]));
  }
  return ticks;
}

const bridge = await startBridge({ env });
try {
  const pid = bridge.server.pid;
  const load = (idBase: number) => runLoad(fullRound(bridge, values.mode, idBase));
  await load(5_000_000);
  const before = ticksByThread(pid);
  let sent = 0;
  for (let round = 0; round < Number(values.rounds); round++) {
    sent += (await load((round + 1) * 10_000_000)).sent;
  }
  const parts: string[] = [];
  let total = 0;
  for (const [name, ticks] of ticksByThread(pid)) {
    const us = ((ticks - (before.get(name) ?? 0)) * 10_000) / sent;
    total += us;
    if (us >= 0.5) parts.push(`${name} ${us.toFixed(1)}`);
  }
  console.log(
    `${values.env.join(" ") || "default"}: ${total.toFixed(1)} µs CPU/msg; ${parts.join(", ")}`,
  );
} finally {
  await bridge.stop();
  await stopAll();
}
