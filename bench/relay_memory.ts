// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// Where the connection guard's memory goes (BENCHMARKS.md, issue 17, "the relay's memory"):
//   deno run -A bench/relay_memory.ts promoted [--root DIR] [--all]
//     the bridge (DIR's main.ts, default this checkout) started with --inspect: three
//     throughput rounds, then the latency row's load (2,000/s for 8 s) under V8's sampling heap
//     profiler keeping only objects that outlive scavenges (includeObjectsCollectedByMinorGC:
//     false; with --all every allocation); prints bytes a message and the sites that make them;
//   deno run -A bench/relay_memory.ts heap [agents] [--root DIR] [--env K=V …]
//     heap snapshots of the bridge with 3 warm-up agents and with `agents` more idle ones
//     (default 1,000): count and self size per class, a connection's share of each;
//   deno run -A bench/relay_memory.ts rss [agents] [--root DIR] [--env K=V …]
//     the bridge's RSS a connection with `agents` idle ones, before and after a full collection;
//   deno run -A bench/relay_memory.ts floor [pairs]
//     what any relay in Deno pays: RSS of `pairs` accepted TCP connections plus as many Unix
//     client connections, each with one pending 256-byte read (the peers in another process).
import { parseArgs } from "node:util";
import { connectAgents, Receipts } from "./agents.ts";
import { runLoad } from "./load_runner.ts";
import { FULL, loadConfig } from "./plan.ts";
import { freePort, type Server, startServer, stopAll } from "./servers.ts";
import { ROOT, type System } from "./systems.ts";

const SELF = new URL(import.meta.url).pathname;
const B = "/im_component/wx_official_account";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    root: { type: "string", default: ROOT },
    // More of the bridge's environment, K=V (CONNECTION_GUARD=off, to compare).
    env: { type: "string", multiple: true, default: [] },
    // promoted: every sampled allocation, scavenged or not (the allocation rate).
    all: { type: "boolean", default: false },
  },
});
const [mode, arg] = positionals;
const env = Object.fromEntries(values.env.map((kv) => kv.split(/=(.*)/s).slice(0, 2)));

/** The bridge of checkout `root`, with --inspect on a port of its own, as startBridge starts it. */
async function startInspected(root: string): Promise<{ system: System; inspector: Inspector }> {
  const port = freePort();
  const inspect = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "bench_relay_memory_" });
  const server: Server = await startServer("bridge", port, {
    cmd: [Deno.execPath(), "run", "-A", `--inspect=127.0.0.1:${inspect}`, "main.ts"],
    cwd: root,
    env: {
      HOSTNAME: "127.0.0.1",
      DATA_DIR: dataDir,
      HEARTBEAT_INTERVAL_S: "30",
      LOG_LEVEL: "error",
      ...env,
    },
    readyTimeoutMs: 120_000,
  });
  const system: System = {
    label: "bridge",
    server,
    format: "json",
    postUrl: `http://127.0.0.1:${port}${B}/send_xml`,
    wsBase: `ws://127.0.0.1:${port}${B}/msg?userid=`,
    async stop() {
      await server.stop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
  return { system, inspector: await Inspector.open(inspect) };
}

/** The Chrome DevTools protocol of one process, enough for the heap profiler. */
class Inspector {
  #ws: WebSocket;
  #id = 0;
  #pending = new Map<number, (result: unknown) => void>();
  #chunks: string[] = [];

  constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const m = JSON.parse(String(e.data));
      if (m.method === "HeapProfiler.addHeapSnapshotChunk") this.#chunks.push(m.params.chunk);
      const done = this.#pending.get(m.id);
      if (done) {
        this.#pending.delete(m.id);
        done(m.result);
      }
    };
  }

  static async open(port: number): Promise<Inspector> {
    const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    const ws = new WebSocket(list[0].webSocketDebuggerUrl);
    await new Promise((resolve) => ws.onopen = resolve);
    return new Inspector(ws);
  }

  call<T>(method: string, params: unknown = {}): Promise<T> {
    return new Promise((resolve) => {
      const id = ++this.#id;
      this.#pending.set(id, resolve as (result: unknown) => void);
      this.#ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** A heap snapshot after a full collection, parsed. */
  async snapshot(): Promise<HeapSnapshot> {
    await this.call("HeapProfiler.collectGarbage");
    this.#chunks = [];
    await this.call("HeapProfiler.takeHeapSnapshot", { reportProgress: false });
    return JSON.parse(this.#chunks.join(""));
  }

  close(): void {
    this.#ws.close();
  }
}

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

interface ProfileNode {
  callFrame: { functionName: string; url: string };
  selfSize: number;
  children: ProfileNode[];
}

/** "function@file" for a profile's frame, paths cut to what tells them apart. */
function frameName(node: ProfileNode): string {
  const { functionName, url } = node.callFrame;
  const file = url.replace(/^.*?\/(src|bench|tools)\//, "$1/").replace(/^ext:/, "")
    .replace(/.*node_modules\//, "npm:");
  return `${functionName || "(anonymous)"}@${file}`;
}

async function promoted(root: string): Promise<void> {
  const { system, inspector } = await startInspected(root);
  try {
    let round = 1;
    for (let r = 0; r < 3; r++) {
      await runLoad(loadConfig(FULL, system, { mode: "throughput", idBase: round++ * 1e7 }));
    }
    await inspector.call("HeapProfiler.startSampling", {
      samplingInterval: 1024,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: values.all,
    });
    const load = await runLoad(loadConfig(FULL, system, {
      mode: "rate",
      messages: FULL.rate,
      durationS: FULL.latencyS,
      concurrency: 64,
      idBase: round++ * 1e7,
    }));
    const { profile } = await inspector.call<{ profile: { head: ProfileNode } }>(
      "HeapProfiler.stopSampling",
    );
    // By the allocating frame and its three callers.
    const sites = new Map<string, number>();
    const walk = (node: ProfileNode, stack: string[]) => {
      const here = [frameName(node), ...stack];
      if (node.selfSize > 0) {
        const key = here.slice(0, 4).join(" < ");
        sites.set(key, (sites.get(key) ?? 0) + node.selfSize);
      }
      for (const child of node.children) walk(child, here);
    };
    walk(profile.head, []);
    const total = [...sites.values()].reduce((a, b) => a + b, 0);
    console.log(
      `${load.sent} messages at ${FULL.rate}/s, lost ${load.lost}: ` +
        `${(total / load.sent).toFixed(0)} B a message ${
          values.all ? "allocated" : "outlived scavenges"
        }`,
    );
    for (const [site, bytes] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, 20)) {
      console.log(`${(bytes / load.sent).toFixed(1).padStart(7)}  ${site.slice(0, 220)}`);
    }
  } finally {
    inspector.close();
    await system.stop();
  }
}

/** Count and self size per "type:class" of a snapshot (strings and code in one row each). */
function byClass(snap: HeapSnapshot): Map<string, [number, number]> {
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const [ti, ni, si] = ["type", "name", "self_size"].map((f) => fields.indexOf(f)) as [
    number,
    number,
    number,
  ];
  const out = new Map<string, [number, number]>();
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + ti]!]!;
    const whole = type.includes("string") || type === "code" || type === "number";
    const key = whole ? type : `${type}:${snap.strings[snap.nodes[i + ni]!]!.slice(0, 50)}`;
    const row = out.get(key) ?? [0, 0];
    row[0]++;
    row[1] += snap.nodes[i + si]!;
    out.set(key, row);
  }
  return out;
}

async function heap(root: string, agents: number, rssOnly: boolean): Promise<void> {
  const { system, inspector } = await startInspected(root);
  const receipts = new Receipts("json", new Set());
  const warm = await connectAgents(system.wsBase, ["w1", "w2", "w3"], receipts);
  try {
    const ids = Array.from({ length: agents }, (_, i) => `idle_${i}`);
    if (rssOnly) {
      // RSS as the idle row reads it, then after a full collection: what garbage holds.
      await inspector.call("HeapProfiler.collectGarbage");
      const rss0 = rssOf(system.server.pid);
      const pool = await connectAgents(system.wsBase, ids, receipts);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const rss1 = rssOf(system.server.pid);
      await inspector.call("HeapProfiler.collectGarbage");
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const rss2 = rssOf(system.server.pid);
      const kb = (bytes: number) => `${(bytes / agents / 1024).toFixed(1)} KB`;
      console.log(
        `${agents} idle agents, RSS a connection: ${kb(rss1 - rss0)} as the idle row reads ` +
          `it, ${kb(rss2 - rss0)} after a full collection`,
      );
      pool.close();
      return;
    }
    const before = byClass(await inspector.snapshot());
    const pool = await connectAgents(system.wsBase, ids, receipts);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = byClass(await inspector.snapshot());
    const rows = [...after].map(([key, [count, size]]) => {
      const [c0, s0] = before.get(key) ?? [0, 0];
      return { key, count: (count - c0) / agents, size: (size - s0) / agents };
    }).filter((r) => Math.abs(r.size) >= 4).sort((a, b) => b.size - a.size);
    const total = rows.reduce((a, r) => a + r.size, 0);
    console.log(`${agents} idle agents: ${total.toFixed(0)} B of JS heap (self sizes) each`);
    console.log("   count    bytes  type:class (a connection's share)");
    for (const r of rows.slice(0, 40)) {
      console.log(`${r.count.toFixed(2).padStart(8)} ${r.size.toFixed(0).padStart(8)}  ${r.key}`);
    }
    pool.close();
  } finally {
    warm.close();
    inspector.close();
    await system.stop();
  }
}

function rssBytes(): number {
  return rssOf("self");
}

function rssOf(pid: number | "self"): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) * 1024;
}

function gc(): void {
  (globalThis as unknown as { gc(): void }).gc();
}

/** The floor: accepted TCP connections and Unix client connections, a pending read on each. */
async function floor(pairs: number): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "relay_floor_" });
  const path = `${dir}/s.sock`;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  // The peers: `pairs` TCP clients to us and a Unix listener we connect to, in a process of
  // their own, so that only our side of each socket is counted here.
  const peers = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SELF, "floor-peers", String(port), path, String(pairs)],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const out = peers.stdout.getReader();
  await out.read(); // listening
  const held: Deno.Conn[] = [];
  const hold = (conn: Deno.Conn) => {
    held.push(conn);
    conn.read(new Uint8Array(256)).catch(() => {});
  };
  const step = async (label: string, open: () => Promise<void>) => {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
    gc();
    const rss0 = rssBytes();
    const heap0 = Deno.memoryUsage();
    await open();
    gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
    gc();
    const heap1 = Deno.memoryUsage();
    const kb = (bytes: number) => (bytes / pairs / 1024).toFixed(2).padStart(6);
    console.log(
      `${label.padEnd(34)} RSS ${kb(rssBytes() - rss0)} KB, JS heap used ${
        kb(heap1.heapUsed - heap0.heapUsed)
      } KB (committed ${kb(heap1.heapTotal - heap0.heapTotal)}), external ${
        kb(heap1.external - heap0.external)
      } KB a connection`,
    );
  };
  await step(`${pairs} accepted TCP, read pending`, async () => {
    const go = new TextEncoder().encode("go\n");
    const writer = peers.stdin.getWriter();
    await writer.write(go);
    writer.releaseLock();
    for (let i = 0; i < pairs; i++) {
      const conn = await listener.accept();
      (conn as Deno.TcpConn).setNoDelay(true);
      hold(conn);
    }
  });
  await step(`${pairs} Unix clients, read pending`, async () => {
    // One at a time, again after a pause when refused: a full Unix backlog answers EAGAIN.
    for (let i = 0; i < pairs; i++) {
      try {
        hold(await Deno.connect({ transport: "unix", path }));
      } catch (error) {
        if (!(error instanceof Deno.errors.WouldBlock)) throw error;
        await new Promise((resolve) => setTimeout(resolve, 10));
        i--;
      }
    }
  });
  for (const conn of held) conn.close();
  listener.close();
  await peers.stdin.close();
  await peers.status;
  await Deno.remove(dir, { recursive: true });
}

/** The floor's other ends: connects TCP clients on "go", accepts the Unix ones, holds all. */
async function floorPeers(port: number, path: string, pairs: number): Promise<void> {
  const unix = Deno.listen({ transport: "unix", path });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const conn of unix) held.push(conn);
  })();
  const stdin = Deno.stdin.readable.getReader();
  await Deno.stdout.write(new TextEncoder().encode("ready\n"));
  await stdin.read(); // go
  for (let i = 0; i < pairs; i += 100) {
    const batch = Math.min(100, pairs - i);
    held.push(
      ...await Promise.all(
        Array.from({ length: batch }, () => Deno.connect({ hostname: "127.0.0.1", port })),
      ),
    );
  }
  while (!(await stdin.read()).done) { /* until the parent closes stdin */ }
  Deno.exit(0);
}

try {
  if (mode === "promoted") await promoted(values.root);
  else if (mode === "heap" || mode === "rss") {
    await heap(values.root, Number(arg ?? 1000), mode === "rss");
  } else if (mode === "floor") {
    // A process of its own with --expose-gc, so that the readings follow forced collections.
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", SELF, "floor-one", arg ?? "4000"],
    }).spawn();
    await child.status;
  } else if (mode === "floor-one") await floor(Number(arg ?? 4000));
  else if (mode === "floor-peers") {
    await floorPeers(Number(arg), positionals[2]!, Number(positionals[3]));
  } else {
    console.error(
      "usage: bench/relay_memory.ts promoted [--root DIR] | heap [agents] [--root DIR] | " +
        "floor [pairs]",
    );
    Deno.exit(2);
  }
} finally {
  await stopAll();
}
