// What the bench reads about a process from /proc (Linux only): resident memory and CPU time.
// The bench measures the server process itself, so these read another process by its PID.

/** VmRSS of `pid` in bytes, or NaN when the process is gone. */
export function readRss(pid: number): number {
  return readStatusKb(pid, "VmRSS") * 1024;
}

/** VmHWM (peak resident memory) of `pid` in bytes, or NaN when the process is gone. */
export function readPeakRss(pid: number): number {
  return readStatusKb(pid, "VmHWM") * 1024;
}

function readStatusKb(pid: number, field: string): number {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return NaN;
  }
  const match = text.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  return match ? Number(match[1]) : NaN;
}

// Linux reports utime and stime in clock ticks; USER_HZ is 100 on every mainstream kernel.
const TICKS_PER_S = 100;

/** User plus system CPU time of `pid` in milliseconds, or NaN when the process is gone. */
export function readCpuMs(pid: number): number {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return NaN;
  }
  // The command name (field 2) may hold spaces; fields are counted after its closing paren.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1000) / TICKS_PER_S;
}

/** The soft and hard limits on open files of `pid` ("self" for this process), NaN if unknown. */
export function readOpenFilesLimit(pid: number | "self" = "self"): { soft: number; hard: number } {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/limits`);
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(text);
    const read = (v: string | undefined) => (v === "unlimited" ? Infinity : Number(v));
    if (m) return { soft: read(m[1]), hard: read(m[2]) };
  } catch { /* not Linux */ }
  return { soft: NaN, hard: NaN };
}
