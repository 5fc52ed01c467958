// Deno.upgradeWebSocket upgrades any request whose Upgrade value contains "websocket": the
// header twice, or a list ("h2c, websocket"). The relay must meter the frames of every socket
// Deno upgrades (a message over 256 KiB closes it before Deno buffers it), so it reads the header
// the same way; before, only a line holding "websocket" alone started the meter, and a socket
// upgraded with "h2c, websocket" took frames of any size.

import assert from "node:assert/strict";
import { defaultConnectionLimits, serveGuarded } from "../../src/http/connections.ts";
import { startBridge } from "../helpers/server.ts";

const enc = new TextEncoder();
const B = "/im_component/wx_official_account";

/**
 * Opens a raw upgrade with `upgradeLines`, each line ending in `eol`; resolves to the status
 * code of the answer.
 */
async function upgrade(
  port: number,
  upgradeLines: string[],
  eol = "\r\n",
): Promise<[Deno.Conn, string]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const lines = [
    `GET ${B}/msg?userid=meter HTTP/1.1`,
    "host: 127.0.0.1",
    "connection: Upgrade",
    ...upgradeLines,
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version: 13",
    "",
  ];
  await conn.write(enc.encode(lines.map((line) => line + eol).join("")));
  const buf = new Uint8Array(4096);
  let text = "";
  while (!text.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return [conn, text.slice(9, 12)];
}

/**
 * Sends the header of a masked binary frame of `length` bytes; true if the peer then closed
 * (within 3 s: false if the test's own timer had to close it).
 */
async function closedAfterHeader(conn: Deno.Conn, length: number): Promise<boolean> {
  const header = new Uint8Array(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  new DataView(header.buffer).setBigUint64(2, BigInt(length));
  header.set([1, 2, 3, 4], 10);
  await conn.write(header);
  const buf = new Uint8Array(4096);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, 3_000);
  try {
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return !timedOut;
    }
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

const ODD = [
  ["upgrade: h2c, websocket"],
  ["upgrade: websocket, h2c"],
  ["upgrade: websocket", "upgrade: websocket"],
];

Deno.test("every socket Deno upgrades has its frames metered by the relay", async (t) => {
  // A handler that upgrades whatever Deno.upgradeWebSocket takes, as a route might.
  const server = serveGuarded(
    { port: 0, hostname: "127.0.0.1", limits: defaultConnectionLimits(1024) },
    (req) => Deno.upgradeWebSocket(req).response,
  );
  try {
    for (const lines of [["upgrade: websocket"], ...ODD]) {
      await t.step(`${lines.join(" / ")}: a 300 KiB frame closes the socket`, async () => {
        const [conn, status] = await upgrade(server.addr.port, lines);
        assert.equal(status, "101", `Deno upgrades it (answered ${status})`);
        assert.equal(await closedAfterHeader(conn, 300 * 1024), true);
        try {
          conn.close();
        } catch { /* closed already */ }
      });
    }
    await t.step("a head of bare LFs: a 300 KiB frame closes the socket", async () => {
      // Deno takes a bare LF for a line's end, and so does the guard: the frames after the
      // head are measured from the byte where Deno starts reading them.
      const [conn, status] = await upgrade(server.addr.port, ["upgrade: websocket"], "\n");
      assert.equal(status, "101", `Deno upgrades it (answered ${status})`);
      assert.equal(await closedAfterHeader(conn, 300 * 1024), true);
      try {
        conn.close();
      } catch { /* closed already */ }
    });
  } finally {
    await server.shutdown();
  }
});

Deno.test("the bridge refuses odd Upgrade values 426, and the connection goes on as HTTP", async (t) => {
  const server = await startBridge();
  try {
    for (const lines of ODD) {
      await t.step(lines.join(" / "), async () => {
        const [conn, status] = await upgrade(server.port, lines);
        assert.equal(status, "426");
        await conn.write(enc.encode("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"));
        const buf = new Uint8Array(4096);
        const n = await conn.read(buf);
        assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 200/);
        conn.close();
      });
    }
  } finally {
    await server.close();
  }
});
