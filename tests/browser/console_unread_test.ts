// A follower's menu tap (CLICK, and the other callbacks the bridge routes as a message) counted
// in the bridge's `unread` on that follower, but not in the page's live count, so the number
// jumped at the next contacts refresh; and the title counted a tap on the system list instead.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import {
  browserTest,
  contactsOf,
  openConsole,
  openPage,
  postFollowerMessage,
  socketFrames,
  waitUntil,
} from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentA";

const pageUnread = (page: Page, id: string) =>
  page.evaluate(
    `Number(document.querySelector('#contact-list .contact[data-contact-id="${id}"] .unread')` +
      `?.textContent ?? 0)`,
  );

browserTest("the page counts a follower's unread as the bridge does", async (t, browser) => {
  const server = await startBridge();
  try {
    const { page } = await openPage(browser);
    const frames = socketFrames(page);
    await openConsole(page, server.base, AGENT);
    await postFollowerMessage(server.base, "oTap", { MsgType: "text", Content: "菜单在哪" });
    await postFollowerMessage(server.base, "oElse", { MsgType: "text", Content: "你好" });
    await page.locator('.contact[data-contact-id="oTap"] .unread').waitFor();
    // Another conversation in view: what oTap does is not read as it comes.
    await page.locator('.contact[data-contact-id="oElse"]').click();
    await page.locator("#conv-name", { hasText: "oElse" }).waitFor();

    const bridgeUnread = async () =>
      Number((await contactsOf(server.base, AGENT)).find((c) => c.contact_id === "oTap")?.unread);
    const callbacks: Array<[string, Record<string, string | number>]> = [
      ["CLICK", { MsgType: "event", Event: "CLICK", EventKey: "menu_invoice" }],
      ["VIEW", { MsgType: "event", Event: "VIEW", EventKey: "https://example.com/help" }],
      ["SCAN", { MsgType: "event", Event: "SCAN", EventKey: "123", Ticket: "t1" }],
      ["LOCATION", {
        MsgType: "event",
        Event: "LOCATION",
        Latitude: 31.2304,
        Longitude: 121.4737,
        Precision: 30,
      }],
      ["kf_create_session", { MsgType: "event", Event: "kf_create_session", KfAccount: "kf1" }],
      ["unknown_type", { MsgType: "shortvideo_new", Content: "?" }],
    ];
    for (const [event, fields] of callbacks) {
      await t.step(`${event}: the page's count is the bridge's`, async () => {
        const before = frames.received.length;
        await postFollowerMessage(server.base, "oTap", fields);
        await waitUntil(
          () =>
            frames.received.slice(before).some((f) =>
              f.data?.msg?.event === event && f.data.msg.follower_id === "oTap"
            ),
          () => `no 102 ${event} reached the page`,
        );
        const expected = await bridgeUnread();
        await page.waitForFunction(
          `Number(document.querySelector('.contact[data-contact-id="oTap"] .unread')` +
            `?.textContent ?? 0) === ${expected}`,
          undefined,
          { timeout: 3000 },
        ).catch(() => {});
        assert.equal(await pageUnread(page, "oTap"), expected, `after ${event}`);
      });
    }

    await t.step(
      "the title counts a tap once: on its follower, not on the system list",
      async () => {
        const expected = await bridgeUnread();
        // oElse is in view: the title is oTap's count; oTap's assignment, still to read, is
        // oTap's news too, counted once with it (a follow and a message were three).
        await page.waitForFunction(`document.title.startsWith("(${expected}) ")`);
        assert.equal(
          await page.evaluate(`document.querySelector(".system-entry .unread")?.textContent ?? ""`),
          "1",
        );
      },
    );

    await t.step("a tap in the conversation in view is read, here and at the bridge", async () => {
      await page.locator('.contact[data-contact-id="oTap"]').click();
      await page.locator("#conv-name", { hasText: "oTap" }).waitFor();
      await waitUntil(async () => await bridgeUnread() === 0, () => "oTap still unread");
      await postFollowerMessage(server.base, "oTap", {
        MsgType: "event",
        Event: "CLICK",
        EventKey: "menu_refund",
      });
      await page.locator("#messages .msg.note", { hasText: "menu_refund" }).waitFor();
      await waitUntil(
        async () => await bridgeUnread() === 0,
        () => "the tap in view stayed unread",
      );
      await page.locator('.contact[data-contact-id="oElse"]').click();
      await page.locator("#conv-name", { hasText: "oElse" }).waitFor();
      assert.equal(await pageUnread(page, "oTap"), 0);
    });
  } finally {
    await server.close();
  }
});

consoleTest(
  "a message that comes while the agent reads back stays unread until scrolled to",
  { agent: AGENT },
  async (t, { server, page }) => {
    for (let i = 0; i < 40; i++) {
      await postFollowerMessage(server.base, "oBack", { MsgType: "text", Content: `line ${i}` });
    }
    await postFollowerMessage(server.base, "oOther", { MsgType: "text", Content: "你好" });
    await page.locator('.contact[data-contact-id="oBack"]').click();
    await page.locator(".msg.in", { hasText: "line 39" }).waitFor();
    const bridgeUnread = async (id: string) =>
      Number((await contactsOf(server.base, AGENT)).find((c) => c.contact_id === id)?.unread);
    await waitUntil(async () => await bridgeUnread("oBack") === 0, () => "oBack not read");
    const scrollUp = async () => {
      await page.locator("#messages").hover();
      await page.mouse.wheel(0, -20_000);
      await page.waitForFunction(
        `(() => { const b = document.querySelector("#messages");
          return b.scrollHeight - b.scrollTop - b.clientHeight > 400; })()`,
      );
    };

    await t.step("scrolled up: counted on its row and in the title, not read", async () => {
      await scrollUp();
      await postFollowerMessage(server.base, "oBack", { MsgType: "text", Content: "NEW below" });
      await page.locator("#new-pill", { hasText: "New messages ↓" }).waitFor();
      await page.locator('.contact[data-contact-id="oBack"] .unread', { hasText: "1" }).waitFor();
      // oOther's message (its assignment counted with it), and this one.
      await page.waitForFunction(`document.title.startsWith("(2) ")`);
    });

    await t.step("the pill takes the agent to it: read here and at the bridge", async () => {
      await page.locator("#new-pill").click();
      await waitUntil(async () => await bridgeUnread("oBack") === 0, () => "oBack stayed unread");
      await page.locator('.contact[data-contact-id="oBack"] .unread').waitFor({
        state: "detached",
      });
    });

    await t.step("scrolled up, then another conversation: its count is kept", async () => {
      await scrollUp();
      await postFollowerMessage(server.base, "oBack", { MsgType: "text", Content: "NEW again" });
      await page.locator("#new-pill", { hasText: "New messages ↓" }).waitFor();
      await page.locator('.contact[data-contact-id="oOther"]').click();
      await page.locator(".msg.in", { hasText: "你好" }).waitFor();
      await page.locator('.contact[data-contact-id="oBack"] .unread', { hasText: "1" }).waitFor();
      assert.equal(await bridgeUnread("oBack"), 1);
      await page.locator('.contact[data-contact-id="oBack"]').click();
      await page.locator(".msg.in", { hasText: "NEW again" }).waitFor();
      await waitUntil(async () => await bridgeUnread("oBack") === 0, () => "opened, not read");
    });
  },
);
