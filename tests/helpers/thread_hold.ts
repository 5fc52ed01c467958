// One thread of another process held in a system call while the rest of it runs, with strace: a
// test can then show, without a clock, that what that thread does (the SQLite worker's copy)
// keeps no other thread waiting. ptrace stops a single thread; a signal would stop them all.

/** Whether strace is installed and may trace here (a container may forbid ptrace). */
export const canTrace: boolean = await new Deno.Command("strace", {
  args: ["-o", "/dev/null", "true"],
}).output().then((out) => out.success, () => false);

/** Under CI a missing strace (or ptrace refused) is a failure, not a skip. */
export const mustTrace: boolean = Deno.env.get("CI") === "true";

/** The ids of `pid`'s threads whose name matches `name` (Deno names a Worker's `worker-N`).
 * Read with `ps`: /proc of another process needs --allow-all. */
export async function threadsNamed(pid: number, name: RegExp): Promise<number[]> {
  const out = await new Deno.Command("ps", {
    args: ["-L", "-o", "tid=,comm=", "-p", String(pid)],
    stdout: "piped",
  }).output();
  if (!out.success) throw new Error(`Cannot list the threads of process ${pid}`);
  const ids: number[] = [];
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const found = /^\s*(\d+)\s+(.+?)\s*$/.exec(line);
    if (found && name.test(found[2]!)) ids.push(Number(found[1]));
  }
  return ids;
}

/** A thread held by holdThread(). */
export interface HeldThread {
  /** Resolves once the thread has entered a call on the path, where it is held; rejects if
   * strace ends first. */
  entered: Promise<void>;
  /** Lets the thread run again (strace detaches) and waits for strace to end. */
  release(): Promise<void>;
}

/**
 * Holds thread `tid` at the first system call it makes on `path` (far longer than a test runs)
 * until release(); its other calls, and every other thread, go on. Resolves once strace has
 * attached.
 */
export function holdThread(tid: number, path: string): Promise<HeldThread> {
  return hold(tid, ["-P", path, "-e", "inject=all:delay_enter=3600s"], `"${path}"`, path);
}

/**
 * Holds thread `tid` once it is idle: at its next wait for work (epoll_wait), so it holds no
 * lock of the work it did (a thread held in SQLite's lock calls keeps the process's own SQLite
 * mutex, and every other connection waits for it). Resolves once strace has attached.
 */
export function holdThreadIdle(tid: number): Promise<HeldThread> {
  const call = "epoll_wait";
  // `(`: the call entered, not the one it was in when strace attached (restart_syscall).
  const args = ["-e", `trace=${call}`, "-e", `inject=${call}:delay_enter=3600s`];
  return hold(tid, args, `${call}(`, call);
}

async function hold(
  tid: number,
  filter: string[],
  entry: string,
  what: string,
): Promise<HeldThread> {
  const strace = new Deno.Command("strace", {
    args: ["-p", String(tid), ...filter],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  // What it traces (only the calls held) goes to stderr, each call as it is entered.
  let said = "";
  const heard = new Set<() => void>();
  const reading = (async () => {
    for await (const chunk of strace.stderr.pipeThrough(new TextDecoderStream())) {
      said += chunk;
      for (const hear of heard) hear();
    }
  })();
  const when = (text: string, what: string) =>
    new Promise<void>((resolve, reject) => {
      const hear = () => {
        if (!said.includes(text)) return;
        heard.delete(hear);
        resolve();
      };
      heard.add(hear);
      hear();
      reading.then(() => {
        heard.delete(hear);
        if (!said.includes(text)) reject(new Error(`strace ended before ${what}: ${said}`));
      });
    });
  await when(`Process ${tid} attached`, `it could hold thread ${tid}`);
  const entered = when(entry, `thread ${tid} used ${what}`);
  // Rejected at release when it never came: that is the caller's to see, not a stray rejection.
  entered.catch(() => {});
  return {
    entered,
    async release() {
      try {
        // SIGTERM: strace detaches, which lets the delayed call go on at once.
        strace.kill("SIGTERM");
      } catch { /* ended already (the process exited) */ }
      await strace.status;
      await reading;
    },
  };
}
