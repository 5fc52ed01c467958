// The agent works in two tabs, as many do. A failed reply taken back with Edit (and sent anew),
// or sent again with Retry, in one tab stayed failed with Retry in the other: clicking it there
// sent the follower the same words a second time.

import assert from "node:assert/strict";
import type { Locator, Page } from "playwright-core";
import type { FakeWechat } from "../../tools/fake_wechat.ts";
import { openTab, postFollowerMessage } from "./browser.ts";
import { type ConsoleSession, openTabsOn, wechatConsoleTest } from "./console_session.ts";

const AGENT = "agentA";

/** Both tabs on one follower, a reply WeChat refused once (45009) shown failed in each. */
async function failedInBothTabs({ server, context, page }: ConsoleSession, fake: FakeWechat) {
  await postFollowerMessage(server.base, "oTwo", { MsgType: "text", Content: "在吗" });
  const other = await openTab(context);
  await openTabsOn([page, other], server, { agent: AGENT, followerId: "oTwo", shows: "在吗" });
  fake.failNext("/cgi-bin/message/custom/send", 45009, "api freq out of limit", 1);
  await page.bringToFront();
  await page.locator("#reply").fill("您的订单已发货");
  await page.locator("#reply").press("Enter");
  const failed = (tab: Page) =>
    tab.locator('.msg.out[data-status="failed"]', { hasText: "已发货" });
  await failed(page).waitFor();
  await other.bringToFront();
  await failed(other).waitFor();
  await page.bringToFront();
  return { other, failedHere: failed(page), failedThere: failed(other) };
}

/** The reply sent once more from the first tab: the other hears it and keeps no Retry of it. */
async function sentOnceMore(page: Page, other: Page, failedThere: Locator, fake: FakeWechat) {
  const sends = () => fake.calls.filter((c) => c.path.endsWith("message/custom/send")).length;
  await page.locator('.msg.out[data-status="sent"]', { hasText: "已发货" }).waitFor();
  assert.equal(sends(), 2);
  await other.bringToFront();
  await other.locator('.msg.out[data-status="sent"]', { hasText: "已发货" }).waitFor();
  await failedThere.waitFor({ state: "detached", timeout: 5000 });
  assert.equal(sends(), 2);
}

wechatConsoleTest(
  "a failed reply taken back with Edit in one tab: the other tab offers no Retry of it",
  { agent: AGENT, appId: "wxedit2", open: false },
  async (_t, session) => {
    const { other, failedHere, failedThere } = await failedInBothTabs(session, session.fake);
    await failedHere.locator(".edit-button").click();
    await failedHere.waitFor({ state: "detached" });
    await session.page.locator("#reply").press("Enter");
    await sentOnceMore(session.page, other, failedThere, session.fake);
  },
);

wechatConsoleTest(
  "a failed reply sent again with Retry in one tab: the other tab offers no Retry of it",
  { agent: AGENT, appId: "wxretry2", open: false },
  async (_t, session) => {
    const { other, failedHere, failedThere } = await failedInBothTabs(session, session.fake);
    await failedHere.locator(".retry-button").click();
    await sentOnceMore(session.page, other, failedThere, session.fake);
  },
);
