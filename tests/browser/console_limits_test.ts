// The console as an inbox, part two: WeChat's limits shown (replies left, a header that says
// replies fail, a reply box WeChat would refuse disabled, retry), Chinese and English with
// screenshots in both, light and dark, at both widths, and the context a reload keeps.

import assert from "node:assert/strict";
import type { Browser, Page, Route } from "playwright-core";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { startBridge } from "../helpers/server.ts";
import {
  B,
  browserTest,
  contactsOf,
  LAPTOP,
  makePng,
  openConsole,
  openPage,
  PHONE,
  postFollowerMessage,
  screenshot,
} from "./browser.ts";
import { wechatConsoleTest } from "./console_session.ts";

const AGENT = "agent1";

async function reply(page: Page, text: string): Promise<void> {
  await page.locator("#reply").fill(text);
  await page.locator("#reply").press("Enter");
}

wechatConsoleTest(
  "WeChat's limits: replies left, failing replies, retry, a box disabled at 0",
  { agent: AGENT, appId: "wxconsole" },
  async (t, { server, fake, page }) => {
    await postFollowerMessage(server.base, "oQ", { MsgType: "text", Content: "help" });
    await page.locator('.contact[data-contact-id="oQ"]').click();
    const quota = page.locator("#conv-quota");
    // The list's refreshes (GET contacts, with the bridge's count) wait until the count after
    // the Retry is read: what is checked is the console's own, as an agent sees it between
    // refreshes (under load one came before the Retry and none after).
    const held: Route[] = [];
    let holding = true;
    const isContacts = (url: URL) => url.pathname.endsWith("/contacts");
    await page.route(isContacts, async (route) => {
      if (holding) held.push(route);
      else await route.continue();
    });

    await t.step("replies left of WeChat's 5 show before any fails", async () => {
      await quota.filter({ hasText: "5 of 5 replies left" }).waitFor();
      await reply(page, "one");
      await page.locator('.msg.out[data-status="sent"]', { hasText: "one" }).waitFor();
      await quota.filter({ hasText: "4 of 5 replies left" }).waitFor();
    });

    await t.step("a refused reply turns the header from connected to failing", async () => {
      fake.failNext("/cgi-bin/message/custom/send", 40003, "invalid openid", 1);
      await reply(page, "two");
      const failed = page.locator('.msg.out[data-status="failed"]', { hasText: "two" });
      await failed.waitFor();
      await page.locator('#conn[data-state="failing"]').waitFor();
      assert.equal(
        await page.locator("#conn-label").innerText(),
        "Connected · replies failing (1)",
      );
      // WeChat delivered nothing: the bridge gave the reply back, and its -1 says so.
      await quota.filter({ hasText: "4 of 5 replies left" }).waitFor();
      await screenshot(page, "console-laptop-reply-failing-en");
    });

    await t.step("Retry sends it again; delivered, the header is well again", async () => {
      await page.locator(".msg.out", { hasText: "two" }).locator(".retry-button").click();
      await page.locator('.msg.out[data-status="sent"]', { hasText: "two" }).waitFor();
      await page.locator('#conn[data-state="connected"]').waitFor();
      const sent = fake.calls.filter((c) => c.path.endsWith("message/custom/send"));
      assert.equal(sent.filter((c) => JSON.stringify(c.body).includes('"two"')).length, 2);
    });

    await t.step(
      "at 0 left the box is disabled and says why; a new message reopens it",
      async () => {
        await quota.filter({ hasText: "3 of 5 replies left" }).waitFor();
        // Let through by the handler, not after unroute(): a route held across unroute()
        // threw "Route is already handled" when continued (playwright-core 1.65).
        holding = false;
        for (const route of held) await route.continue();
        const listed = (await contactsOf(server.base, AGENT)).find((c) => c.contact_id === "oQ");
        assert.equal(listed?.replies_since_inbound, 2, "the refused reply was given back");
        await reply(page, "three");
        await page.locator('.msg.out[data-status="sent"]', { hasText: "three" }).waitFor();
        await reply(page, "four");
        await page.locator('.msg.out[data-status="sent"]', { hasText: "four" }).waitFor();
        await reply(page, "five");
        await page.locator('.msg.out[data-status="sent"]', { hasText: "five" }).waitFor();
        await quota.filter({ hasText: "0 of 5 replies left" }).waitFor();
        assert.equal(await page.locator("#reply").isDisabled(), true);
        assert.equal(
          await page.locator("#composer-reason").innerText(),
          "No replies left until the follower writes",
        );
        await page.locator("#window-notice", { hasText: "5 replies for this message are used" })
          .waitFor();
        await screenshot(page, "console-laptop-quota-used-en");
        await postFollowerMessage(server.base, "oQ", { MsgType: "text", Content: "one more?" });
        await quota.filter({ hasText: "5 of 5 replies left" }).waitFor();
        assert.equal(await page.locator("#reply").isDisabled(), false);
      },
    );
  },
);

/** A console in `locale` at `size`, with the system's colour scheme `scheme`. */
async function openIn(
  browser: Browser,
  options: { locale: string; size: "laptop" | "phone"; scheme: "light" | "dark" },
) {
  const phone = options.size === "phone";
  const context = await browser.newContext({
    viewport: phone ? PHONE : LAPTOP,
    deviceScaleFactor: phone ? 2 : 1,
    isMobile: phone,
    hasTouch: phone,
    locale: options.locale,
    colorScheme: options.scheme,
    timezoneId: "Asia/Shanghai",
  });
  context.setDefaultTimeout(10_000);
  return { context, page: await context.newPage() };
}

browserTest("Chinese and English, from the browser's language, switchable", async (t, browser) => {
  const server = await startBridge();
  try {
    await t.step("a Chinese browser gets Chinese, lang=zh-CN, system notes included", async () => {
      const { context, page } = await openIn(browser, {
        locale: "zh-CN",
        size: "laptop",
        scheme: "light",
      });
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oLi", { MsgType: "text", Content: "你好，在吗" });
      await page.locator('.contact[data-contact-id="oLi"]').waitFor();
      await server.store.renameContact(AGENT, "oLi", "李先生");
      assert.equal(await page.locator("html").getAttribute("lang"), "zh-CN");
      // Its message (the system's notice that it is ours counted with it), and the name.
      assert.equal(await page.title(), "(1) 客服工作台", "the unread count and the name");
      assert.equal(await page.locator("h1").innerText(), "客服工作台");
      assert.equal(await page.locator("#conn-label").innerText(), "已连接");
      await page.locator('.chip[data-filter="unread"]', { hasText: "未读" }).waitFor();
      await page.locator('.contact[data-contact-id="oLi"]').click();
      assert.equal(
        await page.locator("#reply").getAttribute("placeholder"),
        "输入回复…（输入 / 使用快捷回复）",
      );
      await page.locator("#conv-quota", { hasText: "还可回复 5/5 条" }).waitFor();
      await context.close();
    });

    await t.step("an English one gets English, with no Chinese notes mixed in", async () => {
      const { context, page } = await openIn(browser, {
        locale: "en-US",
        size: "laptop",
        scheme: "light",
      });
      await openConsole(page, server.base, AGENT);
      assert.equal(await page.locator("html").getAttribute("lang"), "en");
      assert.equal(await page.locator("h1").innerText(), "Support console");
      await page.locator('.contact[data-contact-id="oLi"]').click();
      // The bridge's notices are Chinese; the console says them in the agent's language.
      const res = await fetch(`${server.base}${B}/send?userid=${AGENT}`, {
        method: "POST",
        body: JSON.stringify({ data: { msg_type: "close", contact_id: "oLi", msg: {} } }),
      });
      assert.equal(res.status, 200);
      await res.body?.cancel();
      await page.locator(".msg.note", { hasText: "The conversation with 李先生 has ended" })
        .waitFor();
      await postFollowerMessage(server.base, "oLi", { MsgType: "text", Content: "还在吗" });
      await page.locator(".msg.note", { hasText: "李先生 was assigned to you" }).waitFor();
      assert.doesNotMatch(await page.locator("#messages").innerText(), /已分配|会话已结束/);

      await page.locator("#settings-button").click();
      await page.locator("#settings-lang").selectOption("zh-CN");
      await page.waitForLoadState("load");
      await page.locator('#conn[data-state="connected"]').waitFor();
      assert.equal(await page.locator("html").getAttribute("lang"), "zh-CN");
      assert.equal(await page.locator("h1").innerText(), "客服工作台");
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      assert.equal(await page.locator("html").getAttribute("lang"), "zh-CN", "the choice is kept");
      await context.close();
    });

    await t.step("screenshots: both languages, light and dark, laptop and phone", async () => {
      for (const locale of ["zh-CN", "en-US"]) {
        for (const scheme of ["light", "dark"] as const) {
          for (const size of ["laptop", "phone"] as const) {
            const { context, page } = await openIn(browser, { locale, size, scheme });
            await openConsole(page, server.base, AGENT);
            assert.equal(
              await page.locator("html").getAttribute("data-theme"),
              scheme,
              "the theme follows the system",
            );
            await page.locator('.contact[data-contact-id="oLi"]').click();
            await page.locator(".msg.in", { hasText: "你好，在吗" }).waitFor();
            const lang = locale === "zh-CN" ? "zh" : "en";
            await screenshot(page, `console-${size}-${lang}-${scheme}`);
            await context.close();
          }
        }
      }
    });
  } finally {
    await server.close();
  }
});

browserTest(
  "context across reloads, the newest message in view, and new messages ↓",
  async (t, browser) => {
    const fake = await startFakeWechat({ appId: "wxconsole", secret: "secret" });
    fake.addMedia("img1", await makePng(640, 480), "image/png");
    const server = await startBridge({
      env: { WECHAT_APPID: "wxconsole", WECHAT_SECRET: "secret", WECHAT_API_BASE: fake.url },
    });
    try {
      const a = await openPage(browser);
      const b = await openPage(browser);
      await openConsole(a.page, server.base, "agentA");
      await openConsole(b.page, server.base, "agentB");
      const page = a.page;

      await t.step("system messages and the transferred list survive a reload", async () => {
        await postFollowerMessage(server.base, "oT", { MsgType: "text", Content: "transfer me" });
        await page.locator('.contact[data-contact-id="oT"]').waitFor();
        // agentB has no follower yet and takes this one only by transfer.
        const res = await fetch(`${server.base}${B}/send?userid=agentA`, {
          method: "POST",
          body: JSON.stringify({
            data: { msg_type: "transfer", contact_id: "oT", msg: { to: "agentB" } },
          }),
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
        await page.locator("#transferred .contact", { hasText: "oT" }).waitFor();
        await page.reload();
        await page.locator('#conn[data-state="connected"]').waitFor();
        await page.locator("#transferred .contact", { hasText: "oT" }).waitFor();
        await page.locator('.contact[data-contact-id="system01"]').click();
        await page.locator(".msg.note", { hasText: "oT was transferred to agentB" }).waitFor();
        await page.locator(".msg.note", { hasText: "oT was assigned to you" }).waitFor();
      });

      await t.step("a conversation with pictures opens at its newest message", async () => {
        // Pictures come slowly, as on a phone network: the list must still end at the bottom.
        await page.route("**/media/**", async (route) => {
          await new Promise((r) => setTimeout(r, 300));
          await route.continue();
        });
        for (let i = 0; i < 20; i++) {
          await postFollowerMessage(server.base, "oPic", { MsgType: "text", Content: `text ${i}` });
        }
        for (let i = 0; i < 3; i++) {
          await postFollowerMessage(server.base, "oPic", { MsgType: "image", MediaId: "img1" });
        }
        await postFollowerMessage(server.base, "oPic", { MsgType: "text", Content: "the newest" });
        await page.reload();
        await page.locator('#conn[data-state="connected"]').waitFor();
        await page.locator('.contact[data-contact-id="oPic"]').click();
        await page.locator(".msg.in", { hasText: "the newest" }).waitFor();
        await page.waitForFunction(`
        [...document.querySelectorAll(".msg.type-image img")].length === 3 &&
        [...document.querySelectorAll(".msg.type-image img")]
          .every((img) => img.complete && img.naturalWidth > 0)
      `);
        await page.waitForTimeout(100);
        const gap = await page.locator("#messages").evaluate((box) =>
          box.scrollHeight - box.scrollTop - box.clientHeight
        );
        assert.ok(gap < 8, `the newest message is ${gap}px below the view`);
      });

      await t.step("scrolled up, a new message shows a pill that takes you down", async () => {
        await page.locator("#messages").hover();
        await page.mouse.wheel(0, -20_000);
        await page.waitForTimeout(100);
        assert.equal(await page.locator("#new-pill").isVisible(), false);
        await postFollowerMessage(server.base, "oPic", { MsgType: "text", Content: "below!" });
        await page.locator("#new-pill", { hasText: "New messages ↓" }).waitFor();
        await page.locator("#new-pill").click();
        await page.locator(".msg.in", { hasText: "below!" }).waitFor();
        const gap = await page.locator("#messages").evaluate((box) =>
          box.scrollHeight - box.scrollTop - box.clientHeight
        );
        assert.ok(gap < 8, `${gap}px from the bottom after the pill`);
        assert.equal(await page.locator("#new-pill").isVisible(), false);
      });
    } finally {
      await server.close();
      await fake.close();
    }
  },
);
