// A connection past the cap when every open one is working (no client to close in its place) is
// answered 503 with Retry-After and closed. The guard's answer was plain text, where the bridge's
// other errors are JSON; now it is the bridge's JSON error, as the router answers one.

import assert from "node:assert/strict";
import { defaultConnectionLimits, serveGuarded } from "../../src/http/connections.ts";
import { readStatuses } from "../helpers/raw_http.ts";

const enc = new TextEncoder();

Deno.test("a connection past the cap, every one working, is answered the JSON 503", async () => {
  let started!: () => void;
  const running = new Promise<void>((resolve) => started = resolve);
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  const limits = { ...defaultConnectionLimits(1024), maxConnections: 1 };
  const server = serveGuarded({ port: 0, hostname: "127.0.0.1", limits }, async () => {
    started();
    await held;
    return new Response("done");
  });
  const port = server.addr.port;
  const busy = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    // A request sent whole and waiting on its answer: its connection is never closed for room.
    await busy.write(enc.encode("GET /held HTTP/1.1\r\nhost: x\r\n\r\n"));
    await running;
    const refused = await Deno.connect({ hostname: "127.0.0.1", port });
    const timer = setTimeout(() => refused.close(), 3_000);
    let text = "";
    const buf = new Uint8Array(4096);
    while (true) {
      const n = await refused.read(buf).catch(() => null);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    clearTimeout(timer);
    try {
      refused.close();
    } catch { /* closed by the timer */ }
    const [head, body] = text.split("\r\n\r\n");
    assert.match(head!, /^HTTP\/1\.1 503 Service Unavailable\r\n/, text);
    assert.match(head!, /^retry-after: 1$/m, text);
    assert.match(head!, /^connection: close$/m, text);
    assert.match(head!, /^content-type: application\/json; charset=utf-8$/m, text);
    assert.match(head!, /^cache-control: no-store$/m, text);
    assert.match(head!, new RegExp(`^content-length: ${enc.encode(body).length}$`, "m"), text);
    const message = "Too many connections: retry";
    assert.deepEqual(JSON.parse(body!), { error: message, result: { code: -1, message } });
    // The connection that held the place is served as ever.
    release();
    assert.deepEqual(await readStatuses(busy, 1), ["200"]);
  } finally {
    release();
    try {
      busy.close();
    } catch { /* closed by readStatuses */ }
    await server.shutdown();
  }
});
