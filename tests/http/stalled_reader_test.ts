// A client that stops reading: Deno's WebSocket has no timeout on a write, so its close frame and
// idle ping queue behind the unsent bytes and the socket stayed open for good, still online to
// the hub. The connection guard closes a connection whose client takes none of what is written
// to it for `stalledWriteMs`.

import assert from "node:assert/strict";
import { defaultConnectionLimits, serveGuarded } from "../../src/http/connections.ts";

const enc = new TextEncoder();
const UPGRADE = "GET /msg HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n" +
  "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";

Deno.test("the connection guard closes a WebSocket whose client stopped reading", async (t) => {
  let closed = () => {};
  const socketClosed = new Promise<void>((r) => closed = r);
  const server = serveGuarded({
    port: 0,
    hostname: "127.0.0.1",
    limits: { ...defaultConnectionLimits(1024), stalledWriteMs: 1_000 },
  }, (req) => {
    if (req.headers.get("upgrade") !== "websocket") return new Response("ok");
    const { socket, response } = Deno.upgradeWebSocket(req);
    const chunk = "x".repeat(64 * 1024);
    // Far more than the kernel buffers between the two ends hold, so writes stop going out.
    socket.onopen = () => {
      while (socket.bufferedAmount < 32 * 1024 * 1024) socket.send(chunk);
    };
    socket.onclose = () => closed();
    socket.onerror = () => {};
    return response;
  });
  const reader = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    await reader.write(enc.encode(UPGRADE));
    // The client reads nothing from here on.
    await t.step("the server's socket is closed", async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const gaveUp = new Promise<"open">((r) => timer = setTimeout(() => r("open"), 10_000));
      const outcome = await Promise.race([socketClosed.then(() => "closed" as const), gaveUp]);
      clearTimeout(timer);
      assert.equal(outcome, "closed");
    });
    await t.step("the others are still served", async () => {
      const res = await fetch(`http://127.0.0.1:${server.addr.port}/healthz`);
      assert.equal(await res.text(), "ok");
    });
  } finally {
    reader.close();
    await server.shutdown();
  }
});
