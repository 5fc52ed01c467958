// user_authorization_revoke (WeChat: 及时删除该用户信息) deletes the follower's contact, history
// and queue, but each agent's log keeps what it was sent for at least 48 h: an agent (or anyone
// holding its token) reconnecting with since=0 was handed the forgotten follower's messages
// and the replies to them again. The replay leaves them out; everything else comes back.

import assert from "node:assert/strict";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

/** The revoke event as WeChat's push service sends it (its doc's sample, tests/fixtures). */
const revokeXml = (openId: string) =>
  `<xml><ToUserName><![CDATA[gh_870882ca4b1]]></ToUserName><FromUserName><![CDATA[owAqB1v0ahK_Xlc7GshIDdf2yf7E]]></FromUserName><CreateTime>1626857200</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[${openId}]]></OpenID><AppID><![CDATA[wx13974bf780d3dc89]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>`;

const revoked = (e: Received) => e.data.msg?.["event"] === "user_authorization_revoke";
const aboutGone = (e: Received) =>
  e.data.contact_id === "oGone" || JSON.stringify(e).includes("13800000000");

for (const store of ["memory", "sqlite"]) {
  Deno.test(`a forgotten follower's messages are not replayed with since= (${store})`, async () => {
    const server = await startBridge({ env: { STORE: store } });
    try {
      const now = String(Math.floor(Date.now() / 1000));
      let agent = await connectAgent(`${server.wsBase}${B}/msg?userid=fA`);
      await post(
        `${server.base}${B}/send_xml`,
        textXml("oGone", "gh_acct", "13800000000", "7400001", now),
      );
      await post(
        `${server.base}${B}/send_xml`,
        textXml("oStay", "gh_acct", "hello", "7400002", now),
      );
      await agent.waitFor((e) => e.data["id"] === "7400002");
      const reply = await fetch(`${server.base}${B}/send?userid=fA`, {
        method: "POST",
        body: JSON.stringify({
          data: { msg_type: "text", contact_id: "oGone", msg: { content: "got 13800000000" } },
        }),
      });
      assert.equal(reply.status, 200, await reply.text());
      await agent.close();

      const res = await post(`${server.base}${B}/send_xml`, revokeXml("oGone"));
      assert.equal(res.status, 200, res.text);

      agent = await connectAgent(`${server.wsBase}${B}/msg?userid=fA&since=0`);
      try {
        // The revoke's notice is the log's last entry: once it is here, the replay is done.
        await agent.waitFor(revoked);
        const replayed = agent.messages();
        assert.deepEqual(replayed.filter(aboutGone), []);
        assert.ok(replayed.some((e) => e.data["id"] === "7400002"), "oStay's message is replayed");
      } finally {
        await agent.close();
      }
    } finally {
      await server.close();
    }
  });
}
