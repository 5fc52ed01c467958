// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// The connection guard's own cost, without the bridge or a store (BENCHMARKS.md, issue 17):
//   deno run -A bench/guard_cost.ts memory [sockets]
//     RSS, JS heap and ArrayBuffers per idle WebSocket behind serveGuarded, behind Deno.serve
//     alone, and terminated on a node:net socket by Deno.upgradeWebSocket's `socket` option (the
//     way a guard could hand agents' sockets to Deno with no relay), each in a fresh process (the
//     clients in another);
//   deno run -A bench/guard_cost.ts cpu [rounds]
//     server CPU per message of bench/baseline.ts's handler behind serveGuarded and alone, with
//     the throughput row's load, in interleaved rounds (medians).
import {
  defaultConnectionLimits,
  type GuardedServer,
  serveDirect,
  serveGuarded,
} from "../src/http/connections.ts";
import net from "node:net";
import { runLoad } from "./load_runner.ts";
import { freePort, startServer } from "./servers.ts";
import { median } from "./stats.ts";

const SELF = new URL(import.meta.url).pathname;
const OPEN = "<ToUserName><![CDATA[";

/** bench/baseline.ts's handler: the raw body to the socket of the id in ToUserName. */
function baselineHandler(): (req: Request) => Promise<Response> | Response {
  const sockets = new Map<string, WebSocket>();
  return async (req) => {
    if (req.method === "POST") {
      const body = await req.text();
      const start = body.indexOf(OPEN) + OPEN.length;
      sockets.get(body.slice(start, body.indexOf("]]>", start)))?.send(body);
      return new Response("success");
    }
    const id = new URL(req.url).searchParams.get("userid") ?? "";
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onopen = () => sockets.set(id, socket);
    socket.onclose = () => sockets.get(id) === socket && sockets.delete(id);
    return response;
  };
}

/**
 * A WebSocket-only server on node:net: reads the upgrade request's head itself, then gives the
 * socket to Deno.upgradeWebSocket (its `socket` option, meant for node:http's "upgrade" event),
 * which answers 101 and runs Deno's own WebSocket on the socket: no relay, no second socket.
 */
function serveNodeNetWebSockets(): Promise<GuardedServer> {
  const decoder = new TextDecoder();
  const server = net.createServer({ noDelay: true }, (sock) => {
    let head = new Uint8Array(0);
    const onData = (chunk: Uint8Array) => {
      const merged = new Uint8Array(head.length + chunk.length);
      merged.set(head);
      merged.set(chunk, head.length);
      head = merged;
      const text = decoder.decode(head);
      const end = text.indexOf("\r\n\r\n");
      if (end < 0) return;
      sock.off("data", onData);
      sock.pause();
      const [requestLine = "", ...lines] = text.slice(0, end).split("\r\n");
      const [method, path] = requestLine.split(" ");
      const headers = new Headers();
      for (const line of lines) {
        const colon = line.indexOf(":");
        headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
      const req = new Request(`http://localhost${path}`, { method, headers });
      // Not in Deno's types: the option node:http's upgrade path uses.
      const options = {
        socket: sock,
        head: head.subarray(end + 4),
      } as Deno.UpgradeWebSocketOptions;
      Deno.upgradeWebSocket(req, options).socket.onmessage = () => {};
    };
    sock.on("data", onData);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        addr: {
          transport: "tcp",
          hostname: "127.0.0.1",
          port: (server.address() as net.AddressInfo).port,
        },
        connections: 0,
        stopAccepting: () => server.close(),
        closeConnections: () => {},
        // node's close() waits for every connection, and the upgraded ones are Deno's now.
        shutdown: () => Promise.resolve(void server.close()),
      }))
  );
}

function serve(guarded: boolean, port: number, handler: ReturnType<typeof baselineHandler>) {
  const options = { port, hostname: "127.0.0.1" };
  return guarded
    ? serveGuarded({ ...options, limits: defaultConnectionLimits(20_000) }, handler)
    : serveDirect(options, handler);
}

function rssBytes(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) * 1024;
}

/** A child process holding `n` WebSockets to `port` until its stdin closes. */
async function holdSockets(port: number, n: number): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SELF, "clients", String(port), String(n)],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read(); // "ready"
  reader.releaseLock();
  return child;
}

/** Each measurement in a fresh process: a heap grown by one would hide the other's growth. */
async function memory(n: number): Promise<void> {
  for (const which of ["guarded", "alone", "node-net"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", SELF, "memory-one", which, String(n)],
      stderr: "inherit",
    }).output();
    Deno.stdout.writeSync(out.stdout);
  }
}

async function memoryOne(which: string, n: number): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error("Cannot force a collection: run with --v8-flags=--expose-gc");
  const server: GuardedServer = which === "node-net"
    ? await serveNodeNetWebSockets()
    : serve(which === "guarded", 0, baselineHandler());
  const warm = await holdSockets(server.addr.port, 3);
  await new Promise((r) => setTimeout(r, 300));
  gc();
  gc();
  const m0 = Deno.memoryUsage();
  const r0 = rssBytes();
  const held = await holdSockets(server.addr.port, n);
  await new Promise((r) => setTimeout(r, 1000));
  const r1 = rssBytes();
  const t1 = Deno.memoryUsage().heapTotal;
  gc();
  gc();
  const m1 = Deno.memoryUsage();
  const kb = (a: number, b: number) => `${((b - a) / n / 1024).toFixed(2)} KB`;
  console.log(
    `${NAMES[which]}, ${n} idle sockets: RSS ${kb(r0, r1)}, ` +
      `JS heap used ${kb(m0.heapUsed, m1.heapUsed)}, committed ${kb(m0.heapTotal, t1)}, ` +
      `ArrayBuffers ${kb(m0.external, m1.external)} a socket`,
  );
  for (const child of [held, warm]) {
    child.stdin.close();
    await child.status;
  }
  server.closeConnections();
  await server.shutdown();
}

const NAMES: Record<string, string> = {
  guarded: "serveGuarded",
  alone: "Deno.serve alone",
  "node-net": "node:net + Deno.upgradeWebSocket({ socket })",
};

async function cpu(rounds: number): Promise<void> {
  const perMessage: Record<string, number[]> = { guarded: [], alone: [] };
  let idBase = 1_000_000_000;
  for (let round = 1; round <= rounds; round++) {
    for (const name of ["alone", "guarded"]) {
      const port = freePort();
      const server = await startServer(name, port, {
        cmd: [Deno.execPath(), "run", "-A", SELF, "serve", name],
      });
      const result = await runLoad({
        mode: "throughput",
        postUrl: `http://127.0.0.1:${port}/send_xml`,
        wsBase: `ws://127.0.0.1:${port}/msg?userid=`,
        format: "raw",
        agents: 100,
        messages: 20_000,
        concurrency: 32,
        durationS: 60,
        idBase,
        client: "raw",
        warmup: 300,
        drainS: 3,
        serverPid: server.pid,
        steps: [],
        slowEvery: 2,
      });
      idBase += 100_000;
      await server.stop();
      const us = (result.serverCpuMs * 1000) / result.sent;
      perMessage[name]!.push(us);
      console.log(
        `round ${round}, ${name}: ${us.toFixed(1)} µs CPU a message, ` +
          `${Math.round(result.perSecond)} msg/s, lost ${result.lost}${result.error ?? ""}`,
      );
    }
  }
  const guarded = median(perMessage.guarded!);
  const alone = median(perMessage.alone!);
  console.log(
    `medians: alone ${alone.toFixed(1)} µs, guarded ${guarded.toFixed(1)} µs: ` +
      `the relay ${(guarded - alone).toFixed(1)} µs a message`,
  );
}

const [mode, arg, arg2] = Deno.args;
if (mode === "memory") await memory(Number(arg ?? 2000));
else if (mode === "memory-one") await memoryOne(arg ?? "alone", Number(arg2 ?? 2000));
else if (mode === "cpu") await cpu(Number(arg ?? 5));
else if (mode === "serve") {
  serve(arg === "guarded", Number(Deno.env.get("PORT")), baselineHandler());
  Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
} else if (mode === "clients") {
  const [port, n] = [Number(arg), Number(arg2)];
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, () =>
        new Promise<void>((resolve, reject) => {
          const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
          ws.onopen = () => resolve();
          ws.onerror = () => reject(new Error("Cannot open a WebSocket"));
          sockets.push(ws);
        })),
    );
  }
  console.log("ready");
  for await (const _ of Deno.stdin.readable) { /* hold until stdin closes */ }
  Deno.exit(0);
} else {
  console.error("usage: bench/guard_cost.ts memory [sockets] | cpu [rounds]");
  Deno.exit(2);
}
