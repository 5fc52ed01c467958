// RFC 9112 §6.3's smuggling requests sent through docs/production.md's nginx, to a bridge with
// the connection guard and without it: nginx refuses each or passes it on as it framed it, and
// the request hidden behind it is answered only where nginx read one. Directly, the guard
// refuses each (tests/http/relay_framing_test.ts).

import assert from "node:assert/strict";
import { startNginx } from "../helpers/nginx.ts";
import { readStatuses } from "../helpers/raw_http.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const HIDDEN = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
const POST = `POST ${B}/send_xml HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\n`;
const CHUNKS = "3\r\nabc\r\n0\r\n\r\n";

/** Each request, and the statuses nginx answers it with (then closes, unless it waits for a
 * body: the hidden request is in it). */
const CASES: [string, string, string[]][] = [
  ["a 16-digit Content-Length", `${POST}content-length: 1000000000000000\r\n\r\n`, ["413"]],
  [
    "Transfer-Encoding beside Content-Length",
    `${POST}content-length: 3\r\ntransfer-encoding: chunked\r\n\r\n${CHUNKS}`,
    ["400"],
  ],
  [
    "Transfer-Encoding: chunked, identity",
    `${POST}transfer-encoding: chunked, identity\r\n\r\n${CHUNKS}`,
    ["501"],
  ],
  [
    "two Transfer-Encoding lines",
    `${POST}transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\n${CHUNKS}`,
    ["400"],
  ],
  [
    "a folded line",
    `${POST}transfer-encoding: identity\r\n chunked\r\ncontent-length: 3\r\n\r\n${CHUNKS}`,
    ["400"],
  ],
  ["two Content-Lengths", `${POST}content-length: 3\r\ncontent-length: 5\r\n\r\nabcde`, ["400"]],
  ["a NUL in a header", "GET /healthz HTTP/1.1\r\nhost: x\r\nx-a: b\0c\r\n\r\n", ["400"]],
  // nginx takes a bare LF and passes the request on with CRLFs: both are answered.
  ["bare LFs", "GET /healthz HTTP/1.1\nhost: x\n\n", ["200", "200"]],
];

for (const guard of ["on", "off"]) {
  Deno.test(`behind nginx, with the guard ${guard}, smuggling requests are refused or framed as nginx framed them`, async (t) => {
    const bridge = await startBridge({ env: { CONNECTION_GUARD: guard } });
    const nginx = await startNginx(bridge.port);
    try {
      if (nginx === null) return; // no nginx, outside CI
      const port = Number(new URL(nginx.base).port);
      for (const [name, request, statuses] of CASES) {
        await t.step(name, async () => {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          try {
            await conn.write(new TextEncoder().encode(request + HIDDEN));
            const waits = statuses[0] === "413" || statuses.length === 2;
            assert.deepEqual(await readStatuses(conn, statuses.length + (waits ? 0 : 1)), statuses);
          } finally {
            try {
              conn.close();
            } catch { /* closed by readStatuses' timer */ }
          }
        });
      }
    } finally {
      await nginx?.stop();
      await bridge.close();
    }
  });
}
