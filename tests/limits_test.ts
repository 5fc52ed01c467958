import assert from "node:assert/strict";
import {
  clientKeyOf,
  createKeyedRateLimiter,
  createRateLimiter,
  readBodyLimited,
} from "../src/http/limits.ts";
import { HttpError } from "../src/http/http_error.ts";

const URL_ = "http://bridge.test/send";

/** A body stream that yields `chunk` `count` times (forever when count is Infinity). */
function chunkedStream(chunk: Uint8Array, count: number) {
  const stats = { pulls: 0, cancelled: false };
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (stats.pulls >= count) {
        controller.close();
        return;
      }
      stats.pulls++;
      controller.enqueue(chunk.slice());
    },
    cancel() {
      stats.cancelled = true;
    },
  });
  return { stream, stats };
}

async function assertTooLarge(promise: Promise<unknown>, maxBytes: number): Promise<void> {
  const error = await promise.then(() => null, (e: unknown) => e);
  assert.ok(error instanceof HttpError, `expected HttpError, got ${String(error)}`);
  assert.equal(error.status, 413);
  assert.match(error.message, new RegExp(`larger than ${maxBytes} bytes`));
}

Deno.test("readBodyLimited() reads bodies up to the limit", async (t) => {
  await t.step("returns the bytes of a small body", async () => {
    const body = new TextEncoder().encode('{"data":{"msg_type":"text"}}');
    const bytes = await readBodyLimited(new Request(URL_, { method: "POST", body }), 1024);
    assert.deepEqual(bytes, body);
  });

  await t.step("a request without a body gives no bytes", async () => {
    assert.equal((await readBodyLimited(new Request(URL_), 10)).byteLength, 0);
  });

  await t.step("a body of exactly the limit passes, one byte more is 413", async () => {
    const exact = new Uint8Array(100).fill(7);
    const read = await readBodyLimited(new Request(URL_, { method: "POST", body: exact }), 100);
    assert.deepEqual(read, exact);
    const over = new Uint8Array(101);
    await assertTooLarge(
      readBodyLimited(new Request(URL_, { method: "POST", body: over }), 100),
      100,
    );
  });

  await t.step("joins a body that arrives in many chunks in order", async () => {
    let next = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (next === 50) return controller.close();
        controller.enqueue(new Uint8Array(10).fill(next++));
      },
    });
    const bytes = await readBodyLimited(new Request(URL_, { method: "POST", body: stream }), 500);
    assert.equal(bytes.byteLength, 500);
    for (let i = 0; i < 50; i++) assert.equal(bytes[i * 10 + 9], i);
  });
});

Deno.test("readBodyLimited() reads a body of declared length without building its stream", async () => {
  // The stream behind req.body outlives young-generation collections (see limits.ts): a
  // WeChat callback, which always declares its length, must be read without it.
  const body = new TextEncoder().encode("<xml><Content><![CDATA[hi]]></Content></xml>");
  const req = new Request(URL_, {
    method: "POST",
    body,
    headers: { "content-length": String(body.byteLength) },
  });
  let touched = 0;
  const prototypeBody = Object.getOwnPropertyDescriptor(Request.prototype, "body")!.get!;
  Object.defineProperty(req, "body", {
    get() {
      touched++;
      return prototypeBody.call(this);
    },
  });
  assert.deepEqual(await readBodyLimited(req, 1024), body);
  assert.equal(touched, 0, "req.body was read");
});

Deno.test("readBodyLimited() stops at the limit", async (t) => {
  await t.step("a Content-Length over the limit is 413 before reading", async () => {
    const { stream, stats } = chunkedStream(new Uint8Array(1024), 1000);
    const req = new Request(URL_, {
      method: "POST",
      body: stream,
      headers: { "content-length": String(1024 * 1000) },
    });
    await assertTooLarge(readBodyLimited(req, 4096), 4096);
    assert.ok(stats.cancelled, "the body stream was cancelled");
    assert.ok(stats.pulls <= 1, `read ${stats.pulls} chunks of a body it should refuse unread`);
  });

  await t.step("an endless body without Content-Length is 413 once past the limit", async () => {
    const { stream, stats } = chunkedStream(new Uint8Array(1024), Infinity);
    const req = new Request(URL_, { method: "POST", body: stream });
    await assertTooLarge(readBodyLimited(req, 10 * 1024), 10 * 1024);
    assert.ok(stats.cancelled, "the body stream was cancelled");
    // 11 chunks cross the limit; the stream's own read-ahead may add one or two.
    assert.ok(stats.pulls <= 13, `read ${stats.pulls} chunks for a 10-chunk limit`);
  });

  await t.step("a negative or fractional limit is refused", async () => {
    await assert.rejects(readBodyLimited(new Request(URL_), -1), RangeError);
    await assert.rejects(readBodyLimited(new Request(URL_), 1.5), RangeError);
  });
});

Deno.test("readBodyLimited() answers 413 on a real server and keeps serving", async (t) => {
  const controller = new AbortController();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: controller.signal, onListen() {} },
    async (req) => {
      try {
        const body = await readBodyLimited(req, 64 * 1024);
        return new Response(String(body.byteLength));
      } catch (error) {
        if (error instanceof HttpError) {
          return new Response(error.message, { status: error.status });
        }
        throw error;
      }
    },
  );
  const base = `http://127.0.0.1:${server.addr.port}/send`;
  try {
    await t.step("a 256 KiB body is 413", async () => {
      const res = await fetch(base, { method: "POST", body: new Uint8Array(256 * 1024) });
      assert.equal(res.status, 413);
      assert.match(await res.text(), /larger than 65536 bytes/);
    });

    await t.step("a streamed body over the limit is 413", async () => {
      const { stream } = chunkedStream(new Uint8Array(16 * 1024), 8);
      const res = await fetch(base, { method: "POST", body: stream });
      assert.equal(res.status, 413);
      await res.body?.cancel();
    });

    await t.step("the next request within the limit is read whole", async () => {
      const res = await fetch(base, { method: "POST", body: new Uint8Array(1000) });
      assert.equal(res.status, 200);
      assert.equal(await res.text(), "1000");
    });
  } finally {
    controller.abort();
    await server.finished;
  }
});

Deno.test("createRateLimiter() is a token bucket", async (t) => {
  let now = 1_000;
  const clock = () => now;

  await t.step("starts full: burst messages pass at once, the next one does not", () => {
    const limiter = createRateLimiter(10, 5, clock);
    for (let i = 0; i < 5; i++) assert.equal(limiter.take(), true, `message ${i}`);
    assert.equal(limiter.take(), false);
  });

  await t.step("refills at the rate", () => {
    const limiter = createRateLimiter(10, 1, clock);
    assert.equal(limiter.take(), true);
    now += 50;
    assert.equal(limiter.take(), false, "half a token after 50 ms at 10/s");
    now += 50;
    assert.equal(limiter.take(), true, "one token after 100 ms");
    assert.equal(limiter.take(), false);
  });

  await t.step("never holds more than burst, however long it waits", () => {
    const limiter = createRateLimiter(100, 3, clock);
    now += 3_600_000;
    let passed = 0;
    while (limiter.take()) passed++;
    assert.equal(passed, 3);
  });

  await t.step("a steady sender at the rate is never refused, a faster one is", () => {
    const limiter = createRateLimiter(20, 2, clock);
    let refused = 0;
    for (let i = 0; i < 200; i++) {
      now += 50;
      if (!limiter.take()) refused++;
    }
    assert.equal(refused, 0);
    let passed = 0;
    for (let i = 0; i < 200; i++) {
      now += 25;
      if (limiter.take()) passed++;
    }
    // 200 messages in 5 s at 20/s: about 100 pass (plus what the bucket held).
    assert.ok(passed >= 100 && passed <= 103, `passed ${passed}`);
  });

  await t.step("a clock that steps back neither adds nor drains tokens", () => {
    const limiter = createRateLimiter(1, 2, clock);
    assert.equal(limiter.take(), true);
    now -= 10_000;
    assert.equal(limiter.take(), true);
    assert.equal(limiter.take(), false);
    now += 10_000;
    assert.equal(limiter.take(), false, "time regained after the step back is not new time");
    now += 1_000;
    assert.equal(limiter.take(), true);
  });

  await t.step("refuses a rate or burst that makes no bucket", () => {
    assert.throws(() => createRateLimiter(0, 1, clock), RangeError);
    assert.throws(() => createRateLimiter(Number.NaN, 1, clock), RangeError);
    assert.throws(() => createRateLimiter(10, 0.5, clock), RangeError);
    assert.throws(() => createRateLimiter(10, Infinity, clock), RangeError);
  });

  await t.step("uses the monotonic clock by default", () => {
    const limiter = createRateLimiter(1, 1);
    assert.equal(limiter.take(), true);
    assert.equal(limiter.take(), false);
  });
});

Deno.test("clientKeyOf() gives an IPv6 host one key for its whole /64", async (t) => {
  await t.step("addresses of one /64 share a key, another /64 has its own", () => {
    const key = clientKeyOf("2001:db8:1:2::1");
    assert.equal(clientKeyOf("2001:db8:1:2:dead:beef:0:7"), key);
    assert.equal(clientKeyOf("2001:0db8:0001:0002:ffff:ffff:ffff:ffff"), key);
    assert.notEqual(clientKeyOf("2001:db8:1:3::1"), key);
  });
  await t.step("IPv4, and IPv4 mapped into IPv6, are the IPv4 address", () => {
    assert.equal(clientKeyOf("203.0.113.7"), "203.0.113.7");
    assert.equal(clientKeyOf("::ffff:203.0.113.7"), "203.0.113.7");
    assert.notEqual(clientKeyOf("203.0.113.8"), "203.0.113.7");
  });
  await t.step("anonymous pushes from 1,000 addresses of one /64 share one burst", () => {
    const limiter = createKeyedRateLimiter(10, 20, () => 0);
    let passed = 0;
    for (let i = 1; i <= 1000; i++) {
      if (limiter.take(clientKeyOf(`2001:db8:1:2::${i.toString(16)}`)) === 0) passed++;
    }
    assert.equal(passed, 20);
  });
});
