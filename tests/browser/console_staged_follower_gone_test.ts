// A reviewer's attack on files staged in the composer (con13a D9): a picture staged for a
// follower who then withdraws consent (user_authorization_revoke) can be neither sent nor
// removed, as the conversation is gone; it must not stay in the page asking before each leave.

import assert from "node:assert/strict";
import { B, leaving, makePng, postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";
import { connectRoutedAgent } from "../helpers/server.ts";

const AGENT = "agentS";

const revokeXml = (openId: string) =>
  `<xml><ToUserName><![CDATA[gh_demo]]></ToUserName><FromUserName><![CDATA[owAqB1v0ahK_Xlc7GshIDdf2yf7E]]></FromUserName><CreateTime>${
    Math.floor(Date.now() / 1000)
  }</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[${openId}]]></OpenID><AppID><![CDATA[wx13974bf780d3dc89]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>`;

consoleTest(
  "a picture staged for a follower who is then forgotten goes with the follower",
  { agent: AGENT },
  async (_t, { server, page }) => {
    await postFollowerMessage(server.base, "oGone", { MsgType: "text", Content: "订单截图" });
    await page.locator('.contact[data-contact-id="oGone"]').click();
    await page.locator("#attach-input").setInputFiles({
      name: "order.png",
      mimeType: "image/png",
      buffer: Buffer.from(await makePng(200, 120)),
    });
    await page.locator(".staged-item", { hasText: "order.png" }).waitFor();
    const res = await fetch(`${server.base}${B}/send_xml`, {
      method: "POST",
      body: revokeXml("oGone"),
    });
    assert.equal(res.status, 200, await res.text());
    await page.locator('.contact[data-contact-id="oGone"]').waitFor({ state: "detached" });
    await page.locator("#staged").waitFor({ state: "hidden" });
    // Nothing of the follower's is left in the page: it closes without a word.
    assert.equal(await leaving(page), "closed");
  },
);

consoleTest(
  "a picture staged for a follower then handed to a colleague is not kept for a follower not ours",
  { agent: AGENT },
  async (_t, { server, page }) => {
    await postFollowerMessage(server.base, "oMove", {
      ToUserName: AGENT,
      MsgType: "text",
      Content: "换个人",
    });
    const colleague = await connectRoutedAgent(server, "agentB");
    try {
      await page.locator('.contact[data-contact-id="oMove"]').click();
      await page.locator("#attach-input").setInputFiles({
        name: "order.png",
        mimeType: "image/png",
        buffer: Buffer.from(await makePng(200, 120)),
      });
      await page.locator(".staged-item", { hasText: "order.png" }).waitFor();
      await page.locator("#transfer-button").click();
      await page.locator("#transfer-to").fill("agentB");
      await page.locator("#transfer-submit").click();
      await page.locator("#transferred .contact", { hasText: "oMove" }).waitFor();
      await page.locator("#staged").waitFor({ state: "hidden" });
      // This agent can no longer send it, nor see it to remove it: leaving does not ask for it.
      assert.equal(await leaving(page), "closed");
    } finally {
      await colleague.close();
    }
  },
);
