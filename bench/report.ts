// The bench's output: one markdown table row per workload, with a met/missed column for the
// rows that have a target, and a description of the machine the numbers came from.

export interface Row {
  workload: string;
  bridge: string;
  baseline: string;
  /** bridge / baseline, the median of per-round ratios. */
  ratio: string;
  target: string;
  /** "met", "missed", "" (no target), or "n/a" when the row could not be measured. */
  status: string;
  notes: string;
}

export function renderTable(rows: readonly Row[]): string {
  const head = "| workload | bridge | baseline | ratio | target | met? | notes |\n" +
    "| --- | ---: | ---: | ---: | --- | --- | --- |\n";
  const cell = (s: string) => s.replaceAll("|", "\\|").replaceAll("\n", " ");
  return head +
    rows.map((r) =>
      `| ${
        [r.workload, r.bridge, r.baseline, r.ratio, r.target, r.status, r.notes].map(cell).join(
          " | ",
        )
      } |`
    ).join("\n") + "\n";
}

export function met(ok: boolean): string {
  return ok ? "met" : "**missed**";
}

export function num(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return "—";
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function ms(n: number): string {
  return Number.isFinite(n) ? `${n.toFixed(2)} ms` : "—";
}

export function ratio(n: number): string {
  return Number.isFinite(n) ? `${n.toFixed(2)}×` : "—";
}

export function kb(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1024).toFixed(1)} KB` : "—";
}

export function mb(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1024 / 1024).toFixed(0)} MB` : "—";
}

/** nproc, CPU model, memory, Deno and Node versions, load average at start. */
export async function describeMachine(): Promise<string> {
  const read = (path: string) => {
    try {
      return Deno.readTextFileSync(path);
    } catch {
      return "";
    }
  };
  const cpu = read("/proc/cpuinfo").match(/^model name\s*:\s*(.+)$/m)?.[1] ?? "unknown CPU";
  const memKb = Number(read("/proc/meminfo").match(/^MemTotal:\s+(\d+)/m)?.[1] ?? NaN);
  const node = await new Deno.Command("node", { args: ["--version"], stdout: "piped" }).output()
    .then((o) => new TextDecoder().decode(o.stdout).trim(), () => "not installed");
  const load = read("/proc/loadavg").split(" ").slice(0, 3).join(" ");
  return `${navigator.hardwareConcurrency} CPUs (nproc), ${cpu}, ` +
    `${(memKb / 1024 / 1024).toFixed(1)} GiB memory, deno ${Deno.version.deno}, ` +
    `node ${node}, load average at start ${load}`;
}
