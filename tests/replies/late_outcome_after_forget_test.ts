// WeChat answers a reply seconds after it was sent. Meanwhile the follower revoked its
// authorization (user_authorization_revoke: its history is deleted) and wrote again, and its new
// conversation's history numbers started over: the old reply's outcome was written on the new
// item that took its number. It lands only on its own reply, now gone. As an agent over a real
// socket against the fake WeChat, on every store main.ts can open.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, fullHistory, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const SEND = "/cgi-bin/message/custom/send";
const AGENT = "qa";
const REDIS_URL = await findTestRedis();

/** The revoke event as WeChat's push service sends it (its doc's sample, tests/fixtures). */
const revokeXml = (openId: string) =>
  `<xml><ToUserName><![CDATA[gh_870882ca4b1]]></ToUserName><FromUserName><![CDATA[owAqB1v0ahK_Xlc7GshIDdf2yf7E]]></FromUserName><CreateTime>1626857200</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[${openId}]]></OpenID><AppID><![CDATA[wx13974bf780d3dc89]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>`;

const stores: Array<{ name: string; env: () => Record<string, string>; prefix?: string }> = [
  { name: "memory", env: () => ({ STORE: "memory" }) },
  { name: "SQLite", env: () => ({ STORE: "sqlite" }) },
  { name: "Deno KV", env: () => ({ STORE: "kv" }) },
];
if (REDIS_URL !== null) {
  const prefix = uniquePrefix("late_outcome");
  stores.push({
    name: "Redis",
    env: () => ({ STORE: "", REDIS_URL: `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}` }),
    prefix,
  });
}

/** Holds the next customer-service send on its way to the fake until `release()`. */
function createSendGate() {
  let armed = false;
  const arrived = Promise.withResolvers<void>();
  const released = Promise.withResolvers<void>();
  const gatedFetch: typeof fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (armed && new URL(url).pathname === SEND) {
      armed = false;
      arrived.resolve();
      await released.promise;
    }
    return await fetch(input, init);
  };
  return {
    fetch: gatedFetch,
    holdNext: () => {
      armed = true;
      return arrived.promise;
    },
    release: () => released.resolve(),
  };
}

const sentNotice = (clientId: string) => (e: Received) =>
  e.data.msg?.["event"] === "reply_sent" && e.data.msg?.["client_id"] === clientId;

for (const store of stores) {
  Deno.test(`a reply's outcome after a forget does not land on the new conversation (${store.name})`, async () => {
    const fake = await startFakeWechat({ appId: "wxlate", secret: "s" });
    const gate = createSendGate();
    const server = await startBridge({
      env: {
        ...store.env(),
        WECHAT_APPID: "wxlate",
        WECHAT_SECRET: "s",
        WECHAT_API_BASE: fake.url,
      },
      fetch: gate.fetch,
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=${AGENT}`);
    try {
      await waitRouted(server, AGENT);
      const writes = async (content: string, id: string) => {
        const res = await post(`${server.base}${B}/send_xml`, textXml("oLate", "gh", content, id));
        assert.equal(`${res.status} ${res.text}`, "200 success");
        await agent.waitFor((e) => e.data["id"] === id);
      };
      await writes("first", "8820001");
      // The reply is number 2, and WeChat has not answered it yet.
      const held = gate.holdNext();
      agent.send({
        data: { msg_type: "text", contact_id: "oLate", client_id: "old", msg: { content: "old" } },
      });
      await held;
      const revoked = await post(`${server.base}${B}/send_xml`, revokeXml("oLate"));
      assert.equal(revoked.status, 200, revoked.text);
      await writes("again", "8820002");
      await writes("and again", "8820003");

      gate.release();
      await agent.waitFor(sentNotice("old"), 10_000);
      // The outcome is in the store before its notice is sent; SQLite's tables have it once
      // the history read waits for them.
      const history = await fullHistory(server.base, AGENT, "oLate");
      assert.deepEqual(
        history.map((m) => [(m["msg"] as Record<string, unknown>)["content"], m["status"] ?? null]),
        [["again", null], ["and again", null]],
      );
    } finally {
      gate.release();
      await agent.close();
      await server.close();
      await fake.close();
      if (store.prefix) await flushPrefix(REDIS_URL!, store.prefix);
    }
  });
}
