// The working day's fixes (console_workday_test.ts) looked at again, for what they broke: the
// page under a dialog made inert took the focus from the reply box when a search hit opened
// its conversation (the box was still inert when it was focused); and a double click on
// Retry sent the reply twice; on a phone, a conversation read under Unread stayed in that list
// after the agent went back to it; and a token expiring with a dialog open left the token box
// under it, inert, without the focus; and after the night clocks go forward (a 23-hour day),
// that day read as a date, not Yesterday, until one in the morning; and a reply whose try went
// unanswered (a reset) read "refused" after its retry was refused, though it may have arrived
// (now it is not tried again, and reads "Not confirmed");
// and after a click on Send the focus stayed on the button, where the next reply's j or k
// opened another conversation.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startBridge } from "../helpers/server.ts";
import { browserTest, openConsole, openPage, postFollowerMessage } from "./browser.ts";
import { consoleTest, wechatConsoleTest } from "./console_session.ts";

const AGENT = "agentA";

consoleTest(
  "a search hit opens its conversation with the reply box focused",
  { agent: AGENT },
  async (_t, { server, page }) => {
    await postFollowerMessage(server.base, "oHit", {
      MsgType: "text",
      Content: "发票抬头写公司",
    });
    await postFollowerMessage(server.base, "oHere", { MsgType: "text", Content: "在吗" });
    await page.locator('.contact[data-contact-id="oHere"]').click();
    await page.keyboard.press("Control+k");
    // Typed once the box has the focus: keys before that went to the page under the dialog.
    await page.locator("#search-input:focus").waitFor();
    await page.keyboard.type("发票");
    await page.keyboard.press("Enter");
    await page.locator("#search-panel .search-hit").first().click();
    await page.locator("#search-panel").waitFor({ state: "detached" });
    await page.locator("#messages .msg.highlight", { hasText: "发票抬头" }).waitFor();
    const focused = await page.evaluate(
      "document.activeElement?.id || document.activeElement?.tagName",
    );
    assert.equal(focused, "reply");
    await page.keyboard.type("好的");
    assert.equal(await page.locator("#reply").inputValue(), "好的");
  },
);

wechatConsoleTest(
  "a double click on Retry sends the reply once",
  { agent: AGENT, appId: "wxrev" },
  async (_t, { server, fake, page }) => {
    await postFollowerMessage(server.base, "oTwice", { MsgType: "text", Content: "退款到了吗" });
    await page.locator('.contact[data-contact-id="oTwice"]').click();
    // A refusal sending again can get past (not 45002, too long: that one has no Retry).
    fake.failNext("/cgi-bin/message/custom/send", 45009, "reach max api daily quota limit");
    await page.locator("#reply").fill("退款已原路退回");
    await page.keyboard.press("Enter");
    const reply = page.locator(".msg.out", { hasText: "退款已原路退回" });
    await reply.locator(".retry-button").waitFor();
    await reply.locator(".retry-button").dblclick();
    await page.locator('.msg.out[data-status="sent"]', { hasText: "退款已原路退回" }).waitFor();
    // Long enough for a second send to have reached WeChat.
    await page.waitForTimeout(1000);
    assert.equal(fake.sent.length, 1, JSON.stringify(fake.sent));
    assert.equal(await page.locator(".msg.out", { hasText: "退款已原路退回" }).count(), 1);
  },
);

browserTest(
  "on a phone, back from a conversation read under Unread, it has left",
  async (_t, browser) => {
    const server = await startBridge();
    try {
      const { page } = await openPage(browser, "phone");
      await openConsole(page, server.base, AGENT);
      for (const id of ["oFirst", "oSecond"]) {
        await postFollowerMessage(server.base, id, { MsgType: "text", Content: `${id} 在吗` });
        await page.locator(`.contact[data-contact-id="${id}"]`).waitFor();
      }
      await page.locator("#triage-mount button", { hasText: "Unread" }).tap();
      await page.locator('.contact[data-contact-id="oSecond"]').tap();
      await page.locator(".msg.in", { hasText: "oSecond 在吗" }).waitFor();
      await page.locator("#back-button").tap();
      await page.locator("#contact-list").waitFor();
      await page.waitForFunction(
        `[...document.querySelectorAll("#contact-list .contact")].map((n) => n.dataset.contactId)
        .join() === "oFirst"`,
        undefined,
        { timeout: 3000 },
      ).catch(async (error) => {
        const ids = await page.evaluate(`[...document.querySelectorAll("#contact-list .contact")]
        .map((n) => n.dataset.contactId)`);
        throw new Error(`Unread lists ${JSON.stringify(ids)}`, { cause: error });
      });
    } finally {
      await server.close();
    }
  },
);

browserTest(
  "a token expiring with the search dialog open asks for a fresh one",
  async (_t, browser) => {
    const secret = "review-test-secret-0123456789abcdef";
    const server = await startBridge({ env: { AGENT_SECRET: secret } });
    try {
      const { context, page } = await openPage(browser);
      const shortLived = await mintAgentToken(secret, AGENT, 1);
      await context.addInitScript(
        `localStorage.setItem("wxbridge.token:${AGENT}", ${JSON.stringify(shortLived)})`,
      );
      await openConsole(page, server.base, AGENT);
      await page.keyboard.press("Control+k");
      await page.locator("#search-panel").waitFor();
      await page.locator('#conn[data-state="token"]').waitFor({ timeout: 30_000 });
      // The agent types the fresh token where the console put the focus.
      const where = await page.evaluate(
        "document.activeElement?.id || document.activeElement?.tagName",
      );
      assert.equal(where, "token-input");
      await page.keyboard.type(await mintAgentToken(secret, AGENT, 600));
      await page.keyboard.press("Enter");
      await page.locator('#conn[data-state="connected"]').waitFor();
      assert.equal(
        await page.locator("#search-panel").count(),
        0,
        "the dialog stayed over the page",
      );
    } finally {
      await server.close();
    }
  },
);

browserTest(
  "after the night clocks go forward, the day before is Yesterday",
  async (_t, browser) => {
    // Berlin went to summer time on 29 March 2026, a day of 23 hours; half past midnight after it
    // is 23.5 hours after the 29th began, and 24 hours back lands on the 28th.
    const pageNow = Date.parse("2026-03-30T00:30:00+02:00");
    const offsetMs = pageNow - Date.now();
    const server = await startBridge({ now: () => Date.now() + offsetMs });
    try {
      const { page } = await openPage(browser, "laptop", { timezoneId: "Europe/Berlin" });
      await page.clock.install({ time: pageNow });
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oSpring", {
        MsgType: "text",
        Content: "昨天中午的问题",
        CreateTime: Math.floor(Date.parse("2026-03-29T12:00:00+02:00") / 1000),
      });
      await page.locator('.contact[data-contact-id="oSpring"]').click();
      await page.locator(".msg.in", { hasText: "昨天中午的问题" }).waitFor();
      // Today's line is over the bridge's "assigned to you", just now.
      assert.deepEqual(await page.locator("#messages .day").allInnerTexts(), [
        "Yesterday",
        "Today",
      ]);
    } finally {
      await server.close();
    }
  },
);

wechatConsoleTest(
  "a reply whose connection was reset is not sent again and may have arrived",
  { agent: AGENT, appId: "wxrev" },
  async (_t, { server, fake, page }) => {
    await postFollowerMessage(server.base, "oReset", { MsgType: "text", Content: "发货了吗" });
    await page.locator('.contact[data-contact-id="oReset"]').click();
    // The connection is reset after the request went (WeChat may have sent it): not tried
    // again, since a second copy would reach the follower too.
    fake.dropNext("/cgi-bin/message/custom/send");
    await page.locator("#reply").fill("今天下午发货");
    await page.keyboard.press("Enter");
    const failed = page.locator('.msg.out[data-status="failed"]', { hasText: "今天下午发货" });
    await failed.waitFor({ timeout: 30_000 });
    assert.equal(await failed.locator(".status.failed").innerText(), "Not confirmed");
    assert.match(await failed.locator(".failure").innerText(), /may have it/);
    assert.equal(await page.locator("#conv-quota").innerText(), "4 of 5 replies left");
    assert.equal(fake.calls.filter((c) => c.path === "cgi-bin/message/custom/send").length, 1);
  },
);

consoleTest(
  "after a click on Send the agent types on in the reply box",
  { agent: AGENT },
  async (_t, { server, page }) => {
    for (const id of ["oOther", "oClick"]) {
      await postFollowerMessage(server.base, id, { MsgType: "text", Content: `${id} 你好` });
      await page.locator(`.contact[data-contact-id="${id}"]`).waitFor();
    }
    await page.locator('.contact[data-contact-id="oClick"]').click();
    await page.locator("#reply").fill("first");
    await page.locator("#send-button").click();
    await page.locator(".msg.out", { hasText: "first" }).waitFor();
    await page.keyboard.type("kind regards");
    assert.equal(await page.locator("#conv-name").innerText(), "oClick");
    assert.equal(await page.locator("#reply").inputValue(), "kind regards");
  },
);
