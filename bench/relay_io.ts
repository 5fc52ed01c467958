// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// What a relay's own CPU costs a message with Deno's sockets and with node:net's (BENCHMARKS.md,
// "Agents' sockets without the relay"): 600-byte messages echoed through a relay, 32
// connections, the relay's CPU time read from /proc, the two kinds in interleaved rounds.
//   deno run -A bench/relay_io.ts [rounds] [messages]
import net from "node:net";
import { readCpuMs } from "./proc.ts";
import { freePort } from "./servers.ts";
import { median } from "./stats.ts";

const SELF = new URL(import.meta.url).pathname;
const MESSAGE_BYTES = 600;
const CONNECTIONS = 32;

/** Echoes every connection on a Unix socket at `path` (the server behind the relay). */
async function echo(path: string): Promise<void> {
  const listener = Deno.listen({ transport: "unix", path });
  console.log("ready");
  for await (const conn of listener) {
    (async () => {
      const buf = new Uint8Array(64 * 1024);
      while (true) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        for (let off = 0; off < n;) off += await conn.write(buf.subarray(off, n));
      }
    })();
  }
}

/** The relay as connections.ts's Pump does it: one read, one write, the next read. */
function relayDeno(port: number, path: string): void {
  const pump = (from: Deno.Conn, to: Deno.Conn) => {
    const buf = new Uint8Array(4096);
    const onRead = (n: number | null) => {
      if (n === null) return;
      to.write(buf.subarray(0, n)).then(() => from.read(buf).then(onRead, () => {}), () => {});
    };
    from.read(buf).then(onRead, () => {});
  };
  const listener = Deno.listen({ port, hostname: "127.0.0.1" });
  console.log("ready");
  (async () => {
    for await (const client of listener) {
      client.setNoDelay(true);
      const inner = await Deno.connect({ transport: "unix", path });
      pump(client, inner);
      pump(inner, client);
    }
  })();
}

/** The same relay on node:net sockets ("data" events, write with back-pressure). */
function relayNode(port: number, path: string): void {
  const pipe = (from: net.Socket, to: net.Socket) => {
    from.on("data", (chunk) => {
      if (to.write(chunk)) return;
      from.pause();
      to.once("drain", () => from.resume());
    });
    from.on("end", () => to.end());
    from.on("error", () => to.destroy());
  };
  const server = net.createServer({ noDelay: true }, (client) => {
    const inner = net.createConnection({ path });
    pipe(client, inner);
    pipe(inner, client);
  });
  server.listen(port, "127.0.0.1", () => console.log("ready"));
}

/** Sends `total` messages through `port`, each waiting for its echo, on 32 connections. */
async function client(port: number, total: number): Promise<void> {
  const message = new Uint8Array(MESSAGE_BYTES).fill(65);
  let done = 0;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => {
    const conn = await Deno.connect({ port, hostname: "127.0.0.1" });
    conn.setNoDelay(true);
    const buf = new Uint8Array(4096);
    while (done < total) {
      await conn.write(message);
      for (let got = 0; got < MESSAGE_BYTES;) {
        const n = await conn.read(buf);
        if (n === null) return;
        got += n;
      }
      done++;
    }
    conn.close();
  }));
}

/** Spawns this file in `role`; resolves once it says "ready". */
async function spawn(...args: string[]): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SELF, ...args],
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  reader.releaseLock();
  return child;
}

async function run(command: string[]): Promise<void> {
  const { success } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", SELF, ...command],
  }).output();
  if (!success) throw new Error(`${command.join(" ")} failed`);
}

async function main(rounds: number, messages: number): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "relay_io_" });
  const path = `${dir}/echo.sock`;
  const echoServer = await spawn("echo", path);
  const perMessage: Record<string, number[]> = { deno: [], node: [] };
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const kind of ["deno", "node"]) {
        const port = freePort();
        const relay = await spawn(`relay-${kind}`, String(port), path);
        await run(["client", String(port), String(messages / 5)]); // warm-up
        const before = readCpuMs(relay.pid);
        await run(["client", String(port), String(messages)]);
        const us = (readCpuMs(relay.pid) - before) * 1000 / messages;
        perMessage[kind]!.push(us);
        console.log(`round ${round}, ${kind}: the relay's CPU ${us.toFixed(1)} µs a message`);
        relay.kill();
        await relay.status;
      }
    }
  } finally {
    echoServer.kill();
    await echoServer.status;
    await Deno.remove(dir, { recursive: true });
  }
  const line = (kind: string) => {
    const values = perMessage[kind]!;
    return `${median(values).toFixed(1)} µs (${Math.min(...values).toFixed(1)}-${
      Math.max(...values).toFixed(1)
    })`;
  };
  console.log(`medians: Deno.Conn ${line("deno")}, node:net ${line("node")}`);
}

const [role, a, b] = Deno.args;
if (role === "echo") await echo(a!);
else if (role === "relay-deno") relayDeno(Number(a), b!);
else if (role === "relay-node") relayNode(Number(a), b!);
else if (role === "client") await client(Number(a), Number(b));
else await main(Number(role ?? 5), Number(a ?? 100_000));
