// What a client sends right behind an upgrade request, before its answer, is frames if Deno
// upgrades and the next request if it does not. The guard used to take it for frames at once:
// passed on without the link's token, a request behind a refused upgrade (a bad token: 401, a
// wrong path: 404) was answered 421. It now holds those bytes until the answer's status is
// known. CONNECTION_GUARD=off is the reference.

import assert from "node:assert/strict";
import { defaultConnectionLimits, serveGuarded } from "../../src/http/connections.ts";
import { startBridge } from "../helpers/server.ts";
import { readStatuses } from "../helpers/raw_http.ts";

const enc = new TextEncoder();
const SECRET = "test-secret-that-is-long-enough-for-hs256!";
const B = "/im_component/wx_official_account";
const HEALTHZ = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

/** An upgrade request's head for `path`. */
function upgradeHead(path: string): string {
  return `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n` +
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
}

/** A masked client frame: `opcode`, `payload`, or only a header declaring `length` bytes. */
function clientFrame(opcode: number, payload: Uint8Array | number): Uint8Array {
  const length = typeof payload === "number" ? payload : payload.length;
  const header = length < 126 ? [0x80 | opcode, 0x80 | length] : [0x80 | opcode, 0x80 | 127];
  const out = new Uint8Array(
    header.length + (length < 126 ? 0 : 8) + 4 + (typeof payload === "number" ? 0 : length),
  );
  out.set(header);
  let at = header.length;
  if (length >= 126) {
    new DataView(out.buffer).setBigUint64(at, BigInt(length));
    at += 8;
  }
  out.set([0, 0, 0, 0], at); // a zero mask: the payload goes as it is
  if (typeof payload !== "number") out.set(payload, at + 4);
  return out;
}

/** Everything the server sends until it closes or `ms` pass. */
async function readFor(conn: Deno.Conn, ms: number): Promise<Uint8Array> {
  const chunks: number[] = [];
  const buf = new Uint8Array(16 * 1024);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      chunks.push(...buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
  return new Uint8Array(chunks);
}

for (const guard of ["on", "off"] as const) {
  Deno.test(`a request pipelined behind a refused upgrade gets its own answer (CONNECTION_GUARD=${guard})`, async (t) => {
    const server = await startBridge({ env: { CONNECTION_GUARD: guard, AGENT_SECRET: SECRET } });
    try {
      for (
        const [name, path, status] of [
          ["a bad token", `${B}/msg?userid=a&access_token=bad`, "401"],
          ["a wrong path", "/nope", "404"],
        ] as const
      ) {
        await t.step(`${name}: ${status}, then the request behind it`, async () => {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
          // One write: the request behind is in the same read as the upgrade's head.
          await conn.write(enc.encode(upgradeHead(path) + HEALTHZ));
          assert.deepEqual(await readStatuses(conn, 2), [status, "200"]);
          // The connection goes on as HTTP, with its own link.
          await conn.write(enc.encode(HEALTHZ));
          assert.deepEqual(await readStatuses(conn, 1), ["200"]);
          conn.close();
        });
      }
      await t.step("later on a kept-alive connection, and between two requests", async () => {
        // Not the connection's first head: the relay's pump reads it, not its first read.
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        await conn.write(enc.encode(HEALTHZ));
        assert.deepEqual(await readStatuses(conn, 1), ["200"]);
        await conn.write(enc.encode(upgradeHead("/nope") + HEALTHZ));
        assert.deepEqual(await readStatuses(conn, 2), ["404", "200"]);
        await conn.write(enc.encode(HEALTHZ + upgradeHead("/nope") + HEALTHZ));
        assert.deepEqual(await readStatuses(conn, 3), ["200", "404", "200"]);
        conn.close();
      });
      await t.step("the request behind in a read of its own, before the answer", async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        await conn.write(enc.encode(upgradeHead("/nope")));
        await conn.write(enc.encode(HEALTHZ));
        assert.deepEqual(await readStatuses(conn, 2), ["404", "200"]);
        conn.close();
      });
    } finally {
      await server.close();
    }
  });

  Deno.test(`frames sent with an upgrade's head reach the socket (CONNECTION_GUARD=${guard})`, async () => {
    const server = await startBridge({ env: { CONNECTION_GUARD: guard } });
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      const head = enc.encode(upgradeHead(`${B}/msg?userid=pipelined`));
      const ping = clientFrame(0x9, enc.encode("are you there"));
      const bytes = new Uint8Array(head.length + ping.length);
      bytes.set(head);
      bytes.set(ping, head.length);
      await conn.write(bytes);
      const text = String.fromCharCode(...await readFor(conn, 500));
      assert.match(text, /^HTTP\/1\.1 101 /);
      // Deno answers the ping that waited behind the head with a pong carrying its payload.
      assert.ok(text.includes("\x8a\x0dare you there"), JSON.stringify(text));
    } finally {
      await server.close();
    }
  });
}

Deno.test("a frame over the limit sent with an upgrade's head is measured from its start", async (t) => {
  let answerAfterMs = 0;
  const server = serveGuarded(
    { port: 0, hostname: "127.0.0.1", limits: defaultConnectionLimits(1024) },
    async (req) => {
      await new Promise((r) => setTimeout(r, answerAfterMs));
      return new URL(req.url).pathname === "/ws"
        ? Deno.upgradeWebSocket(req).response
        : new Response("no socket here", { status: 404 });
    },
  );
  try {
    for (const ms of [0, 100]) {
      await t.step(`answered after ${ms} ms: closed on the frame's header`, async () => {
        answerAfterMs = ms;
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
        const head = enc.encode(upgradeHead("/ws"));
        const frame = clientFrame(0x2, 300 * 1024);
        const bytes = new Uint8Array(head.length + frame.length);
        bytes.set(head);
        bytes.set(frame, head.length);
        await conn.write(bytes);
        // Closed as the frame's header is read, whether or not the 101 got out first.
        const started = performance.now();
        const text = String.fromCharCode(...await readFor(conn, 3_000));
        assert.ok(performance.now() - started < 2_000, `left open after ${JSON.stringify(text)}`);
      });
      await t.step(`answered 404 after ${ms} ms: the request behind is answered`, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
        await conn.write(enc.encode(upgradeHead("/other") + HEALTHZ));
        assert.deepEqual(await readStatuses(conn, 2), ["404", "404"]);
        conn.close();
      });
    }
  } finally {
    await server.shutdown();
  }
});

Deno.test("a frame over the limit behind an upgrade pipelined after a request: its answer and the 101 come, then the close", async () => {
  // The relay let the frames go on at the first bytes Deno wrote once the handler had answered
  // 101: the previous request's answer, read late. Its meter then closed the connection at once,
  // with that answer and the 101 unread behind it: the client got nothing at all.
  const server = await startBridge();
  try {
    for (let k = 0; k < 5; k++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      const head = enc.encode(HEALTHZ + upgradeHead(`${B}/msg?userid=over${k}`));
      const frame = clientFrame(0x2, 300 * 1024);
      const bytes = new Uint8Array(head.length + frame.length);
      bytes.set(head);
      bytes.set(frame, head.length);
      await conn.write(bytes);
      const started = performance.now();
      const text = String.fromCharCode(...await readFor(conn, 3_000));
      assert.deepEqual(text.match(/HTTP\/1\.1 \d{3}/g), ["HTTP/1.1 200", "HTTP/1.1 101"], text);
      assert.ok(performance.now() - started < 2_000, "closed on the frame's header");
    }
  } finally {
    await server.close();
  }
});

Deno.test("a request behind an upgrade whose handler throws at once is answered after the 500", async () => {
  // A handler may answer without a promise, and a throw is Deno's to answer (500, onError); the
  // relay learnt of an upgrade's answer only from a promise, so what followed the head was held
  // for good.
  const server = serveGuarded(
    { port: 0, hostname: "127.0.0.1", limits: defaultConnectionLimits(1024) },
    (req) => {
      if (new URL(req.url).pathname === "/boom") throw new Error("boom");
      return new Response("ok");
    },
  );
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(enc.encode(upgradeHead("/boom") + HEALTHZ));
    assert.deepEqual(await readStatuses(conn, 2), ["500", "200"]);
    conn.close();
  } finally {
    await server.shutdown();
  }
});
