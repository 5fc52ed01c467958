// The bridge as `deno task start` runs it (main.ts in a child process), for tests that measure
// the process from outside: its peak resident memory is read from /proc, never assumed.

const ROOT = new URL("../../", import.meta.url).pathname;

/** A running main.ts. */
export interface MainProcess {
  pid: number;
  base: string;
  wsBase: string;
  /** VmHWM: the most resident memory the process has had, in bytes. */
  peakRss(): number;
  /** VmRSS now, in bytes. */
  rss(): number;
  /** What the process wrote to stderr so far is returned once it has exited. */
  stop(): Promise<string>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

// Read through cat: the test task's permissions let tests run programs, while reading /proc
// directly needs --allow-all.
function statusKb(pid: number, field: string): number {
  const out = new Deno.Command("cat", { args: [`/proc/${pid}/status`], stderr: "null" })
    .outputSync();
  const text = new TextDecoder().decode(out.stdout);
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  if (!match) throw new Error(`No ${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Starts main.ts with `env` (over a clean default: memory store, no WeChat, open agents). */
export async function startMain(env: Record<string, string>): Promise<MainProcess> {
  const port = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-main-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: ROOT,
    env: {
      PORT: String(port),
      HOSTNAME: "127.0.0.1",
      DATA_DIR: dataDir,
      STORE: "memory",
      LOG_LEVEL: "error",
      REDIS_URL: "",
      WECHAT_TOKEN: "",
      WECHAT_AES_KEY: "",
      WECHAT_APPID: "",
      WECHAT_SECRET: "",
      AGENT_SECRET: "",
      ...env,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  let exited = false;
  const status = child.status.then((s) => (exited = true, s));
  const base = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (!exited) child.kill("SIGKILL");
    await status;
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    return await stderr;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`main.ts exited: ${await stop()}`);
    try {
      const res = await fetch(`${base}/healthz`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error("main.ts did not listen within 30 s");
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid: child.pid,
    base,
    wsBase: `ws://127.0.0.1:${port}`,
    peakRss: () => statusKb(child.pid, "VmHWM"),
    rss: () => statusKb(child.pid, "VmRSS"),
    stop,
  };
}
