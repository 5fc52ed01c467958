// A chunked body whose framing Deno's parser refuses (a line ended by a bare LF, a size that is
// no hex number, a trailer that is no header line): the relay took a bare LF and passed on what
// followed, and Deno, which takes none in a body, failed it or waited on. The answer depended
// on timing: none at all and the connection closed (the bad bytes in the read with the head),
// a 408 after the body timeout (a bare LF Deno read as a trailer's start), or a 400 that said the
// client went away. Now each is a 400 that says the framing is invalid, after the answers before
// it, and the connection closed.

import assert from "node:assert/strict";
import { textXml } from "../helpers/agent.ts";
import { readStatuses } from "../helpers/raw_http.ts";
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
      await conn.write(latin1(part)).catch(() => {});
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

/** `text`'s characters as one byte each, so that a test can send any byte, "\xa0" too. */
const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

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

// Size lines as Deno 2.9's parser reads them, told by a bridge without the guard in the same test:
// the guard refused sizes of 13 to 16 hex digits, which Deno takes (and reads on), and passed a
// tab or another control byte around a size or in an extension, which Deno refuses: with the line
// in the read with its head it closed with no answer.
Deno.test("chunk size lines: the guard takes those Deno takes, answers 400 to the others", async (t) => {
  const direct = await startBridge({ env: { CONNECTION_GUARD: "off" } });
  const guarded = await startBridge();
  try {
    const xml = textXml("o-size-line", "gh_account", "hello", "9200000002");
    const size = enc.encode(xml).length.toString(16);
    // Closed after its answer, so that each exchange ends there.
    const head = "POST " + SEND_XML + " HTTP/1.1\r\nhost: x\r\ncontent-type: text/xml\r\n" +
      "connection: close\r\ntransfer-encoding: chunked\r\n\r\n";
    const body = (line: string) => `${line}\r\n${xml}\r\n0\r\n\r\n`;
    /** The last answer's status and its JSON error, if any, to `parts` on `port`. */
    const answer = async (port: number, parts: string[]) => {
      const { text, statuses } = await send(port, parts);
      const last = text.slice(text.lastIndexOf("HTTP/1.1 "));
      const json = /^content-type: application\/json/m.test(last)
        ? JSON.parse(last.slice(last.indexOf("\r\n\r\n") + 4)).error as string
        : undefined;
      return { status: statuses.at(-1), error: json };
    };
    const taken: [string, string][] = [
      ["spaces before and after the size", `  ${size}  `],
      ["spaces around the extension's ';'", `${size} ; name = "a b" ; x`],
      ["an extension's byte over 0x7f", `${size};n\xe9`],
      ["zeros before a size", `${"0".repeat(40)}${size}`],
      ["a size line of 4,096 bytes", `${size};${"e".repeat(4095 - size.length)}`],
    ];
    for (const [name, line] of taken) {
      await t.step(`taken: ${name}`, async () => {
        for (const port of [direct.port, guarded.port]) {
          const { status } = await answer(port, [head + body(line)]);
          assert.equal(status, "200", port === direct.port ? "Deno alone" : "guarded");
        }
      });
    }
    // A size Deno takes is read on: past what the route takes (57 KiB), the route's 413 (with
    // the rest of the body owed, the connection stays open: only the status is waited for).
    const long = "x".repeat(60 * 1024);
    for (const digits of ["1000000000000", "ffffffffffffffff", "0ffffffffffffffff"]) {
      await t.step(`taken: a size of ${digits.length} hex digits (${digits})`, async () => {
        for (const port of [direct.port, guarded.port]) {
          const conn = await Deno.connect({ hostname: "127.0.0.1", port });
          await conn.write(latin1(head + `${digits}\r\n${long}`));
          const statuses = await readStatuses(conn, 1);
          try {
            conn.close();
          } catch { /* closed by readStatuses, after 3 s without an answer */ }
          assert.deepEqual(statuses, ["413"], port === direct.port ? "Deno alone" : "guarded");
        }
      });
    }
    const refused: [string, string][] = [
      ["a size over 64 bits", "10000000000000000"],
      ["a tab after the size", `${size}\t`],
      ["a tab before the size", `\t${size}`],
      ["a tab before the extension's ';'", `${size}\t;name`],
      ["a tab after the extension's ';'", `${size};\tname`],
      ["a tab in an extension", `${size};name=\ta`],
      ["a control byte in an extension", `${size};na\x01me`],
      ["a DEL in an extension", `${size};na\x7fme`],
      ["a NUL after the size", `${size}\0`],
      ["a vertical tab after the size", `${size}\x0b`],
      ["a no-break space after the size", `${size}\xa0`],
    ];
    for (const [name, line] of refused) {
      await t.step(`refused: ${name}`, async () => {
        // Deno alone fails the handler's read once the body comes after its head (with its head
        // it closes with no answer): that is the reference. The guard answers both the same.
        assert.deepEqual(await answer(direct.port, [head, body(line)]), {
          status: "400",
          error: "Cannot read request body: its framing is invalid",
        }, "Deno alone");
        for (const parts of [[head + body(line)], [head, body(line)]]) {
          const { status, error } = await answer(guarded.port, parts);
          assert.equal(status, "400", `guarded, ${parts.length} writes`);
          assert.match(error ?? "", /framing is invalid/, `guarded, ${parts.length} writes`);
        }
      });
    }
  } finally {
    await guarded.close();
    await direct.close();
  }
});
