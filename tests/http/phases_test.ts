// The guard knows each connection's phase: headers not finished (fresh), kept alive between
// requests (kept), a request in the handler (busy). At the cap it closes fresh ones first, then
// the one kept alive longest, never a working one; the sweep closes fresh and kept ones past
// their timeouts. Each phase change happens on every request, so it must stay right.

import assert from "node:assert/strict";
import {
  type ConnectionLimits,
  defaultConnectionLimits,
  serveGuarded,
} from "../../src/http/connections.ts";

const enc = new TextEncoder();
const HEALTHZ = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
const HOLD = "GET /hold HTTP/1.1\r\nhost: x\r\n\r\n";

/** A server whose /hold requests wait until `release()`; `entered` settles when one arrives. */
function holdingServer(limits: Partial<ConnectionLimits>) {
  let release = () => {};
  const held = new Promise<void>((r) => release = r);
  let entered = () => {};
  const arrived = new Promise<void>((r) => entered = r);
  const server = serveGuarded({
    port: 0,
    hostname: "127.0.0.1",
    limits: {
      maxConnections: 1000,
      headersTimeoutMs: 60_000,
      keepAliveTimeoutMs: 60_000,
      maxMessageBytes: 1000,
      ...limits,
    },
  }, async (req) => {
    if (new URL(req.url).pathname === "/hold") {
      entered();
      await held;
      return new Response("held");
    }
    // An answer far larger than the kernel's buffers, made as it is taken.
    if (new URL(req.url).pathname === "/big") {
      let left = 64;
      return new Response(
        new ReadableStream({
          pull(controller) {
            if (left-- === 0) controller.close();
            else controller.enqueue(new Uint8Array(1024 * 1024));
          },
        }),
      );
    }
    // A body is read to its end, so its request stays in the handler while it trickles.
    if (req.method === "POST") return new Response(`read ${(await req.arrayBuffer()).byteLength}`);
    return new Response("ok");
  });
  return { server, release, arrived };
}

async function open(port: number, bytes: string): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  if (bytes !== "") await conn.write(enc.encode(bytes));
  return conn;
}

/** The next answer's status and body ("" once the server closed). */
async function answer(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf).catch(() => null);
  if (n === null) return "";
  const text = new TextDecoder().decode(buf.subarray(0, n));
  return `${text.slice(9, 12)} ${text.slice(text.indexOf("\r\n\r\n") + 4)}`;
}

/** True once the server has closed `conn` (read ends or is reset) within `ms` (false leaves a
 * read pending: nothing may be read from `conn` after). */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(64);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"open">((r) => timer = setTimeout(() => r("open"), ms));
  try {
    while (true) {
      const got = await Promise.race([conn.read(buf).catch(() => null), timeout]);
      if (got === "open") return false;
      if (got === null) return true;
    }
  } finally {
    clearTimeout(timer);
  }
}

function closeAll(conns: Deno.Conn[]) {
  for (const conn of conns) {
    try {
      conn.close();
    } catch { /* closed by the server */ }
  }
}

/**
 * A connection in each phase, added to `conns`: kept alive after an answer, busy on a request the
 * server holds (once it has `arrived`), fresh with half a head.
 */
async function onePerPhase(port: number, arrived: Promise<void>, conns: Deno.Conn[]) {
  const kept = await open(port, HEALTHZ);
  conns.push(kept);
  assert.equal(await answer(kept), "200 ok");
  const busy = await open(port, HOLD);
  conns.push(busy);
  await arrived;
  const fresh = await open(port, "GET /healthz HTTP/1.1\r\nhost:");
  conns.push(fresh);
  return { kept, busy, fresh };
}

Deno.test("at the cap the guard closes the fresh connection, then the kept one, never the busy one", async (t) => {
  const { server, release, arrived } = holdingServer({ maxConnections: 3 });
  const port = server.addr.port;
  const conns: Deno.Conn[] = [];
  try {
    const { kept, busy, fresh } = await onePerPhase(port, arrived, conns);
    // Give the relay a moment to have read the half-sent head (nothing outside shows it).
    await new Promise((r) => setTimeout(r, 100));

    await t.step("a fourth connection: the fresh one is closed", async () => {
      const next = await open(port, HEALTHZ);
      conns.push(next);
      assert.equal(await answer(next), "200 ok");
      assert.equal(await closedWithin(fresh, 2000), true);
    });
    await t.step("a fifth: the connection kept alive longest is closed", async () => {
      const next = await open(port, HEALTHZ);
      conns.push(next);
      assert.equal(await answer(next), "200 ok");
      assert.equal(await closedWithin(kept, 2000), true);
    });
    await t.step("the busy connection stayed and gets its answer", async () => {
      release();
      assert.equal(await answer(busy), "200 held");
      // Answered, it is kept alive and serves its next request.
      await busy.write(enc.encode(HEALTHZ));
      assert.equal(await answer(busy), "200 ok");
    });
  } finally {
    release();
    closeAll(conns);
    await server.shutdown();
  }
});

Deno.test("at the cap a trickled body gives way, not a request waiting on its answer", async (t) => {
  const { server, release, arrived } = holdingServer({ maxConnections: 3 });
  const port = server.addr.port;
  const conns: Deno.Conn[] = [];
  const trickled: Deno.Conn[] = [];
  // Each trickled body keeps sending, so neither is ever quiet.
  const drip = setInterval(() => {
    for (const conn of trickled) conn.write(enc.encode("1\r\nx\r\n")).catch(() => {});
  }, 200);
  try {
    // Sent whole, then waiting on the server (a reply that goes through WeChat's API, say).
    const waiting = await open(port, HOLD);
    conns.push(waiting);
    await arrived;
    for (let i = 0; i < 2; i++) {
      const conn = await open(
        port,
        "POST /body HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n",
      );
      conns.push(conn);
      trickled.push(conn);
    }
    // Long enough for the waiting client to count as quiet: it has nothing more to send.
    await new Promise((r) => setTimeout(r, 1500));

    await t.step("a fourth connection: the oldest trickled body is closed", async () => {
      const next = await open(port, HEALTHZ);
      conns.push(next);
      assert.equal(await answer(next), "200 ok");
      assert.equal(await closedWithin(trickled[0]!, 2000), true);
    });
    await t.step("the request waiting on its answer stayed and gets it", async () => {
      release();
      assert.equal(await answer(waiting), "200 held");
    });
  } finally {
    clearInterval(drip);
    release();
    closeAll(conns);
    await server.shutdown();
  }
});

Deno.test("at the cap a client that takes none of its answer gives way", async (t) => {
  const { server, release } = holdingServer({ maxConnections: 3 });
  const port = server.addr.port;
  const conns: Deno.Conn[] = [];
  try {
    // Each asks for a large answer and reads none of it: its request is whole, its client quiet,
    // and only the client holds it up.
    for (let i = 0; i < 3; i++) {
      conns.push(await open(port, "GET /big HTTP/1.1\r\nhost: x\r\n\r\n"));
    }
    // Long enough for their writes to fill the buffers, and for the guard's once-a-second sweep
    // to have seen them wait on the clients for over a second.
    await new Promise((r) => setTimeout(r, 2500));

    await t.step("a fourth connection is served: one of them gives way", async () => {
      const next = await open(port, HEALTHZ);
      conns.push(next);
      assert.equal(await answer(next), "200 ok");
    });
  } finally {
    release();
    closeAll(conns);
    await server.shutdown();
  }
});

Deno.test("the sweep closes fresh and kept connections past their timeouts, not busy ones", async () => {
  const { server, release, arrived } = holdingServer({
    headersTimeoutMs: 200,
    keepAliveTimeoutMs: 200,
  });
  const port = server.addr.port;
  const conns: Deno.Conn[] = [];
  try {
    const { kept, busy, fresh } = await onePerPhase(port, arrived, conns);
    // The sweep runs once a second.
    assert.equal(await closedWithin(fresh, 5000), true, "fresh");
    assert.equal(await closedWithin(kept, 5000), true, "kept");
    // Past another sweep, the busy one is still open: it gets its answer.
    await new Promise((r) => setTimeout(r, 1200));
    release();
    assert.equal(await answer(busy), "200 held");
  } finally {
    release();
    closeAll(conns);
    await server.shutdown();
  }
});

Deno.test("an upgrade request answered without an upgrade leaves the connection serving HTTP", async () => {
  const server = serveGuarded(
    { port: 0, hostname: "127.0.0.1", limits: defaultConnectionLimits(1024) },
    (req) => new Response(req.headers.has("upgrade") ? "no" : "ok", { status: 200 }),
  );
  const conn = await open(
    server.addr.port,
    "GET /msg HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n" +
      "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
  );
  try {
    assert.equal(await answer(conn), "200 no");
    await conn.write(enc.encode(HEALTHZ));
    assert.equal(await answer(conn), "200 ok");
  } finally {
    conn.close();
    await server.shutdown();
  }
});
