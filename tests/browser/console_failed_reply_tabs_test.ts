// A reviewer's attack on Edit for a failed reply (con13a D15): the agent works in two tabs, as
// many do. A reply taken back with Edit in one tab and sent anew must not still offer Retry in
// the other, or the follower gets the same words twice.

import assert from "node:assert/strict";
import { openTab, postFollowerMessage } from "./browser.ts";
import { openTabsOn, wechatConsoleTest } from "./console_session.ts";

const AGENT = "agentA";

wechatConsoleTest(
  "a failed reply taken back with Edit in one tab: the other tab offers no Retry of it",
  { agent: AGENT, appId: "wxedit2", open: false },
  async (_t, { server, fake, context, page }) => {
    await postFollowerMessage(server.base, "oTwo", { MsgType: "text", Content: "在吗" });
    const other = await openTab(context);
    await openTabsOn([page, other], server, { agent: AGENT, followerId: "oTwo", shows: "在吗" });
    const sends = () => fake.calls.filter((c) => c.path.endsWith("message/custom/send")).length;

    fake.failNext("/cgi-bin/message/custom/send", 45009, "api freq out of limit", 1);
    await page.bringToFront();
    await page.locator("#reply").fill("您的订单已发货");
    await page.locator("#reply").press("Enter");
    const failedHere = page.locator('.msg.out[data-status="failed"]', { hasText: "已发货" });
    await failedHere.waitFor();
    await other.bringToFront();
    const failedThere = other.locator('.msg.out[data-status="failed"]', { hasText: "已发货" });
    await failedThere.waitFor();

    await page.bringToFront();
    await failedHere.locator(".edit-button").click();
    await failedHere.waitFor({ state: "detached" });
    await page.locator("#reply").press("Enter");
    await page.locator('.msg.out[data-status="sent"]', { hasText: "已发货" }).waitFor();
    assert.equal(sends(), 2);

    // The other tab hears the new reply; the failed one, taken back, must not stay there with
    // Retry (clicking it sent the same words to the follower a second time).
    await other.bringToFront();
    await other.locator('.msg.out[data-status="sent"]', { hasText: "已发货" }).waitFor();
    await failedThere.waitFor({ state: "detached", timeout: 5000 });
    assert.equal(sends(), 2);
  },
);

wechatConsoleTest(
  "a failed reply sent again with Retry in one tab: the other tab offers no Retry of it",
  { agent: AGENT, appId: "wxretry2", open: false },
  async (_t, { server, fake, context, page }) => {
    await postFollowerMessage(server.base, "oTwo", { MsgType: "text", Content: "在吗" });
    const other = await openTab(context);
    await openTabsOn([page, other], server, { agent: AGENT, followerId: "oTwo", shows: "在吗" });
    const sends = () => fake.calls.filter((c) => c.path.endsWith("message/custom/send")).length;

    fake.failNext("/cgi-bin/message/custom/send", 45009, "api freq out of limit", 1);
    await page.bringToFront();
    await page.locator("#reply").fill("您的订单已发货");
    await page.locator("#reply").press("Enter");
    const failedHere = page.locator('.msg.out[data-status="failed"]', { hasText: "已发货" });
    await failedHere.waitFor();
    await other.bringToFront();
    const failedThere = other.locator('.msg.out[data-status="failed"]', { hasText: "已发货" });
    await failedThere.waitFor();

    await page.bringToFront();
    await failedHere.locator(".retry-button").click();
    await page.locator('.msg.out[data-status="sent"]', { hasText: "已发货" }).waitFor();
    assert.equal(sends(), 2);

    await other.bringToFront();
    await other.locator('.msg.out[data-status="sent"]', { hasText: "已发货" }).waitFor();
    await failedThere.waitFor({ state: "detached", timeout: 5000 });
    assert.equal(sends(), 2);
  },
);
