// The relay finds where each request ends on its own (ClientStream) to add
// its link token after each request line. Where it and Deno's parser disagree, the token lands
// inside a body (the handler gets bytes the client never sent, and the link's own token) and the
// next request is refused. Each case runs against Deno.serve directly too, which gets it right.

import assert from "node:assert/strict";
import { defaultConnectionLimits, serveDirect, serveGuarded } from "../../src/http/connections.ts";

const enc = new TextEncoder();
const GET = "GET /next HTTP/1.1\r\nhost: x\r\n\r\n";

/** Sends `bytes`, reads until `count` responses arrive or the server closes; what it answered. */
async function exchange(port: number, bytes: string, count: number): Promise<string[]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(enc.encode(bytes));
  // A server that neither answers nor closes fails the test instead of holding it.
  const timer = setTimeout(() => conn.close(), 3_000);
  try {
    return await readAnswers(conn, count);
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed already */ }
  }
}

/** Reads until `count` responses arrive or the server closes: each one's status and body. */
async function readAnswers(conn: Deno.Conn, count: number): Promise<string[]> {
  const buf = new Uint8Array(16 * 1024);
  let text = "";
  while ((text.match(/HTTP\/1\.[01] \d{3}/g) ?? []).length < count) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  // Each answer's status and the body the handler echoed.
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3})[^]*?\r\n\r\n([^H]*)/g)].map((m) =>
    `${m[1]} ${m[2]}`
  );
}

const handler = async (req: Request) =>
  new Response(JSON.stringify(`${new URL(req.url).pathname} ${await req.text()}`));

for (const mode of ["guarded", "direct"] as const) {
  Deno.test(`the ${mode} server frames requests as Deno's parser does`, async (t) => {
    const options = { port: 0, hostname: "127.0.0.1", limits: defaultConnectionLimits(1024) };
    const server = mode === "guarded"
      ? serveGuarded(options, handler)
      : serveDirect(options, handler);
    const port = server.addr.port;
    try {
      await t.step(
        "a Content-Length with leading zeros: the body as sent, then the next request",
        async () => {
          const post =
            "POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 0000000000000000004\r\n\r\na\r\nb";
          assert.deepEqual(await exchange(port, post + GET, 2), [
            `200 ${JSON.stringify("/a a\r\nb")}`,
            `200 ${JSON.stringify("/next ")}`,
          ]);
        },
      );
      await t.step(
        "U+2028 in a header value declares no body: the next request is answered",
        async () => {
          const get = "GET /a HTTP/1.1\r\nhost: x\r\nx-note: a\u2028content-length: 40\r\n\r\n";
          assert.deepEqual(await exchange(port, get + GET, 2), [
            `200 ${JSON.stringify("/a ")}`,
            `200 ${JSON.stringify("/next ")}`,
          ]);
        },
      );
      await t.step("a first head larger than the first read's buffer, then the next", async () => {
        // The guard reads a connection's first head into 2 KiB, and more as it grows.
        for (const pad of [300, 900, 3000, 40_000]) {
          const post = `POST /a HTTP/1.1\r\nhost: x\r\nx-pad: ${"p".repeat(pad)}\r\n` +
            "content-length: 2\r\n\r\nok";
          assert.deepEqual(await exchange(port, post + GET, 2), [
            `200 ${JSON.stringify("/a ok")}`,
            `200 ${JSON.stringify("/next ")}`,
          ], `a ${pad}-byte header`);
        }
      });
      await t.step("an empty line before a request line is ignored (RFC 9112 §2.2)", async () => {
        assert.deepEqual(await exchange(port, "\r\n" + GET, 1), [
          `200 ${JSON.stringify("/next ")}`,
        ]);
        // Old clients send a CRLF after a POST body: the kept-alive request after it.
        const post = "POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nz\r\n";
        assert.deepEqual(await exchange(port, post + GET, 2), [
          `200 ${JSON.stringify("/a z")}`,
          `200 ${JSON.stringify("/next ")}`,
        ]);
      });
      await t.step("an empty line split between its CR and its LF is no request line", async () => {
        // The CR comes in the read that ends the POST (answered before the LF is sent), the LF
        // in the next one: it ends the empty line, not the request line of what follows.
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        const timer = setTimeout(() => conn.close(), 3_000);
        try {
          await conn.write(
            enc.encode("POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nz\r"),
          );
          const answers = await readAnswers(conn, 1);
          await conn.write(enc.encode("\n" + GET));
          answers.push(...await readAnswers(conn, 1));
          assert.deepEqual(answers, [
            `200 ${JSON.stringify("/a z")}`,
            `200 ${JSON.stringify("/next ")}`,
          ]);
        } finally {
          clearTimeout(timer);
          try {
            conn.close();
          } catch { /* closed already */ }
        }
      });
      // RFC 9112 §2.2: a recipient may take a bare LF for a line's end; Deno's parser does, and
      // nginx, so the guard does too, ending each request where Deno ends it.
      for (
        const [name, request, body] of [
          ["every line", "GET /a HTTP/1.1\nhost: x\n\n", ""],
          ["the empty line only", "GET /a HTTP/1.1\r\nhost: x\r\n\n", ""],
          ["all but the empty line", "GET /a HTTP/1.1\nhost: x\n\r\n", ""],
          ["an empty line before it", "\nGET /a HTTP/1.1\nhost: x\n\n", ""],
          ["a body after it", "POST /a HTTP/1.1\ncontent-length: 3\n\nabc", "abc"],
          ["a body that begins with an LF", "POST /a HTTP/1.1\ncontent-length: 2\n\n\nz", "\nz"],
          [
            "a chunked body",
            "POST /a HTTP/1.1\ntransfer-encoding: chunked\n\n3\r\nabc\r\n0\r\n\r\n",
            "abc",
          ],
        ] as [string, string, string][]
      ) {
        await t.step(`a bare LF ending ${name}: served, then the next request`, async () => {
          const answers = [
            `200 ${JSON.stringify(`/a ${body}`)}`,
            `200 ${JSON.stringify("/next ")}`,
          ];
          assert.deepEqual(await exchange(port, request + GET, 2), answers, "first");
          // After another request, split at every byte of it (the guard's second head is read
          // by its stream, the first also by its accept loop).
          const pipelined = GET + request + GET;
          for (let at = GET.length + 1; at < GET.length + request.length; at++) {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port });
            const timer = setTimeout(() => conn.close(), 3_000);
            try {
              await conn.write(enc.encode(pipelined.slice(0, at)));
              await new Promise((r) => setTimeout(r, 2));
              await conn.write(enc.encode(pipelined.slice(at)));
              assert.deepEqual(
                await readAnswers(conn, 3),
                [`200 ${JSON.stringify("/next ")}`, ...answers],
                `split at ${at}`,
              );
            } finally {
              clearTimeout(timer);
              try {
                conn.close();
              } catch { /* closed already */ }
            }
          }
        });
      }
      await t.step("a lone CR in a head: 400, and closed", async () => {
        for (const head of ["GET /a HTTP/1.1\nx: a\rb\n\n", "GET /a HTTP/1.1\nhost: x\r\r\n\r\n"]) {
          assert.deepEqual(await exchange(port, head + GET, 2), ["400 "], JSON.stringify(head));
        }
      });
      // From the review of the relay's rewrite: chunked bodies Deno accepts that the relay once
      // took for something it could not follow (it closed the connection with no answer).
      const chunked = [`200 ${JSON.stringify("/a abc")}`, `200 ${JSON.stringify("/next ")}`];
      await t.step("Transfer-Encoding on two lines, chunked last: one list", async () => {
        const post = "POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n" +
          "transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        // Deno passes the body on still gzipped: the handler reads the bytes as sent.
        assert.deepEqual(await exchange(port, post + GET, 2), chunked);
      });
      await t.step("a space between a chunk's size and its extension (RFC 9112 BWS)", async () => {
        const post = "POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" +
          "3 ;name=value\r\nabc\r\n0\r\n\r\n";
        assert.deepEqual(await exchange(port, post + GET, 2), chunked);
      });
      await t.step("zeros before a chunk's size, as Deno reads them", async () => {
        const post = "POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" +
          "00000000000003\r\nabc\r\n0\r\n\r\n";
        assert.deepEqual(await exchange(port, post + GET, 2), chunked);
      });
      // RFC 9112 §6.3's smuggling requests: Deno refuses each, and so does the guard, before
      // Deno sees it (its answer and a closed connection, no request read after).
      for (
        const [name, head] of [
          [
            "Transfer-Encoding beside Content-Length",
            "transfer-encoding: chunked\r\ncontent-length: 3",
          ],
          ["Transfer-Encoding: chunked, identity", "transfer-encoding: chunked, identity"],
          [
            "Transfer-Encoding: chunked then identity",
            "transfer-encoding: chunked\r\ntransfer-encoding: identity",
          ],
          ["an unknown coding", "transfer-encoding: xchunked"],
          [
            "a folded Transfer-Encoding",
            "transfer-encoding: identity\r\n chunked\r\ncontent-length: 3",
          ],
          ["two Content-Lengths that differ", "content-length: 3\r\ncontent-length: 5"],
          ["a Content-Length list", "content-length: 3, 3"],
          ["a NUL in a header", "content-length: 3\r\nx-a: b\0c"],
        ]
      ) {
        await t.step(`${name}: 400, and the connection closed`, async () => {
          const post = `POST /a HTTP/1.1\r\nhost: x\r\n${head}\r\n\r\n3\r\nabc\r\n0\r\n\r\n`;
          assert.deepEqual(await exchange(port, post + GET, 3), ["400 "]);
          // Behind a request that is answered first.
          assert.deepEqual(await exchange(port, GET + post + GET, 3), [
            `200 ${JSON.stringify("/next ")}`,
            "400 ",
          ]);
        });
      }
    } finally {
      await server.shutdown();
    }
  });
}

Deno.test("the guard refuses what Deno would frame otherwise, after answering what came before", async (t) => {
  const slow = async (req: Request) => {
    // A request answered late: the guard's 400 must still come after its answer.
    if (new URL(req.url).pathname === "/slow") await new Promise((r) => setTimeout(r, 300));
    if (new URL(req.url).pathname === "/raw") return new Response(await req.text());
    return await handler(req);
  };
  const options = { port: 0, hostname: "127.0.0.1", limits: defaultConnectionLimits(1024) };
  const server = serveGuarded(options, slow);
  const port = server.addr.port;
  try {
    await t.step("a Content-Length of 16 digits is 400, not a request with no body", async () => {
      // Deno waits for 10^15 bytes; the relay would have read the next bytes as requests.
      const post = "POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000000000000\r\n\r\n";
      assert.deepEqual(await exchange(port, post + GET, 2), ["400 "]);
      assert.deepEqual(await exchange(port, GET + post + GET, 3), [
        `200 ${JSON.stringify("/next ")}`,
        "400 ",
      ]);
    });
    await t.step("the 400 comes after a slow answer to the request before", async () => {
      const slowGet = "GET /slow HTTP/1.1\r\nhost: x\r\n\r\n";
      const bad = "POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 1, 2\r\n\r\n";
      assert.deepEqual(await exchange(port, slowGet + bad, 2), [
        `200 ${JSON.stringify("/slow ")}`,
        "400 ",
      ]);
    });
    await t.step("the bad head in a read of its own, after a kept-alive request", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(enc.encode(GET));
      const first = await readAnswer(conn);
      assert.match(first, /^HTTP\/1\.1 200/);
      await conn.write(
        enc.encode("POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 12345678901234567\r\n\r\n"),
      );
      const rest = await readAnswer(conn, true);
      assert.match(rest, /^HTTP\/1\.1 400 /);
      conn.close();
    });
    await t.step(
      "a head over 64 KiB after a kept-alive request: 431, as a first one, and closed",
      async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await conn.write(enc.encode(GET));
        assert.match(await readAnswer(conn), /^HTTP\/1\.1 200/);
        await conn.write(enc.encode(BIG));
        const answer = withoutDate(await readAnswer(conn, true));
        assert.equal(answer, TOO_LARGE, answer);
        conn.close();
        const first = await exchange(port, BIG, 2);
        assert.deepEqual(first, [`431 ${TOO_LARGE_ERROR}`], "a first head that large");
        // Written by the guard itself, as Deno writes the later one.
        const alone = await Deno.connect({ hostname: "127.0.0.1", port });
        await alone.write(enc.encode(BIG));
        assert.equal(await readAnswer(alone, true), TOO_LARGE, "a first head that large");
        alone.close();
      },
    );
    await t.step("the 431 comes after a slow answer to the request before", async () => {
      const slowGet = "GET /slow HTTP/1.1\r\nhost: x\r\n\r\n";
      assert.deepEqual(await exchange(port, slowGet + BIG + GET, 3), [
        `200 ${JSON.stringify("/slow ")}`,
        `431 ${TOO_LARGE_ERROR}`,
      ]);
    });
    await t.step("a head over 64 KiB begun in an earlier read: 431", async () => {
      // Its first part went on to Deno before the guard knew its size.
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(enc.encode(GET));
      assert.match(await readAnswer(conn), /^HTTP\/1\.1 200/);
      await conn.write(enc.encode(`GET /big HTTP/1.1\r\nhost: x\r\nx-big: ${"b".repeat(30_000)}`));
      await new Promise((r) => setTimeout(r, 100));
      await conn.write(enc.encode(`${"b".repeat(40_000)}\r\n\r\n`));
      const answer = withoutDate(await readAnswer(conn, true));
      assert.equal(answer, TOO_LARGE, answer);
      conn.close();
    });
    await t.step("a body that ends like Deno's 400 is passed on as it is", async () => {
      const echo = `POST /raw HTTP/1.1\r\nhost: x\r\ncontent-length: ${FAKE_400.length}\r\n\r\n` +
        FAKE_400;
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(enc.encode(echo + BIG));
      const answer = withoutDate(await readAnswer(conn, true));
      conn.close();
      assert.ok(answer.endsWith(`\r\n\r\n${FAKE_400}${TOO_LARGE}`), answer);
    });
    await t.step("the answer to a Connection: close request is passed on as it is", async () => {
      // Deno closes after it, reading nothing more: no 431 is owed, and the body, which ends as
      // Deno's 400 does, is never taken for one.
      const echo = `POST /raw HTTP/1.1\r\nhost: x\r\nconnection: close\r\n` +
        `content-length: ${FAKE_400.length}\r\n\r\n${FAKE_400}`;
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(enc.encode(echo + BIG));
      const answer = await readAnswer(conn, true);
      conn.close();
      assert.match(answer, /^HTTP\/1\.1 200 /, answer);
      assert.ok(answer.endsWith(`\r\n\r\n${FAKE_400}`), answer);
    });
    await t.step(
      "a head over 64 KiB after a slow Connection: close answer: that answer",
      async () => {
        const slowClose = "GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        assert.deepEqual(await exchange(port, slowClose + BIG, 2), [
          `200 ${JSON.stringify("/slow ")}`,
        ]);
      },
    );
    await t.step("after HTTP/1.0: a 431 only if it asked to be kept alive", async () => {
      const old = "GET /slow HTTP/1.0\r\nhost: x\r\n\r\n";
      const kept = "GET /slow HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\n\r\n";
      assert.deepEqual(await exchange(port, old + BIG, 2), [`200 ${JSON.stringify("/slow ")}`]);
      assert.deepEqual(await exchange(port, kept + BIG, 2), [
        `200 ${JSON.stringify("/slow ")}`,
        `431 ${TOO_LARGE_ERROR}`,
      ]);
    });
    await t.step(
      "a bad head begun in an earlier read is never completed into a request",
      async () => {
        // The head's first part has gone on to Deno, cut inside a header value; what the guard
        // sends in place of the rest must not end that value and the head.
        // (A connection's first head the guard reads whole itself: this is the second.)
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        await conn.write(enc.encode(GET));
        assert.match(await readAnswer(conn), /^HTTP\/1\.1 200/);
        await conn.write(enc.encode("GET /half HTTP/1.1\r\nhost: x\r\nx-note: a"));
        await new Promise((r) => setTimeout(r, 100));
        await conn.write(enc.encode("b\r\ncontent-length: 1, 2\r\n\r\n"));
        const answer = await readAnswer(conn, true);
        assert.match(answer, /^HTTP\/1\.1 400 /, answer);
        conn.close();
      },
    );
  } finally {
    await server.shutdown();
  }
});

const BIG = `GET /big HTTP/1.1\r\nhost: x\r\nx-big: ${"b".repeat(70_000)}\r\n\r\n`;
const TOO_LARGE_ERROR = JSON.stringify({
  error: "Request header fields too large: a request line and headers of at most 64 KiB",
  result: {
    code: -1,
    message: "Request header fields too large: a request line and headers of at most 64 KiB",
  },
});
/**
 * The guard's answer to a head over 64 KiB, wherever on the connection it comes (after other
 * requests Deno sends it, with a date header: see withoutDate): the bridge's JSON error, as
 * the router answers one (it was empty).
 */
const TOO_LARGE = "HTTP/1.1 431 Request Header Fields Too Large\r\n" +
  "content-type: application/json; charset=utf-8\r\ncache-control: no-store\r\n" +
  `connection: close\r\ncontent-length: ${TOO_LARGE_ERROR.length}\r\n\r\n${TOO_LARGE_ERROR}`;
/** A body that ends as Deno's answer to a head it cannot parse does. */
const FAKE_400 = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/** `text` without the date header lines Deno adds to its answers. */
function withoutDate(text: string): string {
  return text.replace(/^date: .*\r\n/gm, "");
}

/** One read's worth of answer off `conn`, or (`toEnd`) everything until the server closes. */
async function readAnswer(conn: Deno.Conn, toEnd = false): Promise<string> {
  const buf = new Uint8Array(4096);
  let text = "";
  const timer = setTimeout(() => conn.close(), 3_000);
  try {
    do {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    } while (toEnd);
  } finally {
    clearTimeout(timer);
  }
  return text;
}
