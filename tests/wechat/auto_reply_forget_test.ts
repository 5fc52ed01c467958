// The auto-reply's cooldown key (auto_reply:<OpenID>, 30 minutes) outlived the follower's
// user_authorization_revoke: the forget script deletes the contact, its history and queues but
// not it, so the OpenID stayed in Redis after WeChat's 及时删除该用户信息, and the follower
// writing again (a new contact) got no auto-reply. Expected: the forget deletes it too.

import assert from "node:assert/strict";
import { post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, rawClient, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const REDIS_URL = await findTestRedis();
const AWAY = "客服不在";
const revokeXml = (openId: string) =>
  `<xml><ToUserName><![CDATA[gh_870882ca4b1]]></ToUserName><FromUserName><![CDATA[owAqB1v0ahK_Xlc7GshIDdf2yf7E]]></FromUserName><CreateTime>1626857200</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[${openId}]]></OpenID><AppID><![CDATA[wx13974bf780d3dc89]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>`;

Deno.test({
  name: "a revoke forgets the follower's auto-reply cooldown (Redis)",
  ignore: REDIS_URL === null,
  async fn() {
    const prefix = uniquePrefix("autoforget");
    const server = await startBridge({
      env: {
        STORE: "",
        REDIS_URL: `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}`,
        AUTO_REPLY_TEXT: AWAY,
      },
    });
    const redis = rawClient(REDIS_URL!);
    try {
      const first = await post(
        `${server.base}${B}/send_xml`,
        textXml("oGone", "gh_a", "hi", "9910001"),
      );
      assert.ok(first.text.includes(AWAY), first.text);
      const gone = await post(`${server.base}${B}/send_xml`, revokeXml("oGone"));
      assert.equal(gone.status, 200, gone.text);
      assert.equal(await redis.exists(`${prefix}auto_reply:oGone`), 0, "the OpenID's key stayed");
      const again = await post(
        `${server.base}${B}/send_xml`,
        textXml("oGone", "gh_a", "hi", "9910002"),
      );
      assert.ok(again.text.includes(AWAY), `no auto-reply after the forget: ${again.text}`);
    } finally {
      await redis.quit();
      await server.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
