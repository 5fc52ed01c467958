// WeChat's limits as WeChat applies them, end to end against the fake WeChat API: which menu
// taps open the 1-minute allowance, what 45015 and 45047 mean for the replies after them, and
// when "typing…" is relayed. What reaches WeChat is read from the fake's calls.

import assert from "node:assert/strict";
import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type TestAgent, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SEND = "cgi-bin/message/custom/send";
const TYPING = "cgi-bin/message/custom/typing";
const APPID = "wxlimits";
const SECRET = "secret";

let n = 8_100_000;

async function write(server: TestBridge, agent: TestAgent, follower: string) {
  const id = String(++n);
  const res = await post(`${server.base}${B}/send_xml`, textXml(follower, "gh_account", "hi", id));
  assert.equal(res.text, "success");
  await agent.waitFor((e) => e.data["id"] === id);
}

async function tap(server: TestBridge, agent: TestAgent, follower: string, event: string) {
  const time = String(1_700_000_000 + ++n);
  const xml =
    `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[${follower}]]></FromUserName><CreateTime>${time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[${event}]]></Event><EventKey><![CDATA[k]]></EventKey></xml>`;
  assert.equal((await post(`${server.base}${B}/send_xml`, xml)).text, "success");
  await agent.waitFor((e) =>
    e.data.msg?.["event"] === event && e.data.msg?.["follower_id"] === follower
  );
}

async function replyHttp(server: TestBridge, follower: string, content: string) {
  const body = {
    data: { msg_type: "text", contact_id: follower, msg: { content } },
    result: { code: 1001, message: "common" },
  };
  const res = await post(`${server.base}${B}/send?userid=L`, JSON.stringify(body), {
    "content-type": "application/json",
  });
  return { status: res.status, body: JSON.parse(res.text) };
}

async function typingHttp(server: TestBridge, follower: string) {
  const body = { data: { msg_type: "typing", contact_id: follower, msg: {} } };
  const res = await post(`${server.base}${B}/send?userid=L`, JSON.stringify(body), {
    "content-type": "application/json",
  });
  return { status: res.status, body: JSON.parse(res.text) };
}

const callsTo = (fake: FakeWechat, path: string) => fake.calls.filter((c) => c.path === path);

Deno.test("WeChat's reply limits, as WeChat applies them", async (t) => {
  const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
  let offset = 0;
  const server = await startBridge({
    env: { WECHAT_APPID: APPID, WECHAT_SECRET: SECRET, WECHAT_API_BASE: fake.url },
    now: () => Date.now() + offset,
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=L`);
  try {
    await t.step("a VIEW menu tap opens no window; CLICK does", async () => {
      await tap(server, agent, "o-view", "VIEW");
      const refused = await replyHttp(server, "o-view", "after view");
      assert.equal(refused.status, 403, JSON.stringify(refused.body));
      assert.equal(refused.body.data.limit, "window");
      await tap(server, agent, "o-click", "CLICK");
      assert.equal((await replyHttp(server, "o-click", "after click")).status, 200);
    });

    await t.step("GET contacts says of how many: 3 after a CLICK, 5 after a message", async () => {
      const listed = async () => {
        const res = await fetch(`${server.base}${B}/contacts?userid=L`);
        const body = await res.json() as { contacts: Array<Record<string, unknown>> };
        const c = body.contacts.find((c) => c["contact_id"] === "o-quota")!;
        return [c["replies_since_inbound"], c["reply_quota"]];
      };
      await tap(server, agent, "o-quota", "CLICK");
      assert.equal((await replyHttp(server, "o-quota", "one of three")).status, 200);
      assert.deepEqual(await listed(), [1, 3]);
      await write(server, agent, "o-quota");
      assert.deepEqual(await listed(), [0, 5]);
    });

    for (const errcode of [45015, 45047]) {
      await t.step(
        `after ${errcode} the bridge stops calling WeChat until the follower writes`,
        async () => {
          const follower = `o-closed-${errcode}`;
          await write(server, agent, follower);
          fake.failNext(SEND, errcode, "closed by WeChat");
          const failed = await replyHttp(server, follower, "first");
          assert.equal(failed.status, 502, JSON.stringify(failed.body));
          const calls = callsTo(fake, SEND).length;
          const refused = await replyHttp(server, follower, "second");
          assert.equal(refused.status, 403, JSON.stringify(refused.body));
          assert.equal(refused.body.data.limit, errcode === 45047 ? "quota" : "window");
          assert.match(refused.body.result.message, new RegExp(String(errcode)));
          assert.equal(callsTo(fake, SEND).length, calls, "WeChat was not called again");
          await write(server, agent, follower);
          assert.equal((await replyHttp(server, follower, "third")).status, 200);
        },
      );
    }

    await t.step("typing is relayed within 30 s of an exchange, not after", async () => {
      await write(server, agent, "o-typing");
      assert.equal((await typingHttp(server, "o-typing")).status, 200);
      const calls = callsTo(fake, TYPING).length;
      assert.ok(calls >= 1);
      offset += 31_000;
      const late = await typingHttp(server, "o-typing");
      assert.equal(late.status, 403, JSON.stringify(late.body));
      assert.equal(late.body.data.limit, "typing");
      assert.equal(callsTo(fake, TYPING).length, calls, "WeChat was not called");
      // A reply is an exchange too: typing is relayed again after it.
      assert.equal((await replyHttp(server, "o-typing", "back")).status, 200);
      assert.equal((await typingHttp(server, "o-typing")).status, 200);
    });
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});
