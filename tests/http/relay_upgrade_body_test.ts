// A head with `Upgrade: websocket` and a body (a Content-Length, chunks): the relay held the body
// behind the head as frames-or-a-request until the answer's status was known, while the handler
// behind waited for that body to answer. Neither ever moved; the connection was held for good,
// busy with no body the relay knew of, so no timeout, no eviction and no client close freed its
// place. Deno never upgrades such a request (it answers 400 to one that also says `Connection:
// upgrade`), so the relay refuses it as a head it will not frame. CONNECTION_GUARD=off is the
// reference, where the route answers.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { readStatuses } from "../helpers/raw_http.ts";

const enc = new TextEncoder();
const SEND = "/im_component/wx_official_account/send";
const BODY = JSON.stringify({ userid: "a", touser: "f", msgtype: "text", text: { content: "hi" } });

/** A POST to the route that reads its body, with `Upgrade: websocket` and `framing`. */
function upgradeWithBody(framing: "length" | "chunked"): string {
  const head = `POST ${SEND} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n` +
    "content-type: application/json\r\n";
  return framing === "length"
    ? `${head}content-length: ${BODY.length}\r\n\r\n${BODY}`
    : `${head}transfer-encoding: chunked\r\n\r\n${
      BODY.length.toString(16)
    }\r\n${BODY}\r\n0\r\n\r\n`;
}

for (const guard of ["on", "off"] as const) {
  Deno.test(`an upgrade head with a body is answered, not held (CONNECTION_GUARD=${guard})`, async (t) => {
    const server = await startBridge({ env: { CONNECTION_GUARD: guard } });
    try {
      for (const framing of ["length", "chunked"] as const) {
        for (const split of [false, true]) {
          await t.step(
            `${framing}, the body ${split ? "in a read of its own" : "with the head"}`,
            async () => {
              const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
              const bytes = upgradeWithBody(framing);
              const at = split ? bytes.indexOf("\r\n\r\n") + 4 : bytes.length;
              await conn.write(enc.encode(bytes.slice(0, at)));
              if (split) {
                await new Promise((r) => setTimeout(r, 50));
                await conn.write(enc.encode(bytes.slice(at)));
              }
              // readStatuses gives up after 3 s: a held connection answers nothing.
              const statuses = await readStatuses(conn, 1);
              // The guard refuses the head (400); without it the route refuses the message (400).
              assert.deepEqual(statuses, ["400"]);
              try {
                conn.close();
              } catch { /* closed already */ }
            },
          );
        }
      }
    } finally {
      await server.close();
    }
  });
}
