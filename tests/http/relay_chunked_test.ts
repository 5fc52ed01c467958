// A chunked body whose framing Deno's parser refuses (a line ended by a bare LF, a size that is
// no hex number, a trailer that is no header line): the relay took a bare LF and passed on what
// followed, and Deno, which takes none in a body, failed it or waited on. The answer depended
// on timing: none at all and the connection closed (the bad bytes in the read with the head),
// a 408 after the body timeout (a bare LF Deno read as a trailer's start), or a 400 that said the
// client went away. Now each is a 400 that says the framing is invalid, after the answers before
// it, and the connection closed.

import assert from "node:assert/strict";
import { textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const enc = new TextEncoder();
const SEND_XML = "/im_component/wx_official_account/send_xml";
const HEALTHZ = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

/**
 * Writes `parts` (a pause after each but the last), reads until the server closes; the statuses
 * and whether the server closed (false: it held the connection 3 s, and the test closed it).
 */
async function send(
  port: number,
  parts: string[],
): Promise<{ statuses: string[]; closed: boolean; text: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, 3_000);
  let text = "";
  try {
    for (const [k, part] of parts.entries()) {
      // The server may close before the last part (it refused an earlier one).
      await conn.write(enc.encode(part)).catch(() => {});
      if (k < parts.length - 1) await new Promise((r) => setTimeout(r, 30));
    }
    const buf = new Uint8Array(16 * 1024);
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
  const statuses = (text.match(/HTTP\/1\.1 \d{3}/g) ?? []).map((s) => s.slice(9));
  return { statuses, closed: !timedOut, text };
}

/** A trailer line of `length` bytes, its CRLF not counted. */
const trailer = (length: number) => `x-pad: ${"p".repeat(length - 7)}`;

Deno.test("a chunked body Deno's parser refuses is answered 400, whatever the timing", async (t) => {
  const server = await startBridge();
  try {
    const xml = textXml("o-chunked", "gh_account", "hello", "9200000001");
    const size = enc.encode(xml).length.toString(16);
    const bodies: [string, string][] = [
      ["a bare LF ending every line", `${size}\n${xml}\n0\n\n`],
      ["a bare LF ending a size line", `${size}\n${xml}\r\n0\r\n\r\n`],
      ["a bare LF after a chunk's data", `${size}\r\n${xml}\n0\r\n\r\n`],
      ["a bare LF ending the last chunk's line", `${size}\r\n${xml}\r\n0\n\r\n`],
      ["a bare LF as the empty line after the last chunk", `${size}\r\n${xml}\r\n0\r\n\n`],
      ["a CR alone in a size line", `${size}\r\r\n${xml}\r\n0\r\n\r\n`],
      ["bytes between a chunk's data and its CRLF", `${size}\r\n${xml}x\r\n0\r\n\r\n`],
      ["a size that is no hex number", `z${size}\r\n${xml}\r\n0\r\n\r\n`],
      ["a trailer that is no header line", `${size}\r\n${xml}\r\n0\r\nno colon\r\n\r\n`],
    ];
    const head = (path: string) =>
      `POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\n` +
      "transfer-encoding: chunked\r\n\r\n";
    for (const [name, body] of bodies) {
      await t.step(name, async () => {
        for (
          const [how, parts, statuses] of [
            // The body in Deno's read with its head: it closed the connection with no answer.
            ["with its head", [head(SEND_XML) + body], ["400"]],
            ["after its head", [head(SEND_XML), body], ["400"]],
            ["behind another request", [HEALTHZ + head(SEND_XML) + body], ["200", "400"]],
            ["with a request behind it", [head(SEND_XML) + body + HEALTHZ], ["400"]],
            // A route that reads no body answers as it does; the connection still closes.
            ["to a route that reads no body", [head("/nope"), body], ["404"]],
          ] as [string, string[], string[]][]
        ) {
          const { text, ...answer } = await send(server.port, parts);
          assert.deepEqual(answer, { statuses, closed: true }, how);
          // Why, whether the guard answered before the handler started or its read failed.
          // As JSON, as the bridge's other errors are (the guard's own answer was plain text).
          if (statuses.at(-1) === "400") {
            const last = text.slice(text.lastIndexOf("HTTP/1.1 "));
            assert.match(last, /^content-type: application\/json/m, how);
            const { error } = JSON.parse(last.slice(last.indexOf("\r\n\r\n") + 4));
            assert.match(error, /framing/, how);
          }
        }
      });
    }
    // The guard refused a trailer line over 4 KiB, which Deno takes: 400, or no answer. Deno
    // takes 64 KiB of trailers, their CRLFs and the empty line after them counted (more, and it
    // waits on: the body timeout's 408).
    for (
      const [name, trailers] of [
        ["one", "x-trailer: 1\r\n"],
        ["of 8 KiB", `${trailer(8192)}\r\n`],
        ["of 64 KiB in all", `${trailer(40_000)}\r\n${trailer(25_530)}\r\n`],
      ]
    ) {
      await t.step(
        `a chunked body as Deno reads it is still served: trailers ${name}`,
        async () => {
          const body = `${size}\r\n${xml}\r\n0\r\n${trailers}\r\n`;
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
          const timer = setTimeout(() => conn.close(), 3_000);
          try {
            await conn.write(enc.encode(head(SEND_XML) + body + HEALTHZ));
            const buf = new Uint8Array(16 * 1024);
            let text = "";
            while ((text.match(/HTTP\/1\.1 \d{3}/g) ?? []).length < 2) {
              const n = await conn.read(buf).catch(() => null);
              if (n === null) break;
              text += new TextDecoder().decode(buf.subarray(0, n));
            }
            assert.deepEqual(text.match(/HTTP\/1\.1 \d{3}/g)?.map((s) => s.slice(9)), [
              "200",
              "200",
            ]);
          } finally {
            clearTimeout(timer);
            conn.close();
          }
        },
      );
    }
  } finally {
    await server.close();
  }
});
