// A WebSocket is opened with a GET (RFC 6455 §4.1). The route table serves HEAD wherever GET is,
// so a HEAD with the upgrade headers reached the agent socket's route, and Deno upgraded it: a
// 101 to a HEAD, an agent online through a request no client or proxy expects to switch
// protocols. Now it is 405, as a POST or an OPTIONS with those headers is, guard on or off.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { readStatuses } from "../helpers/raw_http.ts";

const enc = new TextEncoder();

for (const guard of ["on", "off"] as const) {
  Deno.test(`only a GET opens an agent's WebSocket (CONNECTION_GUARD=${guard})`, async () => {
    const server = await startBridge({ env: { CONNECTION_GUARD: guard } });
    try {
      for (const method of ["HEAD", "POST", "OPTIONS"]) {
        for (const path of ["/im_component/wx_official_account/msg?userid=a1", "/?userid=a1"]) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
          await conn.write(enc.encode(
            `${method} ${path} HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\n` +
              "upgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
              "sec-websocket-version: 13\r\n\r\n",
          ));
          assert.deepEqual(await readStatuses(conn, 1), ["405"], `${method} ${path}`);
          conn.close();
        }
      }
      assert.equal(server.bridge.hub.isOnline("a1"), false);
    } finally {
      await server.close();
    }
  });
}
