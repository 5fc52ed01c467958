import assert from "node:assert/strict";
import {
  createWechatClient,
  WechatApiError,
  type WechatClientOptions,
} from "../../src/wechat/api_client.ts";
import { createMemoryTokenCache } from "../../src/wechat/access_token.ts";
import { type FakeUpload, type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";

const APP_ID = "wxtestapp0000001";
const SECRET = "test-secret";
const SEND = "cgi-bin/message/custom/send";
const TOKEN = "cgi-bin/stable_token";

function text(touser: string, content: string): Record<string, unknown> {
  return { touser, msgtype: "text", text: { content } };
}

function callsTo(fake: FakeWechat, path: string) {
  return fake.calls.filter((call) => call.path === path);
}

interface Harness {
  fake: FakeWechat;
  sleeps: number[];
  reports: [string, number][];
  client: ReturnType<typeof createWechatClient>;
}

async function withFake(
  fn: (h: Harness) => Promise<void>,
  extra: Partial<WechatClientOptions> = {},
  fakeOptions: { tokenTtlS?: number } = {},
): Promise<void> {
  const fake = await startFakeWechat({ appId: APP_ID, secret: SECRET, ...fakeOptions });
  const sleeps: number[] = [];
  const reports: [string, number][] = [];
  try {
    const client = createWechatClient({
      apiBase: fake.url,
      appId: APP_ID,
      secret: SECRET,
      sleep: (ms) => {
        sleeps.push(ms);
        return Promise.resolve();
      },
      onCall: (api, errcode) => reports.push([api, errcode]),
      ...extra,
    });
    await fn({ fake, sleeps, reports, client });
  } finally {
    await fake.close();
  }
}

function unusedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("sendCustomMessage() shares one access token", async (t) => {
  await t.step("20 sends, 10 of them at once, use one token", async () => {
    await withFake(async ({ fake, client }) => {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) => client.sendCustomMessage(text("oA", `c${i}`))),
      );
      for (let i = 10; i < 20; i++) await client.sendCustomMessage(text("oA", `c${i}`));
      assert.equal(fake.tokensIssued, 1);
      assert.equal(callsTo(fake, TOKEN).length, 1);
      const tokens = new Set(callsTo(fake, SEND).map((call) => call.query.access_token));
      assert.equal(tokens.size, 1);
      assert.equal(fake.sent.length, 20);
      assert.deepEqual(
        fake.sent.map((p) => (p.text as { content: string }).content).sort(),
        Array.from({ length: 20 }, (_, i) => `c${i}`).sort(),
      );
    });
  });

  await t.step("asks for the token with stable_token and the configured credentials", async () => {
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "hi"));
      assert.deepEqual(callsTo(fake, TOKEN)[0]?.body, {
        grant_type: "client_credential",
        appid: APP_ID,
        secret: SECRET,
      });
    });
  });

  await t.step("two clients on one token cache fetch one token", async () => {
    await withFake(async ({ fake }) => {
      const tokenCache = createMemoryTokenCache();
      const options = { apiBase: fake.url, appId: APP_ID, secret: SECRET, tokenCache };
      await createWechatClient(options).sendCustomMessage(text("oA", "one"));
      await createWechatClient(options).sendCustomMessage(text("oA", "two"));
      assert.equal(fake.tokensIssued, 1);
    });
  });

  await t.step("asks again 5 minutes before the token expires", async () => {
    let clock = Date.now();
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "early"));
      clock += (7200 - 301) * 1000;
      await client.sendCustomMessage(text("oA", "still fresh"));
      assert.equal(callsTo(fake, TOKEN).length, 1);
      clock += 2000;
      await client.sendCustomMessage(text("oA", "near expiry"));
      assert.equal(callsTo(fake, TOKEN).length, 2);
    }, { now: () => clock });
  });

  await t.step("wrong credentials come back as WeChat's errcode", async () => {
    await withFake(async ({ fake }) => {
      const client = createWechatClient({ apiBase: fake.url, appId: APP_ID, secret: "wrong" });
      await assert.rejects(
        client.sendCustomMessage(text("oA", "hi")),
        (err) => err instanceof WechatApiError && err.errcode === 40125,
      );
      assert.equal(callsTo(fake, SEND).length, 0);
    });
  });
});

Deno.test("sendCustomMessage() falls back to cgi-bin/token where stable_token is missing", async () => {
  await withFake(async ({ fake, client }) => {
    fake.failHttpNext(TOKEN, 404, 100);
    await client.sendCustomMessage(text("oA", "one"));
    fake.revokeTokens();
    await client.sendCustomMessage(text("oA", "two"));
    assert.equal(fake.sent.length, 2);
    assert.equal(callsTo(fake, TOKEN).length, 1, "stable_token is not asked again after a 404");
    assert.equal(callsTo(fake, "cgi-bin/token").length, 2);
    const call = callsTo(fake, "cgi-bin/token")[0]!;
    assert.equal(call.query.appid, APP_ID);
    assert.equal(call.query.grant_type, "client_credential");
  });
});

Deno.test("sendCustomMessage() refreshes a refused token once", async (t) => {
  await t.step("a revoked token is refreshed and the send retried once", async () => {
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "before"));
      fake.revokeTokens();
      await client.sendCustomMessage(text("oA", "after"));
      assert.equal(fake.tokensIssued, 2);
      const sends = callsTo(fake, SEND);
      assert.equal(sends.length, 3);
      assert.equal(sends[1]?.query.access_token, sends[0]?.query.access_token);
      assert.notEqual(sends[2]?.query.access_token, sends[1]?.query.access_token);
      assert.deepEqual(fake.sent.map((p) => (p.text as { content: string }).content), [
        "before",
        "after",
      ]);
    });
  });

  await t.step("concurrent sends during the refresh share one refresh", async () => {
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "warm up"));
      fake.revokeTokens();
      fake.delay(TOKEN, 100);
      await Promise.all(
        Array.from({ length: 8 }, (_, i) => client.sendCustomMessage(text(`o${i}`, "x"))),
      );
      assert.equal(fake.tokensIssued, 2);
      assert.equal(callsTo(fake, TOKEN).length, 2);
      assert.equal(fake.sent.length, 9);
    });
  });

  await t.step("a token WeChat still hands out is replaced by a forced refresh", async () => {
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "first"));
      fake.failNext(SEND, 40001, "invalid credential");
      await client.sendCustomMessage(text("oA", "second"));
      const tokenCalls = callsTo(fake, TOKEN);
      assert.equal(tokenCalls.length, 3);
      assert.equal((tokenCalls[2]?.body as Record<string, unknown>).force_refresh, true);
      assert.equal(fake.tokensIssued, 2);
      assert.equal(fake.sent.length, 2);
    });
  });

  await t.step("a second refusal is not retried again", async () => {
    await withFake(async ({ fake, client }) => {
      fake.failNext(SEND, 42001, "access_token expired", 2);
      await assert.rejects(
        client.sendCustomMessage(text("oA", "x")),
        (err) => err instanceof WechatApiError && err.errcode === 42001,
      );
      assert.equal(callsTo(fake, SEND).length, 2);
      assert.equal(fake.sent.length, 0);
    });
  });
});

Deno.test("sendCustomMessage() passes WeChat's errors through", async (t) => {
  for (
    const [errcode, errmsg] of [
      [45015, "response out of time limit or subscription is canceled"],
      [45047, "out of response count limit"],
    ] as const
  ) {
    await t.step(`${errcode} is thrown as WechatApiError, not retried`, async () => {
      await withFake(async ({ fake, client, sleeps }) => {
        fake.failNext(SEND, errcode, errmsg);
        await assert.rejects(client.sendCustomMessage(text("oA", "late")), (err) => {
          assert.ok(err instanceof WechatApiError);
          assert.equal(err.errcode, errcode);
          assert.equal(err.errmsg, errmsg);
          return true;
        });
        assert.equal(callsTo(fake, SEND).length, 1);
        assert.deepEqual(sleeps, []);
      });
    });
  }

  await t.step("an invalid media_id is refused by WeChat with 40007", async () => {
    await withFake(async ({ client }) => {
      await assert.rejects(
        client.sendCustomMessage({ touser: "oA", msgtype: "image", image: { media_id: "nope" } }),
        (err) => err instanceof WechatApiError && err.errcode === 40007,
      );
    });
  });

  await t.step("onCall counts every attempt with its errcode", async () => {
    await withFake(async ({ fake, client, reports }) => {
      fake.failNext(SEND, 45047);
      await client.sendCustomMessage(text("oA", "ok")).catch(() => {});
      await client.sendCustomMessage(text("oA", "ok"));
      assert.deepEqual(reports, [
        ["stable_token", 0],
        ["message/custom/send", 45047],
        ["message/custom/send", 0],
      ]);
    });
  });
});

Deno.test("sendCustomMessage() never sends again what WeChat may have taken", async (t) => {
  // message/custom/send has no idempotency key: a second copy is a second message.
  const cases: Array<{ kind: string; fail: (fake: FakeWechat) => void; errmsg: RegExp }> = [
    { kind: "a reset", fail: (fake) => fake.dropNext(SEND, 4), errmsg: /^Cannot reach WeChat/ },
    { kind: "a 502", fail: (fake) => fake.failHttpNext(SEND, 502, 4), errmsg: /HTTP 502/ },
    { kind: "a timeout", fail: (fake) => fake.delay(SEND, 2000), errmsg: /no answer within/ },
  ];
  for (const { kind, fail, errmsg } of cases) {
    await t.step(`${kind} is tried once and thrown as -1`, async () => {
      await withFake(async ({ fake, client, sleeps, reports }) => {
        await client.sendCustomMessage(text("oA", "warm up"));
        fail(fake);
        const err = await client.sendCustomMessage(text("oA", "once")).catch((e) => e);
        assert.ok(err instanceof WechatApiError, String(err));
        assert.equal(err.errcode, -1);
        assert.match(err.errmsg, errmsg);
        assert.equal(callsTo(fake, SEND).length, 2);
        assert.deepEqual(sleeps, []);
        assert.deepEqual(reports.at(-1), ["message/custom/send", -1]);
        fake.delay(SEND, 0);
      }, { timeoutMs: 300 });
    });
  }
  await t.step("a refused connection is asked again: nothing reached WeChat", async () => {
    const closed = `http://127.0.0.1:${unusedPort()}`;
    let refusals = 2;
    // The send's first two tries meet a port nobody listens on: a real connect failure.
    const refusing: typeof fetch = (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.pathname.endsWith(SEND) && refusals-- > 0) {
        return fetch(`${closed}${url.pathname}`, init);
      }
      return fetch(input, init);
    };
    await withFake(async ({ fake, client, sleeps }) => {
      await client.sendCustomMessage(text("oA", "x"));
      assert.equal(fake.sent.length, 1);
      assert.deepEqual(sleeps, [250, 500]);
    }, { fetch: refusing });
  });
  await t.step("a reset after WeChat answered busy ends the send there", async () => {
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "warm up"));
      fake.failNext(SEND, -1, "system error");
      fake.dropNext(SEND, 3);
      await assert.rejects(
        client.sendCustomMessage(text("oA", "x")),
        (err) => err instanceof WechatApiError && err.errcode === -1,
      );
      assert.equal(callsTo(fake, SEND).length, 3);
    });
  });
  await t.step("a reset after a refused token ends the send there", async () => {
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "warm up"));
      fake.failNext(SEND, 40001, "invalid credential");
      fake.dropNext(SEND, 3);
      await assert.rejects(
        client.sendCustomMessage(text("oA", "x")),
        (err) => err instanceof WechatApiError && err.errcode === -1,
      );
      assert.equal(callsTo(fake, SEND).length, 3);
    });
  });
  await t.step("a reset on media/get is asked again: a read does nothing twice", async () => {
    await withFake(async ({ fake, client }) => {
      fake.addMedia("m1", new Uint8Array([1, 2, 3]), "image/jpeg");
      fake.dropNext("cgi-bin/media/get", 2);
      const media = await client.getMedia("m1");
      assert.deepEqual(media.kind === "file" && [...media.bytes], [1, 2, 3]);
      assert.equal(callsTo(fake, "cgi-bin/media/get").length, 3);
    });
  });
});

Deno.test("sendCustomMessage() retries transport failures with backoff", async (t) => {
  await t.step("WeChat's -1 (system busy: nothing done) twice, then through", async () => {
    await withFake(async ({ fake, client, sleeps }) => {
      await client.sendCustomMessage(text("oA", "warm up"));
      fake.failNext(SEND, -1, "system error", 2);
      await client.sendCustomMessage(text("oA", "x"));
      assert.equal(callsTo(fake, SEND).length, 4);
      assert.deepEqual(sleeps, [250, 500]);
      assert.equal(fake.sent.length, 2);
    });
  });

  await t.step("a token's dropped connection and 5xx are retried", async () => {
    await withFake(async ({ fake, client, sleeps }) => {
      fake.dropNext(TOKEN);
      fake.failHttpNext(TOKEN, 503);
      await client.sendCustomMessage(text("oA", "x"));
      assert.equal(callsTo(fake, TOKEN).length, 3);
      assert.equal(sleeps.length, 2);
      assert.equal(fake.sent.length, 1);
    });
  });

  await t.step("gives up after the configured retries", async () => {
    await withFake(async ({ fake, client, sleeps }) => {
      fake.failNext(SEND, -1, "system error", 10);
      await assert.rejects(
        client.sendCustomMessage(text("oA", "x")),
        (err) =>
          err instanceof WechatApiError && err.errcode === -1 && err.errmsg === "system error",
      );
      assert.equal(callsTo(fake, SEND).length, 4);
      assert.deepEqual(sleeps, [250, 500, 1000]);
    }, { retries: 3 });
  });

  await t.step("a refused connection is retried, then reported without secrets", async () => {
    const sleeps: number[] = [];
    const reports: number[] = [];
    const client = createWechatClient({
      apiBase: `http://127.0.0.1:${unusedPort()}`,
      appId: APP_ID,
      secret: SECRET,
      retries: 2,
      sleep: (ms) => {
        sleeps.push(ms);
        return Promise.resolve();
      },
      onCall: (_api, errcode) => reports.push(errcode),
    });
    await assert.rejects(client.sendCustomMessage(text("oA", "x")), (err) => {
      assert.ok(err instanceof WechatApiError);
      assert.equal(err.errcode, -1);
      assert.match(err.errmsg, /^Cannot reach WeChat/);
      assert.ok(!err.message.includes(SECRET));
      return true;
    });
    assert.deepEqual(reports, [-1, -1, -1]);
    assert.deepEqual(sleeps, [250, 500]);
  });

  await t.step("cgi-bin/token's secret stays out of a refused connection's errmsg", async () => {
    // Deno puts the URL, query and all, in the error's cause; cgi-bin/token's query has the secret.
    const closed = `http://127.0.0.1:${unusedPort()}`;
    const refusing: typeof fetch = (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.pathname.endsWith("cgi-bin/token")) {
        return fetch(`${closed}${url.pathname}${url.search}`, init);
      }
      return fetch(input, init);
    };
    await withFake(async ({ fake, client }) => {
      fake.failHttpNext(TOKEN, 404);
      await assert.rejects(client.sendCustomMessage(text("oA", "x")), (err) => {
        assert.ok(err instanceof WechatApiError);
        assert.match(err.errmsg, /Connection refused/);
        assert.ok(!err.message.includes(SECRET), err.message);
        return true;
      });
    }, { fetch: refusing, retries: 0 });
  });

  await t.step("a slow answer times out and counts as a failure", async () => {
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "warm up"));
      fake.delay(SEND, 2000);
      const started = performance.now();
      await assert.rejects(
        client.sendCustomMessage(text("oA", "x")),
        (err) => err instanceof WechatApiError && /no answer within 100 ms/.test(err.errmsg),
      );
      assert.ok(performance.now() - started < 1500);
    }, { timeoutMs: 100, retries: 0 });
  });

  await t.step("a slow WeChat does not hold other sends back", async () => {
    await withFake(async ({ fake, client }) => {
      await client.sendCustomMessage(text("oA", "warm up"));
      fake.delay(SEND, 400);
      const started = performance.now();
      await Promise.all(
        Array.from({ length: 5 }, (_, i) => client.sendCustomMessage(text(`o${i}`, "x"))),
      );
      // One after the other they would take 2 s.
      assert.ok(performance.now() - started < 1500);
      assert.equal(fake.sent.length, 6);
    });
  });
});

Deno.test("getMedia() downloads a follower's media", async (t) => {
  const bytes = new Uint8Array(3000).map((_, i) => i % 251);

  await t.step("a file comes with its content type and file name", async () => {
    await withFake(async ({ fake, client }) => {
      fake.addMedia("m-img", bytes, "image/jpeg", "photo 照片.jpg");
      const media = await client.getMedia("m-img");
      assert.equal(media.kind, "file");
      if (media.kind !== "file") return;
      assert.deepEqual(media.bytes, bytes);
      assert.equal(media.contentType, "image/jpeg");
      assert.equal(media.filename, "photo 照片.jpg");
      const call = callsTo(fake, "cgi-bin/media/get")[0];
      assert.equal(call?.query.media_id, "m-img");
    });
  });

  await t.step("a video answers with a URL that serves the bytes", async () => {
    await withFake(async ({ fake, client }) => {
      fake.addVideo("m-video", bytes);
      const media = await client.getMedia("m-video");
      assert.equal(media.kind, "video_url");
      if (media.kind !== "video_url") return;
      const res = await fetch(media.url);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
    });
  });

  await t.step("an unknown media_id throws WeChat's errcode", async () => {
    await withFake(async ({ client }) => {
      await assert.rejects(
        client.getMedia("missing"),
        (err) => err instanceof WechatApiError && err.errcode === 40007,
      );
    });
  });

  await t.step("a file over maxBytes throws RangeError", async () => {
    await withFake(async ({ fake, client }) => {
      fake.addMedia("m-big", bytes, "audio/amr");
      await assert.rejects(client.getMedia("m-big", { maxBytes: 1000 }), RangeError);
      const media = await client.getMedia("m-big", { maxBytes: 3000 });
      assert.equal(media.kind === "file" && media.bytes.byteLength, 3000);
    });
  });

  // A gateway in front of WeChat answering HTTP 200 with its own page, under whatever type.
  const page = new TextEncoder().encode(
    "\uFEFF\n<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
  );
  for (
    const [what, answer, type] of [
      ["an XHTML page", page, "application/xhtml+xml; charset=utf-8"],
      ["a page as text/plain", page, "text/plain; charset=utf-8"],
      ["a page as a file", page, "application/octet-stream"],
      ["a page as an image", new TextEncoder().encode("<html>\n<p>busy</p></html>"), "image/jpeg"],
      ["an empty answer", new Uint8Array(), "image/jpeg"],
    ] as const
  ) {
    await t.step(`${what} with HTTP 200 is tried again, then thrown`, async () => {
      await withFake(async ({ fake, client, sleeps }) => {
        fake.addMedia("m-gateway", answer, type);
        await assert.rejects(
          client.getMedia("m-gateway"),
          (err) => err instanceof WechatApiError && /media\/get answer/.test(err.message),
        );
        assert.equal(callsTo(fake, "cgi-bin/media/get").length, 4);
        assert.equal(sleeps.length, 3);
      });
    });
  }

  await t.step("a real file under a generic type is the file", async () => {
    await withFake(async ({ fake, client }) => {
      // A PNG, and bytes that only mention HTML further in.
      const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13);
      const mentions = new TextEncoder().encode("#!AMR\n<html> is not at the start");
      for (const [id, file] of [["m-png", png], ["m-amr", mentions]] as const) {
        fake.addMedia(id, file, "application/octet-stream");
        const media = await client.getMedia(id);
        assert.deepEqual(media.kind === "file" && media.bytes, file);
      }
    });
  });

  await t.step("a file under a text or JSON Content-Type is still the file", async () => {
    await withFake(async ({ fake, client }) => {
      const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10, 0, 0, 0, 13]);
      for (const type of ["text/plain", "application/json; charset=utf-8"]) {
        fake.addMedia(`m-${type}`, png, type);
        const media = await client.getMedia(`m-${type}`);
        assert.deepEqual(media.kind === "file" && media.bytes, png, type);
      }
      // WeChat's own errors come as text/plain JSON, and stay errors.
      fake.addMedia(
        "m-err",
        new TextEncoder().encode('{"errcode":40007,"errmsg":"x"}'),
        "text/plain",
      );
      await assert.rejects(
        client.getMedia("m-err"),
        (err) => err instanceof WechatApiError && err.errcode === 40007,
      );
    });
  });

  await t.step("an aborted download stops without retrying", async () => {
    await withFake(async ({ fake, client, sleeps }) => {
      fake.addMedia("m-slow", bytes, "image/png");
      fake.delay("cgi-bin/media/get", 300);
      const controller = new AbortController();
      const pending = client.getMedia("m-slow", { signal: controller.signal });
      setTimeout(() => controller.abort(new Error("agent left")), 50);
      await assert.rejects(pending, /agent left/);
      assert.deepEqual(sleeps, []);
    });
  });
});

Deno.test("uploadMedia() sends the file as multipart", async (t) => {
  const bytes = new Uint8Array(2048).map((_, i) => (i * 7) % 256);

  await t.step("the bytes reach WeChat and the media_id can be sent", async () => {
    await withFake(async ({ fake, client }) => {
      const mediaId = await client.uploadMedia("image", bytes, "reply.png", "image/png");
      const call = callsTo(fake, "cgi-bin/media/upload")[0];
      assert.equal(call?.query.type, "image");
      const upload = call?.body as FakeUpload;
      assert.equal(upload.media?.filename, "reply.png");
      assert.equal(upload.media?.contentType, "image/png");
      assert.deepEqual(upload.media?.bytes, bytes);
      await client.sendCustomMessage({
        touser: "oA",
        msgtype: "image",
        image: { media_id: mediaId },
      });
      const back = await client.getMedia(mediaId);
      assert.deepEqual(back.kind === "file" && back.bytes, bytes);
    });
  });

  await t.step("a thumbnail's id is read from thumb_media_id", async () => {
    await withFake(async ({ client }) => {
      const id = await client.uploadMedia("thumb", bytes, "t.jpg", "image/jpeg");
      assert.match(id, /^fake-thumb-/);
    });
  });

  await t.step("WeChat's size limit comes back as its errcode", async () => {
    await withFake(async ({ client }) => {
      await assert.rejects(
        client.uploadMedia("thumb", new Uint8Array(65 * 1024), "t.jpg", "image/jpeg"),
        (err) => err instanceof WechatApiError && err.errcode === 40012,
      );
    });
  });

  await t.step("a revoked token is refreshed and the upload sent again", async () => {
    await withFake(async ({ fake, client }) => {
      await client.uploadMedia("voice", bytes, "a.amr", "audio/amr");
      fake.revokeTokens();
      await client.uploadMedia("voice", bytes, "b.amr", "audio/amr");
      const uploads = callsTo(fake, "cgi-bin/media/upload");
      assert.equal(uploads.length, 3);
      assert.deepEqual((uploads[2]?.body as FakeUpload).media?.bytes, bytes);
    });
  });
});

Deno.test("typing() relays the indicator within WeChat's rules", async (t) => {
  let clock = Date.now();
  const typingCalls = (fake: FakeWechat) =>
    callsTo(fake, "cgi-bin/message/custom/typing").map((call) => {
      const body = call.body as { touser: string; command: string };
      return `${body.touser}:${body.command}`;
    });

  await t.step("once while shown, cancel only what was shown", async () => {
    await withFake(async ({ fake, client }) => {
      await client.typing("oA", false);
      await client.typing("oA", true);
      clock += 3000;
      await client.typing("oA", true);
      clock += 6000;
      await client.typing("oA", true);
      await client.typing("oB", true);
      await client.typing("oA", false);
      clock += 1000;
      await client.typing("oA", true);
      clock += 5000;
      await client.typing("oA", true);
      assert.deepEqual(typingCalls(fake), [
        "oA:Typing",
        "oB:Typing",
        "oA:CancelTyping",
        "oA:Typing",
      ]);
    }, { now: () => clock });
  });

  await t.step("a reply ends the indicator, so typing is relayed again", async () => {
    await withFake(async ({ fake, client }) => {
      await client.typing("oA", true);
      clock += 6000;
      await client.sendCustomMessage(text("oA", "done"));
      await client.typing("oA", true);
      await client.typing("oA", false);
      assert.deepEqual(typingCalls(fake), ["oA:Typing", "oA:Typing", "oA:CancelTyping"]);
    }, { now: () => clock });
  });
});
