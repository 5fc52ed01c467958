// user_authorization_revoke: WeChat asks the account to delete what it holds of the user (及时
// 删除该用户信息). The bridge forgets the follower; the console kept it listed, its messages on
// screen and its draft in localStorage until the next reload. Now they go when the notice comes.

import assert from "node:assert/strict";
import { B, postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentF";

/** The revoke event as WeChat's push service sends it: the user is `<OpenID>`. */
const revokeXml = (openId: string) =>
  `<xml><ToUserName><![CDATA[gh_demo]]></ToUserName><FromUserName><![CDATA[owAqB1v0ahK_Xlc7GshIDdf2yf7E]]></FromUserName><CreateTime>${
    Math.floor(Date.now() / 1000)
  }</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[${openId}]]></OpenID><AppID><![CDATA[wx13974bf780d3dc89]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>`;

consoleTest(
  "a follower the bridge forgets leaves the console",
  { agent: AGENT },
  async (t, { server, page }) => {
    await postFollowerMessage(server.base, "oStay", { MsgType: "text", Content: "hello" });
    await postFollowerMessage(server.base, "oGone", { MsgType: "text", Content: "13800000000" });
    await page.locator('.contact[data-contact-id="oGone"]').click();
    await page.locator(".msg.in", { hasText: "13800000000" }).waitFor();
    await page.locator("#reply").fill("draft about 13800000000");

    const res = await fetch(`${server.base}${B}/send_xml`, {
      method: "POST",
      body: revokeXml("oGone"),
    });
    assert.equal(res.status, 200, await res.text());

    await t.step("its conversation leaves the list and the screen", async () => {
      await page.locator('.contact[data-contact-id="oGone"]').waitFor({ state: "detached" });
      assert.equal(await page.locator(".msg.in", { hasText: "13800000000" }).count(), 0);
      assert.equal(await page.locator('.contact[data-contact-id="oStay"]').count(), 1);
      assert.equal(await page.locator("#reply").inputValue(), "");
    });

    await t.step("the pane says why it went, and holds the focus", async () => {
      await page.locator("#conversation-gone", { hasText: "oGone withdrew consent" }).waitFor();
      assert.equal(await page.evaluate(`document.activeElement?.id`), "conversation-gone");
      await page.locator('.contact[data-contact-id="oStay"]').click();
      await page.locator("#conversation-gone").waitFor({ state: "hidden" });
    });

    await t.step("its draft leaves localStorage", async () => {
      const kept = await page.evaluate(() => {
        const storage = (globalThis as unknown as {
          localStorage: {
            length: number;
            key(i: number): string | null;
            getItem(k: string): string | null;
          };
        }).localStorage;
        const values: string[] = [];
        for (let i = 0; i < storage.length; i++) {
          values.push(storage.getItem(storage.key(i)!) ?? "");
        }
        return values.filter((v) => v.includes("13800000000"));
      });
      assert.deepEqual(kept, []);
    });
  },
);
