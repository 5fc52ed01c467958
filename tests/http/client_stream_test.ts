// ClientStream follows a client's bytes through the relay: it must find where each request
// ends (declared length or chunked) so that an upgrade's frames are measured from their first
// byte, however the bytes are split into reads.

import assert from "node:assert/strict";
import { ClientStream } from "../../src/http/client_stream.ts";
import { createFrameMeter } from "../../src/http/ws_frames.ts";
import { seededRandom } from "../helpers/seeded_random.ts";

const encoder = new TextEncoder();
const REQUESTS = "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
  "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n" +
  "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz" +
  "GET /msg HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

/** A masked client frame with `length` payload bytes (the payload itself left out). */
function frameHeader(length: number, opcode = 1, fin = true): Uint8Array {
  const first = (fin ? 0x80 : 0) | opcode;
  if (length < 126) return new Uint8Array([first, 0x80 | length, 1, 2, 3, 4]);
  if (length < 65536) {
    return new Uint8Array([first, 0x80 | 126, length >> 8, length & 255, 1, 2, 3, 4]);
  }
  const bytes = new Uint8Array(14);
  bytes[0] = first;
  bytes[1] = 0x80 | 127;
  new DataView(bytes.buffer).setBigUint64(2, BigInt(length));
  return bytes;
}

Deno.test("ClientStream finds the upgrade after chunked and sized bodies", async (t) => {
  await t.step("in one read", () => {
    const stream = new ClientStream(1000);
    assert.equal(stream.feed(encoder.encode(REQUESTS)), true);
    assert.equal(stream.upgrading, true);
  });
  await t.step("one byte at a time", () => {
    const stream = new ClientStream(1000);
    for (const byte of encoder.encode(REQUESTS)) stream.feed(new Uint8Array([byte]));
    assert.equal(stream.upgrading, true);
  });
  await t.step("split in two at every byte", () => {
    const bytes = encoder.encode(REQUESTS);
    for (let at = 1; at < bytes.length; at++) {
      const stream = new ClientStream(1000);
      assert.equal(stream.feed(bytes.slice(0, at)), true);
      assert.equal(stream.feed(bytes.slice(at)), true);
      assert.equal(stream.upgrading, true, `split at ${at}`);
    }
  });
  await t.step("a head of bare LFs split across reads ends where Deno's parser ends it", () => {
    // Its empty line is the bare LF after host's: what follows is the next request's head.
    const bytes = encoder.encode(
      "GET /a HTTP/1.1\nhost: x\n\nGET /b HTTP/1.1\nupgrade: websocket\n\r\n",
    );
    for (let at = 1; at < bytes.length; at++) {
      const stream = new ClientStream(1000);
      const ends: number[] = [];
      assert.equal(stream.feed(bytes.slice(0, at), ends), true);
      const second: number[] = [];
      assert.equal(stream.feed(bytes.slice(at), second), true);
      assert.deepEqual([...ends, ...second.map((end) => end + at)], [16, 41], `split at ${at}`);
      assert.equal(stream.heads, 2, `split at ${at}`);
      assert.equal(stream.upgrading, true, `split at ${at}`);
    }
  });
  await t.step("a body that mentions Upgrade: websocket is a body", () => {
    const stream = new ClientStream(1000);
    const body = "\r\nUpgrade: websocket\r\n\r\n";
    stream.feed(
      encoder.encode(`POST /send HTTP/1.1\r\nContent-Length: ${body.length}\r\n\r\n${body}`),
    );
    assert.equal(stream.upgrading, false);
  });
  await t.step("what follows an upgrade head waits for its answer", () => {
    const head = "GET /msg HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
    const stream = new ClientStream(1000);
    const ends: number[] = [];
    assert.equal(stream.feed(encoder.encode(head + "GET /b HTTP/1.1\r\n\r\n"), ends), true);
    assert.deepEqual([stream.awaiting, stream.heldFrom, stream.heads], [true, head.length, 1]);
    assert.deepEqual(ends, [19], "the request behind is not read yet");
    stream.accepted();
    assert.equal(stream.awaiting, false);
    assert.equal(stream.feed(frameHeader(1001)), false, "frames are measured from the first");
  });
  await t.step("a head too large says where Deno's parser is in the part passed on", () => {
    const big = "x".repeat(70_000);
    for (
      const [first, tail] of [
        ["", "none"],
        ["GET /a HTTP/1.1\r\nx-a: 1\r\n", "lf"],
        ["GET /a HTTP/1.1\r\nx-a: 1\r", "cr"],
        ["GET /a HTTP/1.1\r\nx-a: 1", "mid"],
        ["GET /a HTTP/1.1\r\nx-a: 1\r\n\r", null],
        ["GET /a HTT", null],
      ] as const
    ) {
      const stream = new ClientStream(1000);
      if (first !== "") assert.equal(stream.feed(encoder.encode(first)), true);
      assert.equal(
        stream.feed(encoder.encode(`${first === "" ? "GET / HTTP/1.1\r\n" : ""}${big}`)),
        false,
      );
      assert.deepEqual(
        [stream.headTooLarge, stream.refusedTail],
        [true, tail],
        JSON.stringify(first),
      );
    }
  });
  await t.step("a refused upgrade goes back to HTTP", () => {
    const stream = new ClientStream(1000);
    stream.feed(encoder.encode("GET /msg HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"));
    stream.refused();
    stream.feed(encoder.encode("GET /healthz HTTP/1.1\r\n\r\n"));
    assert.equal(stream.upgrading, false);
  });
});

Deno.test("createFrameMeter() stops a message over the limit by its header", async (t) => {
  await t.step("frames up to the limit pass, one over it does not", () => {
    const meter = createFrameMeter(1000);
    assert.equal(meter.feed(frameHeader(1000)), true);
    assert.equal(meter.feed(new Uint8Array(1000)), true);
    assert.equal(meter.feed(frameHeader(1001)), false);
  });
  await t.step("a 60 MB frame is refused before any of its payload", () => {
    assert.equal(createFrameMeter(256 * 1024).feed(frameHeader(60 * 1024 * 1024)), false);
  });
  await t.step("fragments count together; control frames between them do not", () => {
    const meter = createFrameMeter(1000);
    assert.equal(meter.feed(frameHeader(600, 1, false)), true);
    assert.equal(meter.feed(new Uint8Array(600)), true);
    assert.equal(meter.feed(frameHeader(4, 9)), true); // a ping
    assert.equal(meter.feed(new Uint8Array(4)), true);
    assert.equal(meter.feed(frameHeader(600, 0, true)), false);
  });
  await t.step("a header split across reads is read whole", () => {
    const meter = createFrameMeter(1000);
    const header = frameHeader(70_000);
    assert.equal(meter.feed(header.subarray(0, 1)), true);
    assert.equal(meter.feed(header.subarray(1, 5)), true);
    assert.equal(meter.feed(header.subarray(5)), false);
  });
  await t.step("meters with headers split across reads keep their own", () => {
    const a = createFrameMeter(1000);
    const b = createFrameMeter(1000);
    const big = frameHeader(70_000);
    const small = frameHeader(10);
    assert.equal(a.feed(big.subarray(0, 3)), true);
    assert.equal(b.feed(small.subarray(0, 1)), true);
    assert.equal(b.feed(small.subarray(1)), true);
    assert.equal(b.feed(new Uint8Array(10)), true);
    assert.equal(a.feed(big.subarray(3)), false);
    assert.equal(b.feed(frameHeader(1000)), true);
  });
});

/** What follows `head` as regexes over the whole head (Latin-1) say, Deno's refusals first:
 * the reference the generated heads are checked against. */
function expectedAfter(head: string): string {
  // A folded line; a Content-Length that is no number of at most 15 digits, or two that differ;
  // Transfer-Encoding beside Content-Length, or not ending in chunked (RFC 9112 §6.3).
  if (/[\r\n][ \t]/.test(head.slice(0, -4))) return "lost";
  const lengths = [...head.matchAll(/^content-length:[ \t]*(.*?)[ \t]*$/gim)].map((m) => m[1]!);
  if (lengths.some((value) => !/^0*\d{1,15}$/.test(value))) return "lost";
  if (new Set(lengths.map(Number)).size > 1) return "lost";
  // Deno joins a header's lines with ", ", so the Transfer-Encoding lines are one list.
  const codings = [...head.matchAll(/^transfer-encoding:[ \t]*(.*?)[ \t]*$/gim)].map((m) => m[1]);
  const coding = codings.length === 0 ? undefined : codings.join(", ");
  if (coding !== undefined && (lengths.length > 0 || !/(^|,)[ \t]*chunked$/i.test(coding))) {
    return "lost";
  }
  // Deno.upgradeWebSocket takes any Upgrade value containing "websocket"; Deno upgrades no request
  // with a body, whose body would wait behind the head for the upgrade's answer.
  const n = lengths.length === 0 ? 0 : Number(lengths[0]);
  if (/^upgrade:.*websocket/im.test(head)) {
    return coding !== undefined || n > 0 ? "lost" : "upgrade";
  }
  if (coding !== undefined) return "ends after 3";
  return n === 0 ? "no body" : n > 3005 ? "longer" : `ends after ${n}`;
}

/** What ClientStream makes of what follows `head`, probed with bytes after it. */
function observedAfter(head: Uint8Array): string {
  const stream = new ClientStream(1000);
  if (!stream.feed(head)) return "lost";
  if (stream.upgrading) return "upgrade";
  if (!stream.inBody) {
    return stream.feed(encoder.encode("GET / HTTP/1.1\r\n\r\n")) ? "no body" : "lost";
  }
  // A chunked body is in its trailer (no longer in the body) after 3 bytes; n bytes end one of n.
  const body = encoder.encode("0\r\n\r\n" + "0".repeat(3000));
  for (let k = 0; k < body.length; k++) {
    if (!stream.feed(body.subarray(k, k + 1))) return "lost";
    if (!stream.inBody) return `ends after ${k + 1}`;
  }
  return "longer";
}

Deno.test("ClientStream reads a head's length, coding and upgrade as regexes over its joined lines do", () => {
  const random = seededRandom(17);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const lengths = ["0", "1", "7", "12", "40", "300", "2500", "0000012", "", "abc", "12x", "1 2"]
    .concat(["999999999999999", "1000000000000000", "00000000000000000007", "+7", "7, 7"]);
  const templates: (() => string)[] = [
    () => "Host: x",
    () => "Content-Type: text/xml",
    () => "Connection: keep-alive",
    () => `Content-Length:${pick(["", " ", "\t", "  \t"])}${pick(lengths)}${pick(["", " ", "\t"])}`,
    () => `Content-Length : ${pick(lengths)}`,
    () => `Transfer-Encoding: ${pick(["chunked", "gzip, chunked", "chunked, gzip", "", "gzip"])}`,
    () =>
      `Upgrade: ${
        pick(["websocket", "WebSocket ", "h2c", "websocket2", "\twebsocket", "h2c, websocket"])
      }`,
    () => `X-Note: a\r${pick(["content-length: 7", "upgrade: websocket", "transfer-encoding: x"])}`,
    () => "X-Bytes: \xe9\x85\xa0\x8a\xff",
    () => `X-Folded: a\r\n${pick([" ", "\t"])}${pick(["b", "content-length: 7"])}`,
    () => `Cookie: ${"c".repeat(Math.floor(random() * 300))}`,
  ];
  /** Flips the case of some letters of the header name. */
  const shuffleCase = (line: string) => {
    const colon = line.indexOf(":");
    return [...line].map((c, k) =>
      k < colon && random() < 0.3 ? (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) : c
    ).join("");
  };
  for (let n = 0; n < 2000; n++) {
    const lines = Array.from(
      { length: 1 + Math.floor(random() * 5) },
      () => shuffleCase(pick(templates)()),
    );
    const head = `POST /a HTTP/1.1\r\n${lines.join("\r\n")}\r\n\r\n`;
    const bytes = Uint8Array.from(head, (c) => c.charCodeAt(0));
    const latin1 = new TextDecoder("latin1").decode(bytes);
    assert.equal(observedAfter(bytes), expectedAfter(latin1), JSON.stringify(head));
  }
});
