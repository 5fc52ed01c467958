// AGENT_KF_ACCOUNTS (and an account's kf_accounts) is a plain object looked up by agent id: an
// agent whose userid names a property every object has (`constructor`, `toString`) got
// Object.prototype's function as its customer-service account, and every reply it sent went to
// WeChat with a `customservice` WeChat does not know (`{}` once JSON dropped the function). Now
// only the agents listed carry one. Through a real bridge and the fake WeChat, as an agent and
// WeChat would.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

for (const agentId of ["constructor", "toString"]) {
  Deno.test(`agent ${agentId}'s replies carry no customservice of Object.prototype's`, async () => {
    const fake = await startFakeWechat({ appId: "wxkeys", secret: "s" });
    const server = await startBridge({
      env: { WECHAT_APPID: "wxkeys", WECHAT_SECRET: "s", WECHAT_API_BASE: fake.url },
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=${agentId}`);
    try {
      await waitRouted(server, agentId);
      const hi = await post(`${server.base}${B}/send_xml`, textXml("oKeys", "gh", "hi", "8870001"));
      assert.equal(hi.text, "success");
      await agent.waitFor((e) => e.data["id"] === "8870001");
      const res = await fetch(`${server.base}${B}/send?userid=${agentId}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          data: { msg_type: "text", contact_id: "oKeys", msg: { content: "hello" } },
        }),
      });
      assert.equal(res.status, 200, await res.text());
      assert.deepEqual(fake.sent, [{
        touser: "oKeys",
        msgtype: "text",
        text: { content: "hello" },
      }]);
    } finally {
      await agent.close();
      await server.close();
      await fake.close();
    }
  });
}
