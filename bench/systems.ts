// The systems under test and how each is started: the bridge (main.ts, with the env the issue
// fixes), the bare Deno baseline, the Node.js ws relay, redis-server. Also the probe that
// tells whether a started bridge delivers at all, before any round relies on it.
import { connectAgents, Receipts } from "./agents.ts";
import { createPoster } from "./http_client.ts";
import { msgId, textXml } from "./messages.ts";
import { readOpenFilesLimit } from "./proc.ts";
import { freePort, lastLines, type Server, startServer } from "./servers.ts";

export const ROOT = new URL("..", import.meta.url).pathname;
const B = "/im_component/wx_official_account";

export interface System {
  label: string;
  server: Server;
  /** How its agents receive a message: the bridge's JSON envelope or the raw XML. */
  format: "json" | "raw";
  postUrl: string;
  wsBase: string;
  dataDir?: string;
  /** ms from spawning the process to its port accepting connections. */
  startMs?: number;
  /** The process's hard limit on open files, as started. */
  openFiles?: number;
  stop(): Promise<void>;
}

function urls(port: number) {
  return {
    postUrl: `http://127.0.0.1:${port}${B}/send_xml`,
    wsBase: `ws://127.0.0.1:${port}${B}/msg?userid=`,
  };
}

export async function startBaseline(): Promise<System> {
  const port = freePort();
  const server = await startServer("baseline", port, {
    cmd: [Deno.execPath(), "run", "-A", `${ROOT}bench/baseline.ts`],
  });
  return { label: "baseline", server, format: "raw", ...urls(port), stop: () => server.stop() };
}

export async function startNodeRelay(): Promise<System> {
  const port = freePort();
  const server = await startServer("node relay", port, {
    cmd: ["node", `${ROOT}bench/node_relay/relay.mjs`],
  });
  return {
    label: "node ws relay",
    server,
    format: "raw",
    ...urls(port),
    stop: () => server.stop(),
  };
}

export interface BridgeOptions {
  label?: string;
  env?: Record<string, string>;
  /** Directory for a V8 CPU profile, written when the bridge exits. */
  cpuProfDir?: string;
  /** A DATA_DIR prepared by the caller (a seeded store): used as is and kept at stop. */
  dataDir?: string;
  /**
   * Descriptors the bridge needs: when the hard limit here is lower, it is started under
   * `prlimit --nofile` with this many, as docs/production.md tells users (LimitNOFILE); raising
   * a hard limit needs root, else the start fails and the row says so.
   */
  openFiles?: number;
}

/** Starts `deno run -A main.ts` on a free port with a fresh DATA_DIR. */
export async function startBridge(options: BridgeOptions = {}): Promise<System> {
  const port = freePort();
  const own = options.dataDir === undefined;
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "bench_bridge_" });
  const removeOwn = () => own ? Deno.remove(dataDir, { recursive: true }).catch(() => {}) : null;
  const prof = options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`] : [];
  const need = options.openFiles ?? 0;
  // prlimit execs the command, so the PID the bench reads stays the bridge's.
  const raise = need > readOpenFilesLimit().hard
    ? ["prlimit", `--nofile=${need}:${need}`, "--"]
    : [];
  let server: Server;
  const spawned = performance.now();
  try {
    server = await startServer(options.label ?? "bridge", port, {
      cmd: [...raise, Deno.execPath(), "run", "-A", ...prof, "main.ts"],
      cwd: ROOT,
      env: {
        HOSTNAME: "127.0.0.1",
        DATA_DIR: dataDir,
        HEARTBEAT_INTERVAL_S: "30",
        LOG_LEVEL: "error",
        ...options.env,
      },
      readyTimeoutMs: 120_000, // a fresh machine downloads the bridge's npm packages first
    });
  } catch (err) {
    await removeOwn();
    throw err;
  }
  return {
    label: options.label ?? "bridge",
    server,
    format: "json",
    dataDir,
    startMs: performance.now() - spawned,
    openFiles: readOpenFilesLimit(server.pid).hard,
    ...urls(port),
    async stop() {
      await server.stop();
      await removeOwn();
    },
  };
}

/**
 * Posts one message to `from` for an agent connected to `to` (the same system, or another
 * instance) and resolves to "" when it arrives within `timeoutMs`, else to why not.
 */
export async function probe(from: System, to: System, timeoutMs = 3000): Promise<string> {
  const id = msgId(999_999_000_000 + Math.floor(Math.random() * 999_999));
  const expected = new Set([id]);
  const receipts = new Receipts(to.format, expected);
  let agents;
  try {
    agents = await connectAgents(to.wsBase, ["probe_agent"], receipts, { timeoutMs });
  } catch (err) {
    return `agent socket: ${err instanceof Error ? err.message : err}`;
  }
  const poster = createPoster("raw", from.postUrl, 1);
  try {
    const status = await poster.post(textXml("probe_agent", id, "probe"));
    if (status < 200 || status >= 300) {
      return `POST send_xml answered ${status}: ${lastLines(from.server.tail(), 1)}`;
    }
    await receipts.waitFor(1, timeoutMs);
    if (receipts.receivedAt.size === 0) {
      return `a message posted to ${from.label} did not reach its agent on ${to.label} ` +
        `within ${timeoutMs} ms`;
    }
    return "";
  } catch (err) {
    return `POST send_xml: ${err instanceof Error ? err.message : err}`;
  } finally {
    poster.close();
    agents.close();
  }
}

/** True when some file under `dir` is an SQLite database (the SQLite store's, or Deno KV's). */
export async function holdsSqlite(dir: string): Promise<boolean> {
  const header = new TextEncoder().encode("SQLite format 3");
  const walk = async (path: string): Promise<boolean> => {
    for await (const entry of Deno.readDir(path)) {
      const full = `${path}/${entry.name}`;
      if (entry.isDirectory && await walk(full)) return true;
      if (!entry.isFile) continue;
      const file = await Deno.open(full);
      const buf = new Uint8Array(header.length);
      const n = await file.read(buf).finally(() => file.close());
      if (n === header.length && buf.every((b, i) => b === header[i])) return true;
    }
    return false;
  };
  return await walk(dir).catch(() => false);
}

/** A redis-server of our own on a free port, or null when there is none on PATH. */
export async function startRedis(): Promise<Server | null> {
  const found = await new Deno.Command("sh", { args: ["-c", "command -v redis-server"] })
    .output().catch(() => null);
  if (!found?.success) return null;
  const port = freePort();
  return await startServer("redis", port, {
    cmd: [
      "redis-server",
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
    ],
    readyTimeoutMs: 10_000,
  });
}
