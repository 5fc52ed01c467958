// Agents' replies end to end (issue #4): a real bridge, real agent sockets and the fake WeChat
// API. What WeChat receives is read from the fake's `sent` and `calls`; what the agent is told is
// read from its sockets.

import assert from "node:assert/strict";
import { type FakeUpload, type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SEND = "cgi-bin/message/custom/send";
const TYPING = "cgi-bin/message/custom/typing";
const UPLOAD = "cgi-bin/media/upload";
const APPID = "wxtest";
const SECRET = "secret";
const HOUR = 3600_000;

/** Polls `check` until it gives a value; fails naming `what` after `timeoutMs`. */
async function until<T>(
  check: () => T | undefined | null | false,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== null && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let msgCounter = 7_000_000;

/** The follower writes "hi" to the account; resolves once `agent` has the message. */
async function write(server: TestBridge, agent: TestAgent, follower: string, to = "gh_account") {
  const msgId = String(++msgCounter);
  const res = await post(`${server.base}${B}/send_xml`, textXml(follower, to, "hi", msgId));
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
  await agent.waitFor((e) =>
    e.result.code === 1001 && e.data["contact_id"] === follower && e.data["id"] === msgId
  );
}

function eventXml(follower: string, event: string, key = ""): string {
  const time = String(1_700_000_000 + ++msgCounter);
  return `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[${follower}]]></FromUserName><CreateTime>${time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[${event}]]></Event><EventKey><![CDATA[${key}]]></EventKey></xml>`;
}

function replyBody(
  follower: string,
  clientId: string,
  msgType: string,
  msg: Record<string, unknown>,
) {
  return {
    data: { msg_type: msgType, contact_id: follower, client_id: clientId, msg },
    result: { code: 1001, message: "common" },
  };
}

function reply(
  agent: TestAgent,
  follower: string,
  clientId: string,
  msgType = "text",
  msg: Record<string, unknown> = { content: `reply ${clientId}` },
) {
  agent.send(replyBody(follower, clientId, msgType, msg));
}

const isReplySent = (clientId: string) => (e: Received) =>
  e.result.code === 102 && e.data.msg?.["event"] === "reply_sent" &&
  e.data.msg?.["client_id"] === clientId;

const isError = (clientId: string) => (e: Received) =>
  e.result.code === -1 && e.data["client_id"] === clientId;

const isEcho = (clientId: string) => (e: Received) =>
  e.data["direction"] === "out" && e.data["client_id"] === clientId;

const sendCalls = (fake: FakeWechat) => fake.calls.filter((c) => c.path === SEND);

/** A fake clock: real time plus whatever the test jumped. */
function fakeClock() {
  let offset = 0;
  return { now: () => Date.now() + offset, jump: (ms: number) => (offset += ms) };
}

function wechatEnv(fake: FakeWechat, extra: Record<string, string> = {}) {
  return { WECHAT_APPID: APPID, WECHAT_SECRET: SECRET, WECHAT_API_BASE: fake.url, ...extra };
}

Deno.test("agents' replies reach WeChat's customer-service API", async (t) => {
  const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
  const clock = fakeClock();
  // What an agent's media_url points at: an intranet file server the operator allows.
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4, 5]);
  const files = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) =>
      new URL(req.url).pathname === "/files/pic.png"
        ? new Response(png, { headers: { "content-type": "image/png" } })
        : new Response("not found", { status: 404 }),
  );
  const server = await startBridge({
    env: wechatEnv(fake, { MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}` }),
    now: clock.now,
  });
  const agentUrl = `${server.wsBase}${B}/msg?userid=A`;
  const agent = await connectAgent(agentUrl);
  const other = await connectAgent(agentUrl);
  // Each socket may send 10 messages a second (burst 20): later steps use a socket of their own.
  async function onNewSocket(fn: (socket: TestAgent) => Promise<void>): Promise<void> {
    const socket = await connectAgent(agentUrl);
    try {
      await fn(socket);
    } finally {
      await socket.close();
    }
  }
  try {
    const f1 = "oFollower1";
    await write(server, agent, f1);

    await t.step("a text reply is sent as WeChat's text JSON and confirmed", async () => {
      reply(agent, f1, "c1", "text", { content: "hello" });
      const done = await agent.waitFor(isReplySent("c1"));
      assert.deepEqual(fake.sent.at(-1), {
        touser: f1,
        msgtype: "text",
        text: { content: "hello" },
      });
      assert.equal(done.data["contact_id"], "system01");
      assert.equal(done.data.msg?.["contact_id"], f1);
      assert.equal(typeof done.data.msg?.["reply_id"], "string");
      assert.equal(fake.tokensIssued, 1);
    });

    await t.step("the agent's other socket sees the echo and the reply_sent", async () => {
      const echo = await other.waitFor(isEcho("c1"));
      assert.equal(echo.result.code, 1001);
      assert.equal(echo.data["agent_id"], "A");
      assert.equal(echo.data["contact_id"], f1);
      assert.equal(echo.data["status"], "sending");
      assert.deepEqual(echo.data.msg, { content: "hello" });
      const sent = await other.waitFor(isReplySent("c1"));
      const own = await agent.waitFor(isReplySent("c1"));
      assert.equal(sent.data.msg?.["reply_id"], own.data.msg?.["reply_id"]);
      assert.equal(sent.data.msg?.["reply_id"], echo.data["id"]);
      // The sending socket gets the echo too.
      await agent.waitFor(isEcho("c1"));
    });

    await t.step("an image reply with a media_id is sent as is", async () => {
      fake.addMedia("img-known", png, "image/png", "known.png");
      reply(agent, f1, "c2", "image", { media_id: "img-known" });
      await agent.waitFor(isReplySent("c2"));
      assert.deepEqual(fake.sent.at(-1), {
        touser: f1,
        msgtype: "image",
        image: { media_id: "img-known" },
      });
    });

    await t.step(
      "an image reply with a media_url is uploaded, then sent by its new id",
      async () => {
        const before = fake.calls.length;
        const mediaUrl = `http://127.0.0.1:${files.addr.port}/files/pic.png`;
        reply(agent, f1, "c3", "image", { media_url: mediaUrl });
        await agent.waitFor(isReplySent("c3"));
        const calls = fake.calls.slice(before);
        const uploadAt = calls.findIndex((c) => c.path === UPLOAD);
        const sendAt = calls.findIndex((c) => c.path === SEND);
        assert.ok(uploadAt >= 0 && sendAt > uploadAt, JSON.stringify(calls.map((c) => c.path)));
        const upload = calls[uploadAt]!;
        assert.equal(upload.query["type"], "image");
        const part = (upload.body as FakeUpload).media;
        assert.ok(part);
        assert.deepEqual(part.bytes, png);
        assert.equal(part.filename, "pic.png");
        assert.equal(part.contentType, "image/png");
        const sent = fake.sent.at(-1) as { touser: string; image: { media_id: string } };
        assert.equal(sent.touser, f1);
        assert.match(sent.image.media_id, /^fake-image-/);
        assert.deepEqual(calls[sendAt]!.body, sent);
      },
    );

    await t.step("a news reply is sent as one article", async () => {
      const card = {
        title: "Order shipped",
        description: "Track it here",
        url: "https://example.com/track/1",
        picurl: "https://example.com/pic.jpg",
      };
      reply(agent, f1, "c4", "news", card);
      await agent.waitFor(isReplySent("c4"));
      assert.deepEqual(fake.sent.at(-1), {
        touser: f1,
        msgtype: "news",
        news: { articles: [card] },
      });
    });

    await t.step("a miniprogrampage reply is sent with its fields", async () => {
      fake.addMedia("thumb-1", png, "image/png");
      const page = {
        title: "Shop",
        appid: "wxminiapp",
        pagepath: "pages/index?x=1",
        thumb_media_id: "thumb-1",
      };
      reply(agent, f1, "c5", "miniprogrampage", page);
      await agent.waitFor(isReplySent("c5"));
      assert.deepEqual(fake.sent.at(-1), {
        touser: f1,
        msgtype: "miniprogrampage",
        miniprogrampage: page,
      });
    });

    await t.step(
      "a sixth reply to one message is refused (quota) before WeChat sees it",
      async () => {
        const sent = fake.sent.length;
        const calls = sendCalls(fake).length;
        reply(agent, f1, "c6");
        const refused = await agent.waitFor(isError("c6"));
        assert.equal(refused.data["limit"], "quota");
        assert.equal(refused.data["contact_id"], f1);
        assert.equal(fake.sent.length, sent);
        assert.equal(sendCalls(fake).length, calls);
        // The follower writes again: the quota starts over.
        await write(server, agent, f1);
        reply(agent, f1, "c7");
        await agent.waitFor(isReplySent("c7"));
        assert.equal(fake.sent.length, sent + 1);
      },
    );

    await t.step("20 replies use one access token", async () => {
      await onNewSocket(async (bulk) => {
        const before = sendCalls(fake).length;
        for (let i = 0; i < 4; i++) {
          const follower = `oBulk${i}`;
          await write(server, bulk, follower);
          for (let j = 0; j < 5; j++) reply(bulk, follower, `bulk-${i}-${j}`);
          for (let j = 0; j < 5; j++) await bulk.waitFor(isReplySent(`bulk-${i}-${j}`));
        }
        const calls = sendCalls(fake).slice(before);
        assert.equal(calls.length, 20);
        assert.equal(new Set(calls.map((c) => c.query["access_token"])).size, 1);
        assert.equal(fake.tokensIssued, 1);
        assert.equal(fake.calls.filter((c) => c.path === "cgi-bin/stable_token").length, 1);
      });
    });

    await t.step("a revoked token is refreshed and the reply is sent once", async () => {
      await onNewSocket(async (socket) => {
        await write(server, socket, f1);
        const sent = fake.sent.length;
        const calls = sendCalls(fake).length;
        fake.revokeTokens();
        reply(socket, f1, "after-revoke");
        await socket.waitFor(isReplySent("after-revoke"));
        assert.equal(fake.tokensIssued, 2);
        assert.equal(fake.sent.length, sent + 1);
        const tries = sendCalls(fake).slice(calls);
        assert.equal(tries.length, 2, "one refused with 40001, one with the new token");
        assert.notEqual(tries[0]!.query["access_token"], tries[1]!.query["access_token"]);
      });
    });

    for (
      const [errcode, errmsg] of [
        [45015, "response out of time limit or subscription is canceled"],
        [45047, "out of response count limit"],
      ] as const
    ) {
      await t.step(`WeChat's ${errcode} comes back to the agent as a -1`, async () => {
        await onNewSocket(async (socket) => {
          await write(server, socket, f1);
          const sent = fake.sent.length;
          fake.failNext(SEND, errcode, errmsg);
          const clientId = `fail-${errcode}`;
          reply(socket, f1, clientId);
          for (const s of [socket, other]) {
            const error = await s.waitFor((e) => isError(clientId)(e) && "errcode" in e.data);
            assert.equal(error.data["errcode"], errcode);
            assert.equal(error.data["errmsg"], errmsg);
            assert.equal(error.data["contact_id"], f1);
            assert.equal(typeof error.data["reply_id"], "string");
            assert.match(error.result.message, new RegExp(String(errcode)));
          }
          assert.equal(fake.sent.length, sent);
          assert.equal(socket.received.filter(isReplySent(clientId)).length, 0);
        });
      });
    }

    await t.step("one refusal from WeChat is one -1 on the sending socket", async () => {
      await onNewSocket(async (socket) => {
        await write(server, socket, f1);
        // Not 45015 or 45047: those close the window, and "after-fail" would be refused.
        fake.failNext(SEND, 40003, "invalid openid");
        reply(socket, f1, "fail-once");
        await socket.waitFor(isError("fail-once"));
        // The socket handles its messages in order: once this one is confirmed, everything the
        // bridge had to say about "fail-once" has been said.
        reply(socket, f1, "after-fail");
        await socket.waitFor(isReplySent("after-fail"));
        const errors = socket.received.filter(isError("fail-once"));
        assert.equal(errors.length, 1, JSON.stringify(errors));
      });
    });

    await t.step("a duplicate client_id is sent once", async () => {
      await onNewSocket(async (socket) => {
        await write(server, socket, f1);
        const sent = fake.sent.length;
        reply(socket, f1, "dup", "text", { content: "only once" });
        reply(socket, f1, "dup", "text", { content: "only once" });
        // Replies to one follower leave in order: once this one is sent, a second "dup" would be.
        reply(socket, f1, "after-dup");
        await socket.waitFor(isReplySent("after-dup"));
        await other.waitFor(isReplySent("after-dup"));
        assert.equal(fake.sent.length, sent + 2);
        const dups = fake.sent.filter((p) =>
          (p["text"] as { content?: string } | undefined)?.content === "only once"
        );
        assert.equal(dups.length, 1);
        assert.equal(socket.received.filter(isReplySent("dup")).length, 1);
        assert.equal(other.received.filter(isEcho("dup")).length, 1);
      });
    });

    await t.step("typing is relayed to custom/typing", async () => {
      await onNewSocket(async (socket) => {
        const before = fake.calls.length;
        socket.send({ data: { msg_type: "typing", contact_id: f1, msg: {} } });
        const on = await until(
          () => fake.calls.slice(before).find((c) => c.path === TYPING),
          "a Typing call",
        );
        assert.deepEqual(on.body, { touser: f1, command: "Typing" });
        socket.send({ data: { msg_type: "typing", contact_id: f1, msg: { on: false } } });
        const off = await until(
          () => fake.calls.slice(before).filter((c) => c.path === TYPING)[1],
          "a CancelTyping call",
        );
        assert.deepEqual(off.body, { touser: f1, command: "CancelTyping" });
      });
    });

    await t.step("POST send with a reply answers 200 with status sent", async () => {
      await write(server, other, f1);
      const res = await post(
        `${server.base}${B}/send?userid=A`,
        JSON.stringify(replyBody(f1, "http-1", "text", { content: "over http" })),
        { "content-type": "application/json" },
      );
      assert.equal(res.status, 200, res.text);
      const body = JSON.parse(res.text);
      assert.equal(body.data.status, "sent");
      assert.equal(body.data.client_id, "http-1");
      assert.equal(body.data.contact_id, f1);
      assert.deepEqual(fake.sent.at(-1), {
        touser: f1,
        msgtype: "text",
        text: { content: "over http" },
      });
      await other.waitFor(isReplySent("http-1"));
    });

    await t.step("POST send answers WeChat's refusal as a -1", async () => {
      const sent = fake.sent.length;
      fake.failNext(SEND, 45047, "out of response count limit");
      const res = await post(
        `${server.base}${B}/send?userid=A`,
        JSON.stringify(replyBody(f1, "http-2", "text", { content: "refused" })),
        { "content-type": "application/json" },
      );
      assert.equal(res.status, 502, res.text);
      const body = JSON.parse(res.text);
      assert.equal(body.result.code, -1);
      assert.equal(body.data.errcode, 45047);
      assert.equal(body.data.errmsg, "out of response count limit");
      assert.equal(body.data.client_id, "http-2");
      assert.equal(fake.sent.length, sent);
    });

    for (const event of ["subscribe", "SCAN", "CLICK"]) {
      await t.step(`3 replies within a minute of ${event}, the 4th refused (quota)`, async () => {
        await onNewSocket(async (socket) => {
          const follower = `oEvent${event}`;
          const res = await post(`${server.base}${B}/send_xml`, eventXml(follower, event, "k1"));
          assert.equal(res.text, "success");
          await socket.waitFor((e) =>
            e.result.code === 102 && e.data.msg?.["event"] === event &&
            e.data.msg?.["follower_id"] === follower
          );
          for (let i = 0; i < 3; i++) reply(socket, follower, `${event}-${i}`);
          for (let i = 0; i < 3; i++) await socket.waitFor(isReplySent(`${event}-${i}`));
          const sent = fake.sent.length;
          const calls = sendCalls(fake).length;
          reply(socket, follower, `${event}-3`);
          const refused = await socket.waitFor(isError(`${event}-3`));
          assert.equal(refused.data["limit"], "quota");
          assert.equal(refused.data["contact_id"], follower);
          assert.equal(fake.sent.length, sent);
          assert.equal(sendCalls(fake).length, calls);
        });
      });
    }

    await t.step("a reply more than a minute after a menu tap is refused (window)", async () => {
      await onNewSocket(async (socket) => {
        const follower = "oClickLate";
        await post(`${server.base}${B}/send_xml`, eventXml(follower, "CLICK", "menu"));
        await socket.waitFor((e) =>
          e.data.msg?.["event"] === "CLICK" && e.data.msg?.["follower_id"] === follower
        );
        reply(socket, follower, "click-early");
        await socket.waitFor(isReplySent("click-early"));
        clock.jump(61_000);
        const sent = fake.sent.length;
        const calls = sendCalls(fake).length;
        reply(socket, follower, "click-late");
        const refused = await socket.waitFor(isError("click-late"));
        assert.equal(refused.data["limit"], "window");
        assert.equal(fake.sent.length, sent);
        assert.equal(sendCalls(fake).length, calls);
      });
    });

    await t.step(
      "a menu tap does not cut short the 48 h window of an earlier message",
      async () => {
        await onNewSocket(async (socket) => {
          // window.ts noteInbound(): an event keeps an open message window with replies left.
          const follower = "oWroteThenTapped";
          await write(server, socket, follower);
          await post(`${server.base}${B}/send_xml`, eventXml(follower, "CLICK", "menu"));
          await socket.waitFor((e) =>
            e.data.msg?.["event"] === "CLICK" && e.data.msg?.["follower_id"] === follower
          );
          clock.jump(61_000);
          reply(socket, follower, "tapped-later");
          const answer = await socket.waitFor((e) =>
            isReplySent("tapped-later")(e) || isError("tapped-later")(e)
          );
          assert.equal(answer.result.code, 102, JSON.stringify(answer));
        });
      },
    );

    await t.step("a reply 49 hours after the follower's message is refused (window)", async () => {
      await onNewSocket(async (socket) => {
        const follower = "oLate";
        const wroteAt = clock.now();
        await write(server, socket, follower);
        clock.jump(49 * HOUR);
        const sent = fake.sent.length;
        const calls = sendCalls(fake).length;
        reply(socket, follower, "late");
        const refused = await socket.waitFor(isError("late"));
        assert.equal(refused.data["limit"], "window");
        assert.equal(refused.data["contact_id"], follower);
        const closedAt = refused.data["window_closed_at"] as number;
        assert.ok(Math.abs(closedAt - (wroteAt + 48 * HOUR) / 1000) < 5, String(closedAt));
        assert.equal(fake.sent.length, sent);
        assert.equal(sendCalls(fake).length, calls);
        // The refusal is not held against the client_id: once the follower writes, it goes.
        await write(server, socket, follower);
        reply(socket, follower, "late");
        await socket.waitFor(isReplySent("late"));
        assert.equal(fake.sent.length, sent + 1);
      });
    });
  } finally {
    await agent.close();
    await other.close();
    await server.close();
    await files.shutdown();
    await fake.close();
  }
});

Deno.test("a slow WeChat send to one follower does not hold up another's", async (t) => {
  const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
  // The fake's delay applies to every call on a path; this one holds only sends to oSlow.
  const slowMs = 3000;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const slowFetch: typeof fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url.includes(SEND) && typeof init?.body === "string") {
      if (JSON.parse(init.body).touser === "oSlow") {
        await new Promise((r) => {
          const id = setTimeout(() => (timers.delete(id), r(null)), slowMs);
          timers.add(id);
        });
      }
    }
    return await fetch(input, init);
  };
  const server = await startBridge({ env: wechatEnv(fake), fetch: slowFetch });
  const a = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  const b = await connectAgent(`${server.wsBase}${B}/msg?userid=B`);
  try {
    await write(server, a, "oSlow", "A");
    await write(server, b, "oFast", "B");
    await write(server, a, "oOther", "A");

    await t.step("agent B's reply to another follower goes while A's send waits", async () => {
      const started = Date.now();
      reply(a, "oSlow", "slow-1");
      await a.waitFor(isEcho("slow-1"));
      reply(b, "oFast", "fast-1");
      await b.waitFor(isReplySent("fast-1"));
      const took = Date.now() - started;
      assert.ok(took < slowMs - 1000, `B's reply took ${took} ms`);
      assert.deepEqual(fake.sent.map((p) => p["touser"]), ["oFast"]);
      await a.waitFor(isReplySent("slow-1"), slowMs + 3000);
      assert.deepEqual(fake.sent.map((p) => p["touser"]), ["oFast", "oSlow"]);
    });

    await t.step("the same agent's reply to another follower goes while one waits", async () => {
      const started = Date.now();
      reply(a, "oSlow", "slow-2");
      await a.waitFor(isEcho("slow-2"));
      reply(a, "oOther", "other-1");
      await a.waitFor(isReplySent("other-1"), slowMs + 3000);
      const took = Date.now() - started;
      const order = fake.sent.slice(2).map((p) => p["touser"]);
      // Wait for the slow one before judging, so nothing is left running.
      await a.waitFor(isReplySent("slow-2"), slowMs + 3000);
      assert.ok(took < slowMs - 1000, `A's reply to oOther took ${took} ms; order ${order}`);
    });
  } finally {
    await a.close();
    await b.close();
    await server.close();
    for (const id of timers) clearTimeout(id);
    await fake.close();
  }
});

Deno.test("demo mode: without credentials a reply lands in the demo outbox", async (t) => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    const follower = "oDemo";
    await write(server, agent, follower);
    await t.step("the reply is listed for the follower simulator", async () => {
      reply(agent, follower, "demo-1", "text", { content: "hello from demo" });
      await agent.waitFor(isReplySent("demo-1"));
      const res = await fetch(`${server.base}${B}/demo/replies?contact_id=${follower}&since=0`);
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.replies.length, 1);
      assert.equal(body.replies[0].msg_type, "text");
      assert.deepEqual(body.replies[0].msg, { content: "hello from demo" });
      assert.equal(body.replies[0].agent_id, "A");
      assert.equal(body.next_since, body.replies[0].n);
      const later = await fetch(
        `${server.base}${B}/demo/replies?contact_id=${follower}&since=${body.next_since}`,
      );
      assert.deepEqual((await later.json()).replies, []);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});
