// Attacks found by an outside review of the connection guard: a request whose head ends lines
// with a bare LF (Deno's parser takes it, a CRLF scan did not, so frames could be measured from
// the wrong place: the guard now ends lines where Deno does), and bodies trickled a byte at a
// time holding every connection.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";

const enc = new TextEncoder();

async function readSome(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(4096);
  const n = await conn.read(buf).catch(() => null);
  return n === null ? "" : new TextDecoder().decode(buf.subarray(0, n));
}

Deno.test("the connection guard serves bare-LF heads as Deno does and makes room from trickled bodies", async (t) => {
  const server = await startBridge({ env: { MAX_CONNECTIONS: "4" } });
  const held: Deno.TcpConn[] = [];
  try {
    await t.step("a head whose lines end in a bare LF is served, and kept alive", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await conn.write(enc.encode("GET /healthz HTTP/1.1\nhost: x\n\n"));
      assert.match(await readSome(conn), /^HTTP\/1\.1 200/);
      await conn.write(enc.encode("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"));
      assert.match(await readSome(conn), /^HTTP\/1\.1 200/, "the next request on it");
      conn.close();
    });
    await t.step("bodies trickled on every connection do not lock others out", async () => {
      for (let i = 0; i < 4; i++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
        await conn.write(enc.encode(
          "POST /im_component/wx_official_account/send_xml HTTP/1.1\r\nhost: x\r\n" +
            "transfer-encoding: chunked\r\n\r\n1\r\n<\r\n",
        ));
        held.push(conn);
      }
      // Each keeps sending, so none of them is ever quiet.
      const drip = setInterval(() => {
        for (const conn of held) conn.write(enc.encode("1\r\nx\r\n")).catch(() => {});
      }, 200);
      try {
        await new Promise((r) => setTimeout(r, 1500));
        const res = await fetch(`${server.base}/healthz`);
        assert.equal(res.status, 200, "the oldest trickled body made room");
        await res.body?.cancel();
      } finally {
        clearInterval(drip);
      }
    });
  } finally {
    for (const conn of held) {
      try {
        conn.close();
      } catch { /* closed by the server */ }
    }
    await server.close();
  }
});
