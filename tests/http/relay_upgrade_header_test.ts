// The relay starts measuring WebSocket frames when it reads `Upgrade: websocket` on a line of its
// own; the handler behind reads the header's joined value. A request with the header twice is
// no upgrade to Deno (`websocket, websocket`), and is answered as HTTP, but the relay then takes
// every later byte on the connection for frames: no link token goes in, and the next request is
// refused 421 (and any x-bridge-link it carries is read alone). With CONNECTION_GUARD=off the
// same bytes are served.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { readStatuses } from "../helpers/raw_http.ts";

const enc = new TextEncoder();
const HEALTHZ = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
const TWICE = "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\n" +
  "upgrade: websocket\r\nupgrade: websocket\r\n\r\n";

for (const guard of ["on", "off"] as const) {
  Deno.test(`an Upgrade header sent twice leaves the connection serving HTTP (CONNECTION_GUARD=${guard})`, async () => {
    const server = await startBridge({ env: { CONNECTION_GUARD: guard } });
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await conn.write(enc.encode(TWICE));
      assert.deepEqual(await readStatuses(conn, 1), ["200"], "answered as HTTP");
      // The connection's next request, after the answer: its own link again.
      await conn.write(enc.encode(HEALTHZ));
      assert.deepEqual(await readStatuses(conn, 1), ["200"]);
      try {
        conn.close();
      } catch { /* closed already */ }
    } finally {
      await server.close();
    }
  });
}
