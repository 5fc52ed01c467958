// A client that half-closes (shutdown(SHUT_WR), `nc -N`) once its request is sent: Deno.serve
// drops a connection when it reads its end, with the answer under way, so a slow handler's
// answer never went back through the guard, though a WeChat callback it answered was stored.

import assert from "node:assert/strict";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import type { Store } from "../../src/core/store.ts";
import { defaultConnectionLimits, serveGuarded } from "../../src/http/connections.ts";
import { textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const enc = new TextEncoder();
const SEND_XML = "/im_component/wx_official_account/send_xml";

/** Writes `bytes`, half-closes, and reads everything until the server closes (3 s at most). */
async function sendAndHalfClose(port: number, bytes: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 3_000);
  try {
    await conn.write(enc.encode(bytes));
    await conn.closeWrite();
    const buf = new Uint8Array(16 * 1024);
    let text = "";
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return text;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/** A memory store whose commits of WeChat messages take `delayMs` (a slow disk, a far Redis). */
function slowStore(delayMs: number): Store {
  const store = createMemoryStore({
    companyId: "",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 60_000,
  });
  const accept = store.acceptInbound.bind(store);
  store.acceptInbound = async (items, presence) => {
    await new Promise((r) => setTimeout(r, delayMs));
    return await accept(items, presence);
  };
  return store;
}

/** A POST of WeChat XML to send_xml, as one string of bytes. */
function callback(from: string, msgId: string): string {
  const xml = textXml(from, "gh_account", `hello ${msgId}`, msgId);
  return `POST ${SEND_XML} HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\n` +
    `content-length: ${enc.encode(xml).length}\r\n\r\n${xml}`;
}

Deno.test("a client that half-closes after its request still gets its answer", async (t) => {
  const store = slowStore(300);
  const server = await startBridge({ store });
  try {
    await t.step("a plain request", async () => {
      const answer = await sendAndHalfClose(
        server.port,
        "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
      );
      assert.match(answer, /^HTTP\/1\.1 200 /, answer);
    });
    await t.step("a WeChat callback the store is slow to commit: success, and stored", async () => {
      const answer = await sendAndHalfClose(server.port, callback("o-half-1", "9100000001"));
      assert.match(answer, /^HTTP\/1\.1 200 [^]*\r\n\r\nsuccess$/, answer);
      assert.notEqual(await store.getContact("o-half-1"), null);
    });
    await t.step("two pipelined callbacks, then the half-close: both answered", async () => {
      const answer = await sendAndHalfClose(
        server.port,
        callback("o-half-2", "9100000002") + callback("o-half-3", "9100000003"),
      );
      assert.equal(answer.match(/\r\n\r\nsuccess/g)?.length, 2, answer);
      assert.notEqual(await store.getContact("o-half-2"), null);
      assert.notEqual(await store.getContact("o-half-3"), null);
    });
    // The end came while the relay waited to know whether the upgrade was taken: it was passed on
    // at once, and Deno dropped the connection with both answers owed.
    await t.step(
      "a callback, then an upgrade not taken (404), then the half-close: both answered",
      async () => {
        const upgrade =
          "GET /nope HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n" +
          "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
        for (
          const [before, statuses] of [["", ["404"]], [callback("o-half-4", "9100000004"), [
            "200",
            "404",
          ]]] as const
        ) {
          const answer = await sendAndHalfClose(server.port, before + upgrade);
          assert.deepEqual(
            answer.match(/HTTP\/1\.1 \d{3}/g)?.map((s) => s.slice(9)),
            statuses,
            answer,
          );
        }
      },
    );
  } finally {
    await server.close();
  }
});

Deno.test("a half-closed client that reads nothing does not hold its connection", async () => {
  const server = serveGuarded({
    port: 0,
    hostname: "127.0.0.1",
    limits: { ...defaultConnectionLimits(1024), stalledWriteMs: 1_000 },
  }, async () => {
    await new Promise((r) => setTimeout(r, 100));
    // Far more than the kernel buffers between the two ends hold.
    return new Response(new Uint8Array(32 * 1024 * 1024));
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await conn.write(enc.encode("GET /big HTTP/1.1\r\nhost: x\r\n\r\n"));
    await conn.closeWrite();
    // The client reads nothing; the stalled write closes the connection.
    const deadline = Date.now() + 10_000;
    while (server.connections > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(server.connections, 0);
  } finally {
    conn.close();
    await server.shutdown();
  }
});

Deno.test("a half-close behind a request cut short still lets the whole ones before it be answered", async (t) => {
  const server = serveGuarded({
    port: 0,
    hostname: "127.0.0.1",
    limits: defaultConnectionLimits(1024),
  }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/slow") await new Promise((r) => setTimeout(r, 300));
    return new Response(`answered ${path}`);
  });
  const slow = "GET /slow HTTP/1.1\r\nhost: x\r\n\r\n";
  try {
    for (
      const [name, rest] of [
        ["a head cut short", "GET /next HTTP/1.1\r\nhost"],
        ["a request line's first byte", "G"],
        ["a body cut short", "POST /next HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc"],
        [
          "chunks without their last empty line",
          "POST /next HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
        ],
      ] as const
    ) {
      await t.step(name, async () => {
        const answer = await sendAndHalfClose(server.addr.port, slow + rest);
        assert.match(answer, /^HTTP\/1\.1 200 [^]*\r\n\r\nanswered \/slow(HTTP|$)/, answer);
        const deadline = Date.now() + 3_000;
        while (server.connections > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.equal(server.connections, 0);
      });
    }
  } finally {
    await server.shutdown();
  }
});
