// A buggy or hostile agent program that writes tiny frames in a tight loop (8 bytes each: a
// masked "{}") on one socket. Every frame past the rate (10 a second, bursts of 20) is answered
// with its own -1 "Too many messages" written straight to the socket (Session#answer), which
// never looks at bufferedAmount; the hub's 8 MiB check runs only for frames the hub writes. The
// -1s pile up unsent, in the process's memory: measured, one socket took a spawned main.ts from
// 90 MB to 800 MB resident in 5 s (JS heap steady at ~18 MB: the queued writes), four sockets of
// one agent past 2.3 GB, and an agent may open 8. Expected: the flood costs bounded memory (the
// socket closed, or the refusals not queued past a bound), as a stalled reader's does.

import assert from "node:assert/strict";
import { startMain } from "../helpers/main_process.ts";
import { startBridge } from "../helpers/server.ts";
import { connectAgent } from "../helpers/agent.ts";

const MB = 1024 * 1024;
const FLOOD_MS = 5_000;
/** What a few sockets' worth of honest traffic costs is far below this. */
const MAX_GROWTH = 250 * MB;

Deno.test("an agent socket flooded with tiny frames keeps the bridge's memory bounded (spawned main.ts, VmHWM)", async () => {
  const bridge = await startMain({});
  const port = Number(new URL(bridge.base).port);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let reading = true;
  try {
    const head = "GET /im_component/wx_official_account/msg?userid=flooder HTTP/1.1\r\n" +
      "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    await conn.write(new TextEncoder().encode(head));
    const first = new Uint8Array(4096);
    const n = await conn.read(first);
    assert.match(new TextDecoder().decode(first.subarray(0, n ?? 0)), /^HTTP\/1\.1 101/);
    await new Promise((r) => setTimeout(r, 300));
    const before = bridge.peakRss();

    // The client reads everything it is sent, as fast as it comes: no stalled reader here.
    const drain = (async () => {
      const buf = new Uint8Array(1 << 20);
      while (reading) {
        try {
          if (await conn.read(buf) === null) return;
        } catch {
          return;
        }
      }
    })();
    // A masked text frame "{}" (mask 0), 8192 of them per write.
    const frame = [0x81, 0x82, 0, 0, 0, 0, 0x7b, 0x7d];
    const batch = new Uint8Array(frame.length * 8192);
    for (let i = 0; i < 8192; i++) batch.set(frame, i * frame.length);
    const started = Date.now();
    while (Date.now() - started < FLOOD_MS) {
      try {
        await conn.write(batch);
      } catch {
        break; // closed by the bridge: what a bound may do
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    const growth = bridge.peakRss() - before;
    reading = false;
    try {
      conn.close();
    } catch { /* closed already */ }
    await drain;
    assert.ok(
      growth < MAX_GROWTH,
      `one flooding socket grew the bridge by ${Math.round(growth / MB)} MB resident ` +
        `(at most ${MAX_GROWTH / MB} MB expected)`,
    );
  } finally {
    reading = false;
    try {
      conn.close();
    } catch { /* closed already */ }
    await bridge.stop();
  }
});

Deno.test("a socket that writes on far past its rate, binary frames too, is closed 1008; the agent's other socket stays", async () => {
  const server = await startBridge();
  const B = "/im_component/wx_official_account";
  const flooder = await connectAgent(`${server.wsBase}${B}/msg?userid=flood2`);
  const calm = await connectAgent(`${server.wsBase}${B}/msg?userid=flood2`);
  try {
    // Binary frames were answered a -1 each before the rate was looked at.
    const bytes = new Uint8Array([1, 2, 3]);
    for (let i = 0; i < 1_000; i++) flooder.socket.send(bytes);
    const closed = await Promise.race([
      flooder.closed,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("the flooding socket was not closed")), 5_000)
      ),
    ]);
    // 1008 with its reason when the close frame arrives; the frames still unread when the
    // bridge closes make the kernel reset the connection, and the client may see only that.
    if (closed.wasClean) {
      assert.equal(closed.code, 1008, closed.reason);
      assert.match(closed.reason, /too many messages/);
    }
    const refused = flooder.received.filter((e) => e.result.code === -1);
    assert.ok(refused.length < 600, `${refused.length} answers to a flood, not one a frame`);
    // The agent's other socket is served as before.
    calm.send({
      data: { msg_type: "text", contact_id: "nobody", client_id: "c1", msg: { content: "x" } },
      result: { code: 1001, message: "common" },
    });
    await calm.waitFor((e) => e.data["client_id"] === "c1");
  } finally {
    await calm.close();
    await server.close();
  }
});
