// Starts main.ts as its own process, as an operator would (optionally under `ulimit -n`), for
// tests that need what only a process shows: its exit code, its descriptor limit, its RSS.

/** A bridge process. */
export interface SpawnedBridge {
  child: Deno.ChildProcess;
  pid: number;
  port: number;
  base: string;
  wsBase: string;
  /** Everything it printed, once it has exited. */
  output: Promise<{ stdout: string; stderr: string }>;
  /** Resolves once it has printed a line matching `pattern` (either stream); rejects if it
   * exits first. */
  printed(pattern: RegExp): Promise<void>;
  status: Promise<Deno.CommandStatus>;
  /** Its resident set size now, in bytes (read with `ps`: /proc of another process needs -A). */
  rss(): Promise<number>;
  /** SIGTERM, then the exit status. */
  stop(): Promise<Deno.CommandStatus>;
}

/** A port nothing listens on right now. */
export function freePort(): number {
  const listener = Deno.listen({ port: 0, hostname: "127.0.0.1" });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The permission flags of `deno task start` (deno.json), so the process runs as it ships. */
function startFlags(): string[] {
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  const start = config.tasks["start"] ?? "";
  const flags = /^deno run (.*) main\.ts$/.exec(start.trim())?.[1];
  if (flags === undefined) throw new Error(`Cannot read the start task: ${start}`);
  return flags.split(/\s+/);
}

/**
 * Spawns main.ts with `deno task start`'s permissions and `env` on a free port; `openFiles`
 * sets `ulimit -n`; `launcher` is a command that execs the rest (`nice -n 15`, `setpriv …`).
 */
export function spawnBridge(
  env: Record<string, string>,
  options: { openFiles?: number; denoFlags?: string[]; launcher?: string[] } = {},
): SpawnedBridge {
  const port = freePort();
  const deno = [
    ...(options.launcher ?? []),
    Deno.execPath(),
    "run",
    ...startFlags(),
    ...(options.denoFlags ?? []),
    "main.ts",
  ];
  // `exec` keeps the pid: the signal and /proc reach deno, not the shell (a launcher execs too).
  const args = options.openFiles === undefined ? { cmd: deno[0]!, args: deno.slice(1) } : {
    cmd: "bash",
    args: ["-c", `ulimit -n ${options.openFiles} && exec "$@"`, "bash", ...deno],
  };
  const child = new Deno.Command(args.cmd, {
    args: args.args,
    cwd: new URL("../..", import.meta.url).pathname,
    env: {
      PORT: String(port),
      HOSTNAME: "127.0.0.1",
      STORE: "memory",
      HEARTBEAT_INTERVAL_S: "30",
      WECHAT_TOKEN: "",
      WECHAT_APPID: "",
      WECHAT_SECRET: "",
      AGENT_SECRET: "",
      ALLOWED_ORIGINS: "",
      REDIS_URL: "",
      NO_COLOR: "1",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Read as it comes, for printed(); whole once it has exited, for output.
  const printedSoFar = { stdout: "", stderr: "" };
  const watchers = new Set<() => void>();
  const text = async (s: ReadableStream<Uint8Array>, name: "stdout" | "stderr") => {
    for await (const chunk of s.pipeThrough(new TextDecoderStream())) {
      printedSoFar[name] += chunk;
      for (const watch of watchers) watch();
    }
    return printedSoFar[name];
  };
  const output = Promise.all([text(child.stdout, "stdout"), text(child.stderr, "stderr")])
    .then(([stdout, stderr]) => ({ stdout, stderr }));
  return {
    child,
    pid: child.pid,
    port,
    base: `http://127.0.0.1:${port}`,
    wsBase: `ws://127.0.0.1:${port}`,
    output,
    printed(pattern) {
      const found = () =>
        [printedSoFar.stdout, printedSoFar.stderr].some((t) =>
          t.split("\n").some((l) => pattern.test(l))
        );
      return new Promise((resolve, reject) => {
        const watch = () => {
          if (!found()) return;
          watchers.delete(watch);
          resolve();
        };
        watchers.add(watch);
        watch();
        const ended = () => {
          watchers.delete(watch);
          if (!found()) reject(new Error(`The bridge exited without printing ${pattern}`));
        };
        output.then(ended, ended);
      });
    },
    status: child.status,
    async rss() {
      const out = await new Deno.Command("ps", {
        args: ["-o", "rss=", "-p", String(child.pid)],
        stdout: "piped",
      }).output();
      const kb = new TextDecoder().decode(out.stdout).trim();
      if (!out.success || !/^\d+$/.test(kb)) {
        throw new Error(`Cannot read the RSS of process ${child.pid}`);
      }
      return Number(kb) * 1024;
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* exited already */ }
      return await child.status;
    },
  };
}

/** main.ts on the default store (SQLite, STORE unset) in `dataDir`; not waited for: see
 * waitReady. */
export function spawnOnDefaultStore(dataDir: string): SpawnedBridge {
  return spawnBridge({ DATA_DIR: dataDir, STORE: "" });
}

/** Resolves once the bridge answers `/readyz` 200; throws if it exits or takes 30 s. */
export async function waitReady(bridge: SpawnedBridge): Promise<void> {
  let exited = false;
  bridge.status.then(() => exited = true);
  const deadline = performance.now() + 30_000;
  while (true) {
    if (exited) throw new Error(`The bridge exited: ${JSON.stringify(await bridge.output)}`);
    try {
      const res = await fetch(`${bridge.base}/readyz`);
      await res.body?.cancel();
      if (res.status === 200) return;
    } catch { /* not listening yet */ }
    if (performance.now() > deadline) throw new Error("The bridge did not answer /readyz");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Ends the process with `signal` (if it still runs) and waits for it. */
export async function killBridge(bridge: SpawnedBridge, signal: Deno.Signal): Promise<void> {
  try {
    bridge.child.kill(signal);
  } catch { /* exited already */ }
  await bridge.status;
}
