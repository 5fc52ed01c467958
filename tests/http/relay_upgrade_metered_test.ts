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

/** Opens a raw upgrade with `upgradeLines`; resolves to the status code of the answer. */
async function upgrade(port: number, upgradeLines: string[]): Promise<[Deno.Conn, string]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(
    `GET ${B}/msg?userid=meter HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: Upgrade\r\n` +
      upgradeLines.map((l) => `${l}\r\n`).join("") +
      "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n",
  ));
  const buf = new Uint8Array(4096);
  let text = "";
  while (!text.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return [conn, text.slice(9, 12)];
}

/** Sends the header of a masked binary frame of `length` bytes; true if the peer then closed. */
async function closedAfterHeader(conn: Deno.Conn, length: number): Promise<boolean> {
  const header = new Uint8Array(14);
  header[0] = 0x82;
  header[1] = 0x80 | 127;
  new DataView(header.buffer).setBigUint64(2, BigInt(length));
  header.set([1, 2, 3, 4], 10);
  await conn.write(header);
  const buf = new Uint8Array(4096);
  const timer = setTimeout(() => conn.close(), 3_000);
  try {
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return true;
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
        const started = performance.now();
        assert.equal(await closedAfterHeader(conn, 300 * 1024), true);
        assert.ok(performance.now() - started < 2_900, "closed by the meter, not the timeout");
        try {
          conn.close();
        } catch { /* closed already */ }
      });
    }
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
