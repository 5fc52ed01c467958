// A client_id names one reply in one conversation. An agent's program that numbers its replies
// per conversation (c-1, c-2, … in each) sends `c-1` to two followers: the second was taken
// for the first one's duplicate, never sent, and answered with the first's result, on every
// store (with Redis, a bare "sending" that never ended).

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const APPID = "wxclientid";
const SECRET = "secret";
const REDIS_URL = await findTestRedis();

const isReplySent = (follower: string, clientId: string) => (e: Received) =>
  e.result.code === 102 && e.data.msg?.["event"] === "reply_sent" &&
  e.data.msg?.["client_id"] === clientId && e.data.msg?.["contact_id"] === follower;

const stores: Array<[string, Record<string, string> | null]> = [
  ["memory", { STORE: "memory" }],
  ["redis", REDIS_URL === null ? null : { STORE: "", REDIS_URL }],
];

for (const [kind, storeEnv] of stores) {
  Deno.test({
    name: `one client_id in two conversations is two replies, each sent (${kind})`,
    ignore: storeEnv === null,
    async fn() {
      const prefix = uniquePrefix("client-id-scope");
      const env = { ...storeEnv! };
      if (env.REDIS_URL) env.REDIS_URL = `${env.REDIS_URL}?prefix=${encodeURIComponent(prefix)}`;
      const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
      const server = await startBridge({
        env: { ...env, WECHAT_APPID: APPID, WECHAT_SECRET: SECRET, WECHAT_API_BASE: fake.url },
      });
      const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
      try {
        for (const [follower, msgId] of [["f-one", "8100001"], ["f-two", "8100002"]]) {
          const res = await post(
            `${server.base}${B}/send_xml`,
            textXml(follower!, "gh_x", "hi", msgId!),
          );
          assert.equal(res.text, "success");
          await agent.waitFor((e) => e.data["id"] === msgId);
        }
        for (const follower of ["f-one", "f-two"]) {
          agent.send({
            data: {
              msg_type: "text",
              contact_id: follower,
              client_id: "c-1",
              msg: { content: `to ${follower}` },
            },
          });
        }
        await agent.waitFor(isReplySent("f-one", "c-1"));
        await agent.waitFor(isReplySent("f-two", "c-1"));
        const sent = fake.sent.map((p) =>
          `${p["touser"]}: ${(p["text"] as { content: string }).content}`
        );
        assert.deepEqual(sent.sort(), ["f-one: to f-one", "f-two: to f-two"]);

        // The same client_id again in one conversation is still that reply's duplicate.
        fake.sent.splice(0);
        for (const [clientId, content] of [["c-1", "again"], ["c-2", "next"]]) {
          agent.send({
            data: { msg_type: "text", contact_id: "f-two", client_id: clientId, msg: { content } },
          });
        }
        // Replies to one follower leave in order: once c-2 is sent, a second c-1 would be.
        await agent.waitFor(isReplySent("f-two", "c-2"));
        assert.deepEqual(fake.sent.map((p) => (p["text"] as { content: string }).content), [
          "next",
        ]);
      } finally {
        await agent.close();
        await server.close();
        await fake.close();
        if (env.REDIS_URL) await flushPrefix(REDIS_URL!, prefix);
      }
    },
  });
}
