// Starting and stopping the processes under test: the bridge, the baseline, the node relay
// and redis-server. Each gets a free port and its output drained into a short tail, which is
// what the report quotes when one fails to start.

export interface Server {
  name: string;
  pid: number;
  port: number;
  /** The last few KB of the process's stdout and stderr. */
  tail(): string;
  /** null while running, else the exit code. */
  exitCode(): number | null;
  stop(): Promise<void>;
}

const running = new Set<Server>();

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

export interface StartOptions {
  cmd: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** How long the process may take to accept TCP connections on its port. */
  readyTimeoutMs?: number;
}

/** Spawns `cmd` with PORT=`port` and resolves once the port accepts connections. */
export async function startServer(
  name: string,
  port: number,
  options: StartOptions,
): Promise<Server> {
  const [bin, ...args] = options.cmd;
  const child = new Deno.Command(bin!, {
    args,
    cwd: options.cwd,
    env: { PORT: String(port), ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let tail = "";
  const keep = (text: string) => {
    tail = (tail + text).slice(-4096);
  };
  // Draining both pipes matters: a full pipe would block a server that logs.
  drain(child.stdout, keep);
  drain(child.stderr, keep);
  let code: number | null = null;
  const exited = child.status.then((s) => {
    code = s.code;
  });
  const server: Server = {
    name,
    pid: child.pid,
    port,
    tail: () => tail,
    exitCode: () => code,
    async stop() {
      running.delete(server);
      if (code !== null) return;
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
      }, 3000);
      await exited;
      clearTimeout(timer);
    },
  };
  running.add(server);
  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  while (Date.now() < deadline) {
    if (code !== null) break;
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return server;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  await server.stop();
  const why = code !== null ? `exited with code ${code}` : "did not listen in time";
  throw new Error(`Cannot start ${name}: ${why}: ${lastLines(tail, 3)}`);
}

/** Stops every server still running (on exit or Ctrl-C). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

/** The last `n` non-empty lines of `text`, joined with " | ". */
export function lastLines(text: string, n: number): string {
  // deno-lint-ignore no-control-regex
  const plain = text.replace(/\x1b\[[0-9;]*m/g, "");
  return plain.split("\n").map((l) => l.trim()).filter((l) => l.length > 0).slice(-n).join(" | ");
}

async function drain(stream: ReadableStream<Uint8Array>, keep: (text: string) => void) {
  const decoder = new TextDecoder();
  try {
    for await (const chunk of stream) keep(decoder.decode(chunk, { stream: true }));
  } catch { /* the process ended */ }
}
