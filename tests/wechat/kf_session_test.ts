// WeChat's legacy multi-customer-service system reports sessions it opened, closed or moved
// (kf_create_session, kf_close_session, kf_switch_session; wechatpy's samples). The follower did
// nothing: SPEC "Not every XML is a follower speaking" (no bind, no window), and the follower's
// agent, if it has one, is told, as news about that conversation, not as something to read.

import assert from "node:assert/strict";
import { post, textXml } from "../helpers/agent.ts";
import { connectRoutedAgent, startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const FOLLOWER = "fromuser";
const KF_EVENTS = ["kf_create_session", "kf_close_session", "kf_switch_session"];

const fixture = (name: string) =>
  Deno.readTextFile(new URL(`../fixtures/wechat/wechatpy/${name}.xml`, import.meta.url));

async function postXml(base: string, xml: string): Promise<void> {
  const res = await post(`${base}${B}/send_xml`, xml);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
}

Deno.test("kf session events bind nobody, queue nobody, and reach only a bound agent", async (t) => {
  const server = await startBridge();
  try {
    await t.step("an unknown follower: no contact, not waiting, no notice", async () => {
      // No agent online: a follower's message would wait, and the next agent would get it.
      for (const name of KF_EVENTS) await postXml(server.base, await fixture(name));
      assert.equal(await server.store.getContact(FOLLOWER), null);
      assert.deepEqual(await server.store.listWaiting(), []);
      const agent = await connectRoutedAgent(server, "kf-agent");
      try {
        await postXml(server.base, textXml("o-marker", "touser", "marker", "9101"));
        await agent.waitFor((e) => e.data["id"] === "9101");
        const about = agent.messages().filter((e) =>
          e.data["contact_id"] === FOLLOWER || e.data.msg?.["follower_id"] === FOLLOWER
        );
        assert.deepEqual(about, []);
        assert.equal(await server.store.getContact(FOLLOWER), null);
      } finally {
        await agent.close();
      }
    });
    await t.step(
      "a bound follower: its agent gets a 102; unread and window unchanged",
      async () => {
        const agent = await connectRoutedAgent(server, "kf-agent");
        try {
          await postXml(server.base, textXml(FOLLOWER, "touser", "你好", "9102"));
          await agent.waitFor((e) => e.data["id"] === "9102");
          const before = (await server.store.getContact(FOLLOWER))!;
          assert.equal(before.agent_id, "kf-agent");
          assert.equal(before.unread, 1);
          const history = (await server.store.readHistory(FOLLOWER, null, 50)).items.length;
          // Another switch than the one of the first step (that one's retries are dropped).
          const again = (await fixture("kf_switch_session")).replace("1399197672", "1399197999");
          await postXml(server.base, again);
          const e = await agent.waitFor((e) => e.data.msg?.["event"] === "kf_switch_session");
          assert.equal(e.result.code, 102);
          assert.equal(e.data.msg?.["follower_id"], FOLLOWER);
          assert.match(e.data.msg?.["text"] as string, /test1@test.*test2@test/);
          const after = (await server.store.getContact(FOLLOWER))!;
          assert.equal(after.unread, 1, "a kf report is not something the follower wrote");
          assert.equal(after.last_inbound_at, before.last_inbound_at);
          assert.equal(after.last_message_at, before.last_message_at);
          assert.equal((await server.store.readHistory(FOLLOWER, null, 50)).items.length, history);
        } finally {
          await agent.close();
        }
      },
    );
  } finally {
    await server.close();
  }
});
