// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// Summarizes a V8 .cpuprofile (from `deno run --cpu-prof`): the functions with the most self
// time. Usage: deno run -R bench/profile_summary.ts FILE.cpuprofile [TOP]

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  ms: number;
  share: number;
}

/** Self time per function (name and file:line), largest first; shares of busy time. */
export function topSelfTime(profile: CpuProfile, top: number): SelfTime[] {
  const byNode = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
  const byName = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((nodeId, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    const frame = byNode.get(nodeId)?.callFrame;
    // Idle samples are time the process waited: shares are of the time it was busy.
    if (!frame || frame.functionName === "(idle)") return;
    const file = frame.url.replace(/^.*\/(node_modules|deno|npm|src|bench)\//, "$1/");
    const name = `${frame.functionName || "(anonymous)"} ${file}:${frame.lineNumber + 1}`;
    byName.set(name, (byName.get(name) ?? 0) + delta);
    total += delta;
  });
  return [...byName].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({
    name,
    ms: us / 1000,
    share: total > 0 ? us / total : 0,
  }));
}

if (import.meta.main) {
  const [file, top] = Deno.args;
  if (!file) {
    console.error("usage: profile_summary.ts FILE.cpuprofile [TOP]");
    Deno.exit(2);
  }
  const profile = JSON.parse(await Deno.readTextFile(file)) as CpuProfile;
  for (const row of topSelfTime(profile, Number(top ?? 20))) {
    console.log(
      `${(row.share * 100).toFixed(1).padStart(5)}%  ${
        row.ms.toFixed(0).padStart(6)
      } ms  ${row.name}`,
    );
  }
}
