// The console over a whole shift, worked as an agent works it: thirty followers writing, pictures
// and voice coming in, a transfer in and out, a reload mid-draft, a network drop, the system list.
// A picture's or a voice's entry in the list said "[Image]" (or "[Voice]" and what WeChat heard)
// as it came, then the bridge's "[image]" or "[voice]" a second later, when GET contacts was read
// again, in English in a Chinese console too; so did the waiting queue's. And a follower handed
// over to us showed what it had said to the other agent (read from the history) after what it
// said to us since, when both fell in one second. On a phone, back at the list, what the follower
// left open wrote (or the system list, left open) was read at once, no count, though off screen.
// A notice about the follower in view (a menu tap), shown in its thread as it came, was counted
// unread on the system list and in the title all the same; and one about a follower (its
// assignment) stayed counted after its conversation was opened and read. A quick reply a
// colleague added during the shift was never there to pick: the list was read once, at the start.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { connectRoutedAgent, startBridge } from "../helpers/server.ts";
import { B, browserTest, makePng, openConsole, openPage, postFollowerMessage } from "./browser.ts";
import { consoleTest, wechatConsoleTest } from "./console_session.ts";

const AGENT = "agentA";

const preview = (page: Page, id: string) =>
  page.locator(`.contact[data-contact-id="${id}"] .contact-preview`).innerText();

/** Waits for the console's next read of GET contacts and the render after it. */
async function contactsReadAgain(page: Page): Promise<void> {
  await page.waitForResponse((res) => res.url().includes("/contacts?"), { timeout: 10_000 });
  await page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))");
}

wechatConsoleTest(
  "a picture's and a voice's list entry says what they are, read again too",
  { agent: AGENT, appId: "wxshift9" },
  async (t, { server, fake, context, page, browser }) => {
    fake.addMedia("img1", await makePng(64, 48), "image/png");
    fake.addMedia(
      "voc1",
      await Deno.readFile(new URL("../fixtures/media/voice.amr", import.meta.url)),
      "audio/amr",
    );

    await t.step("as they come, and after GET contacts is read again", async () => {
      await postFollowerMessage(server.base, "oPic", { MsgType: "image", MediaId: "img1" });
      await postFollowerMessage(server.base, "oVoice", {
        MsgType: "voice",
        MediaId: "voc1",
        Format: "amr",
        Recognition: "我要退货",
      });
      await page.locator('.contact[data-contact-id="oVoice"]').waitFor();
      assert.equal(await preview(page, "oPic"), "[Image]");
      assert.equal(await preview(page, "oVoice"), "[Voice] 我要退货");
      // A new message has the list read again 1.5 s later.
      await contactsReadAgain(page);
      assert.equal(await preview(page, "oPic"), "[Image]", "the bridge's [image]");
      assert.equal(await preview(page, "oVoice"), "[Voice] 我要退货");
    });

    await t.step("after a reload, from GET contacts alone", async () => {
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator('.contact[data-contact-id="oPic"]').waitFor();
      assert.equal(await preview(page, "oPic"), "[Image]");
      assert.equal(await preview(page, "oVoice"), "[Voice]");
    });

    await t.step("in the waiting queue", async () => {
      // Another agent, at its limit of none, sees the follower nobody could take wait.
      const other = await openPage(browser);
      await other.context.addInitScript(`localStorage.setItem("wxbridge.capacity:agentC", "0")`);
      await openConsole(other.page, server.base, "agentC");
      await page.locator("#capacity-button").click();
      await page.locator("#capacity-input").fill("0");
      await page.locator("#capacity-input").press("Enter");
      await page.locator("#capacity-form").waitFor({ state: "hidden" });
      await new Promise((r) => setTimeout(r, 300));
      await postFollowerMessage(server.base, "oQueued", { MsgType: "image", MediaId: "img1" });
      const entry = page.locator('.waiting-entry[data-contact-id="oQueued"] .waiting-preview');
      await entry.waitFor();
      assert.equal(await entry.innerText(), "[Image]");
      await other.context.close();
    });
    await context.close();
  },
);

wechatConsoleTest("a follower handed over to us reads in the order it wrote", {
  agent: AGENT,
  appId: "wxshift9",
}, async (_t, { server, fake, page }) => {
  fake.addMedia("img1", await makePng(64, 48), "image/png");
  await postFollowerMessage(server.base, "oHere", { MsgType: "text", Content: "先来的" });
  await page.locator('.contact[data-contact-id="oHere"]').click();
  const colleague = await connectRoutedAgent(server, "agentB");
  try {
    // One second for both: the picture to the colleague, the words to us after the transfer.
    const second = Math.floor(Date.now() / 1000) - 30;
    await postFollowerMessage(server.base, "oMoved", {
      ToUserName: "agentB",
      MsgType: "image",
      MediaId: "img1",
      CreateTime: second,
    });
    await colleague.waitFor((e) => e.data.contact_id === "oMoved");
    colleague.send({
      data: { msg_type: "transfer", client_id: "t1", contact_id: "oMoved", msg: { to: AGENT } },
      result: { code: 0, message: "command" },
    });
    await page.locator('.contact[data-contact-id="oMoved"]').waitFor();
    await postFollowerMessage(server.base, "oMoved", {
      MsgType: "text",
      Content: "图片收到了吗",
      CreateTime: second,
    });
    await page.locator('.contact[data-contact-id="oMoved"]', { hasText: "图片收到了吗" })
      .waitFor();
    await page.locator('.contact[data-contact-id="oMoved"]').click();
    await page.locator("#messages .msg.type-image").waitFor();
    const order = await page.evaluate(`[...document.querySelectorAll("#messages .msg.in")]
      .map((n) => n.dataset.msgType)`);
    assert.deepEqual(order, ["image", "text"], "what it said since came before what it said");
  } finally {
    await colleague.close();
  }
});

browserTest(
  "on a phone, back at the list, the one left open counts what comes",
  async (t, browser) => {
    const server = await startBridge();
    try {
      const { page } = await openPage(browser, "phone");
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oLeft", { MsgType: "text", Content: "在吗" });
      const entry = page.locator('.contact[data-contact-id="oLeft"]');

      await t.step("a follower's conversation", async () => {
        await entry.tap();
        await page.locator(".msg.in", { hasText: "在吗" }).waitFor();
        await page.locator("#back-button").tap();
        await page.locator("#contact-list").waitFor();
        await postFollowerMessage(server.base, "oLeft", { MsgType: "text", Content: "人呢" });
        await entry.filter({ hasText: "人呢" }).waitFor();
        await entry.locator(".unread", { hasText: "1" }).waitFor({ timeout: 3000 });
        // Its assignment was read with it.
        await page.waitForFunction(`document.title.startsWith("(1) ")`);
        await entry.tap();
        await page.locator(".msg.in", { hasText: "人呢" }).waitFor();
        await page.waitForFunction(`!document.title.startsWith("(")`);
      });

      await t.step("the system list", async () => {
        await page.locator("#back-button").tap();
        await page.locator(".system-entry").tap();
        await page.locator("#messages .msg.note", { hasText: "oLeft" }).waitFor();
        await page.waitForFunction(`!document.title.startsWith("(")`);
        await page.locator("#back-button").tap();
        await page.locator("#contact-list").waitFor();
        // A menu tap counts on its follower, as the bridge counts it; a new follower's
        // assignment on the system list left open.
        await postFollowerMessage(server.base, "oLeft", {
          MsgType: "event",
          Event: "CLICK",
          EventKey: "menu_help",
        });
        await page.locator(".system-entry", { hasText: "menu_help" }).waitFor();
        await entry.locator(".unread", { hasText: "1" }).waitFor({ timeout: 3000 });
        await postFollowerMessage(server.base, "oNew", { MsgType: "text", Content: "你好" });
        await page.locator(".system-entry", { hasText: "oNew" }).waitFor();
        await page.locator(".system-entry .unread", { hasText: "1" }).waitFor({ timeout: 3000 });
      });
    } finally {
      await server.close();
    }
  },
);

consoleTest(
  "a notice shown in the conversation in view is read there",
  { agent: AGENT },
  async (_t, { server, page }) => {
    await postFollowerMessage(server.base, "oSeen", { MsgType: "text", Content: "怎么开发票" });
    await postFollowerMessage(server.base, "oElse", { MsgType: "text", Content: "你好" });
    await page.locator('.contact[data-contact-id="oSeen"]').click();
    await page.locator(".msg.in", { hasText: "怎么开发票" }).waitFor();
    const systemCount = () =>
      page.evaluate(`document.querySelector(".system-entry .unread")?.textContent ?? ""`);
    // oElse's assignment, not read yet (oSeen's was, with it), and oElse's message: the title
    // counts them once, as oElse's news (its row counts the message).
    assert.equal(await systemCount(), "1");
    await page.waitForFunction(`document.title.startsWith("(1) ")`);
    const tap = (key: string) =>
      postFollowerMessage(server.base, "oSeen", {
        MsgType: "event",
        Event: "CLICK",
        EventKey: key,
      });
    await tap("menu_invoice");
    await page.locator("#messages .msg.note", { hasText: "menu_invoice" }).waitFor();
    await page.locator(".system-entry", { hasText: "menu_invoice" }).waitFor();
    assert.equal(await systemCount(), "1", "counted though the agent saw it come");
    assert.match(await page.title(), /^\(1\) /);
    // Elsewhere, the next one is news.
    await page.locator('.contact[data-contact-id="oElse"]').click();
    await page.waitForFunction(`!document.title.startsWith("(")`);
    await tap("menu_refund");
    // Counted on its follower, as the bridge counts it.
    await page.locator('.contact[data-contact-id="oSeen"] .unread', { hasText: "1" }).waitFor();
    await page.waitForFunction(`document.title.startsWith("(1) ")`);
  },
);

consoleTest(
  "a quick reply a colleague adds mid-shift is there to pick",
  { agent: AGENT },
  async (_t, { server, page }) => {
    await postFollowerMessage(server.base, "oAsk", { MsgType: "text", Content: "怎么退货" });
    await page.locator('.contact[data-contact-id="oAsk"]').click();
    await page.locator(".msg.in", { hasText: "怎么退货" }).waitFor();
    // The list was read as the page started; the colleague adds one after.
    const res = await fetch(`${server.base}${B}/quick_replies?userid=agentB`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ title: "退货", text: "退货请在订单页点“申请售后”。" }),
    });
    assert.equal(res.status < 300, true, await res.text());
    await page.locator("#reply").focus();
    await page.keyboard.type("/退");
    await page.locator("#quick-picker .quick-item", { hasText: "退货" }).waitFor();
    await page.keyboard.press("Enter");
    assert.equal(await page.locator("#reply").inputValue(), "退货请在订单页点“申请售后”。");
    // A read the picker could not make (the network gone a moment) is not the manager's error.
    await page.route(/\/quick_replies\?/, (route) => route.abort());
    const failed = page.waitForEvent("requestfailed", (r) => r.url().includes("/quick_replies"));
    await page.keyboard.type(" /");
    await page.locator("#quick-picker").waitFor();
    await failed;
    await page.keyboard.press("Escape");
    await page.unroute(/\/quick_replies\?/);
    await page.locator("#quick-button").click();
    await page.locator("#quick-manager .quick-list li", { hasText: "退货" }).waitFor();
    assert.equal(await page.locator("#quick-manager .inline-error").count(), 0, "a stale error");
  },
);
