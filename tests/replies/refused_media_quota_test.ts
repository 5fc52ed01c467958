// A reply whose media_url is refused never reaches WeChat, so it must not use up one of the five
// replies WeChat allows after a follower's message (an outside review found five typos locked an
// agent out until the follower wrote again).

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("refused media_url replies leave WeChat's reply quota untouched", async () => {
  const fake = await startFakeWechat({ appId: "wxquota", secret: "s" });
  const server = await startBridge({
    env: { WECHAT_APPID: "wxquota", WECHAT_SECRET: "s", WECHAT_API_BASE: fake.url },
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=q1`);
  try {
    await post(`${server.base}${B}/send_xml`, textXml("oQuota", "q1", "hi", "7700001"));
    await agent.waitFor((e) => e.data["id"] === "7700001");
    const send = (data: Record<string, unknown>) =>
      post(`${server.base}${B}/send?userid=q1`, JSON.stringify({ data }));
    for (let i = 0; i < 6; i++) {
      const res = await send({
        contact_id: "oQuota",
        msg_type: "image",
        msg: { media_url: `http://127.0.0.1:1/typo-${i}.jpg` },
      });
      assert.equal(res.status, 403, res.text);
    }
    // Five more, all real: each reaches WeChat.
    for (let i = 0; i < 5; i++) {
      const res = await send({ contact_id: "oQuota", msg_type: "text", msg: { content: `r${i}` } });
      assert.equal(res.status, 200, res.text);
    }
    assert.equal(fake.sent.length, 5);
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});
