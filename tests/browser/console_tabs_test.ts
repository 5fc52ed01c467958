// Two tabs of one agent in one browser (the console open twice, as agents do): a conversation
// read in one stayed unread in the other, title count included; and a tab leaving a
// conversation wrote its own box over the draft the other tab was typing, so a reload lost it.
// And a tab behind another rendered nothing, its title's count included, until shown again.
// A private note typed in one tab showed in the other's reply box (and came back as a reply after
// a reload): it shows there as a note; and the other tab's draft landing mid-composition left
// Enter dead until a blur.
// The system list's notices counted on its entry but not in the title or on the icon, so an
// agent in another tab missed them; one that came to a hidden tab left on that list (or on its
// follower's thread) stayed counted after the agent had seen it there.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import { browserTest, openConsole, openPage, openTab, postFollowerMessage } from "./browser.ts";
import { openTabsOn } from "./console_session.ts";

const AGENT = "agentA";

const unread = (page: Page, id: string) =>
  page.locator(`#contact-list .contact[data-contact-id="${id}"] .unread`).count();

browserTest("two tabs of one agent share read state and drafts", async (t, browser) => {
  const server = await startBridge();
  try {
    const { context, page: one } = await openPage(browser);
    const two = await openTab(context);
    await openConsole(one, server.base, AGENT);
    await openConsole(two, server.base, AGENT);
    await postFollowerMessage(server.base, "oAnn", { MsgType: "text", Content: "hello" });
    await postFollowerMessage(server.base, "oBen", { MsgType: "text", Content: "hi there" });
    for (const page of [one, two]) {
      await page.locator('.contact[data-contact-id="oBen"] .unread').waitFor();
      await page.locator('.contact[data-contact-id="oAnn"] .unread').waitFor();
    }
    // As an agent does, the tab worked in is brought to the front (a tab behind draws slowly).
    const open = async (page: Page, id: string) => {
      await page.bringToFront();
      await page.locator(`.contact[data-contact-id="${id}"]`).click();
      await page.locator("#conv-name", { hasText: id }).waitFor();
    };

    await t.step("read in one tab, it is read in the other, title and all", async () => {
      // Two messages; the system's notices that each follower is ours are read with them,
      // and counted with them: once each.
      assert.match(await two.title(), /^\(2\)/);
      await open(one, "oAnn");
      await two.locator('.contact[data-contact-id="oAnn"] .unread').waitFor({ state: "detached" });
      assert.equal(await unread(two, "oBen"), 1, "only what was read");
      // Read with oAnn: its assignment's notice.
      assert.match(await two.title(), /^\(1\)/);
    });

    await t.step("a tab moving on does not write over the draft the other is typing", async () => {
      await open(two, "oAnn");
      await one.locator("#reply").fill("您的退款已经");
      await open(two, "oBen");
      await one.reload();
      await one.locator('#conn[data-state="connected"]').waitFor();
      await open(one, "oBen");
      await open(one, "oAnn");
      assert.equal(await one.locator("#reply").inputValue(), "您的退款已经", "lost on reload");
    });

    await t.step("the other tab's box shows the draft as it is typed", async () => {
      await open(two, "oAnn");
      await one.bringToFront();
      await one.locator("#reply").fill("您的退款已经在路上");
      await two.waitForFunction(
        `document.querySelector("#reply").value === ${JSON.stringify("您的退款已经在路上")}`,
      );
    });

    await t.step("sent from one tab, the other's box is empty: nothing to send twice", async () => {
      await one.bringToFront();
      await one.locator("#reply").fill("您的退款已经到账");
      await one.locator("#reply").press("Enter");
      await two.locator('.msg.out[data-status="sent"]', { hasText: "您的退款已经到账" }).waitFor();
      await two.waitForFunction(`document.querySelector("#reply").value === ""`);
    });
  } finally {
    await server.close();
  }
});

/** A tab behind another, as Chromium treats it: hidden, and no animation frames until shown. */
const HIDDEN_TAB = `
  window.__hidden = false;
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true,
    get: () => (window.__hidden ? "hidden" : "visible"),
  });
  Object.defineProperty(Document.prototype, "hidden", {
    configurable: true,
    get: () => window.__hidden,
  });
  const held = [];
  const frame = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (callback) =>
    window.__hidden ? -held.push(callback) : frame(callback);
  window.__setHidden = (hidden) => {
    window.__hidden = hidden;
    document.dispatchEvent(new Event("visibilitychange"));
    if (!hidden) for (const callback of held.splice(0)) frame(callback);
  };
`;

browserTest("a hidden tab's title and icon count what came in", async (t, browser) => {
  const server = await startBridge();
  try {
    const { context, page } = await openPage(browser);
    await context.addInitScript(HIDDEN_TAB);
    await openConsole(page, server.base, AGENT);
    const setHidden = (hidden: boolean) =>
      page.evaluate(`window.__setHidden(${JSON.stringify(hidden)})`);
    const badge = () => page.locator('link[rel="icon"]').getAttribute("data-count");

    const systemCount = () =>
      page.evaluate(`document.querySelector(".system-entry .unread")?.textContent ?? ""`);

    await t.step("away in another tab, a new follower shows in the tab's title", async () => {
      await setHidden(true);
      await postFollowerMessage(server.base, "oAway", { MsgType: "text", Content: "在吗" });
      // Its message; the system's notice that it is ours now is its news too, counted once.
      await page.waitForFunction(`document.title.startsWith("(1) ")`);
      assert.equal(await badge(), "1");
      await postFollowerMessage(server.base, "oAway", { MsgType: "text", Content: "有人吗" });
      await page.waitForFunction(`document.title.startsWith("(2) ")`);
      assert.equal(await badge(), "2");
    });

    await t.step("back in the tab, the list has them", async () => {
      await setHidden(false);
      await page.locator('.contact[data-contact-id="oAway"] .unread', { hasText: "2" }).waitFor();
      assert.equal(await systemCount(), "1");
    });

    await t.step("a system notice alone shows in the title and on the icon", async () => {
      // Read, the conversation takes its own notices with it (its assignment).
      await page.locator('.contact[data-contact-id="oAway"]').click();
      await page.waitForFunction(`!document.title.startsWith("(")`);
      assert.equal(await systemCount(), "");
      await setHidden(true);
      await postFollowerMessage(server.base, "oAway", {
        MsgType: "event",
        Event: "CLICK",
        EventKey: "menu_invoice",
      });
      await page.waitForFunction(`document.title.startsWith("(1) ")`);
      assert.equal(await badge(), "1");
    });

    await t.step("back in the tab, the notice is read in the thread it shows in", async () => {
      await setHidden(false);
      await page.locator("#messages .msg.note", { hasText: "menu_invoice" }).waitFor();
      await page.waitForFunction(`!document.title.startsWith("(")`);
      assert.equal(await systemCount(), "");
      assert.equal(await badge(), "0");
    });

    await t.step("left open in a hidden tab, it counts; seen when the tab is back", async () => {
      await setHidden(true);
      await postFollowerMessage(server.base, "oAway", {
        MsgType: "event",
        Event: "CLICK",
        EventKey: "menu_refund",
      });
      await page.waitForFunction(`document.title.startsWith("(1) ")`);
      assert.equal(await badge(), "1");
      await setHidden(false);
      await page.locator("#messages .msg.note", { hasText: "menu_refund" }).waitFor();
      await page.waitForFunction(`!document.title.startsWith("(")`);
      // Read in view: leaving the list does not bring its count back.
      await page.locator('.contact[data-contact-id="oAway"]').click();
      await page.locator("#conv-name", { hasText: "oAway" }).waitFor();
      assert.equal(await systemCount(), "");
      assert.equal(await badge(), "0");
    });
  } finally {
    await server.close();
  }
});

browserTest("a private note being typed stays out of every reply box", async (t, browser) => {
  const server = await startBridge();
  try {
    const { context, page: one } = await openPage(browser);
    const two = await openTab(context);
    await postFollowerMessage(server.base, "oNote", { MsgType: "text", Content: "退款呢" });
    await postFollowerMessage(server.base, "oElse", { MsgType: "text", Content: "hello" });
    await openTabsOn([two, one], server, { agent: AGENT, followerId: "oNote", shows: "退款呢" });
    const note = "内部：第三次要求退款，先别答应";
    const mode = (page: Page) => page.locator("#composer").getAttribute("data-mode");

    await t.step("the other tab's box shows it as the note it is, not as a reply", async () => {
      await one.locator("#mode-note").click();
      await one.locator("#reply").fill(note);
      // Storage events come in order: once this one is in, the note's would have been.
      await one.locator('.contact[data-contact-id="oElse"]').click();
      await one.locator("#reply").fill("marker");
      await two.waitForFunction(
        `Object.keys(localStorage).some((k) => k.endsWith(":oElse"))`,
      );
      await two.evaluate("new Promise((r) => setTimeout(r, 0))");
      assert.equal(await mode(two), "note", "the note in a reply box");
      assert.equal(await two.locator("#reply").inputValue(), note);
    });

    await t.step("back in the conversation, and after a reload, it is still a note", async () => {
      await one.locator('.contact[data-contact-id="oNote"]').click();
      assert.equal(await one.locator("#reply").inputValue(), note);
      assert.equal(await mode(one), "note", "the note came back as a reply");
      await one.reload();
      await one.locator('#conn[data-state="connected"]').waitFor();
      await one.locator('.contact[data-contact-id="oNote"]').click();
      assert.equal(await one.locator("#reply").inputValue(), note);
      assert.equal(await mode(one), "note", "after a reload, the note came back as a reply");
    });

    await t.step("switched to a reply, the text is the reply's in both tabs", async () => {
      await one.locator("#mode-reply").click();
      await one.locator("#reply").press("End");
      await one.keyboard.type("!");
      await two.waitForFunction(
        `document.querySelector("#reply").value === ${JSON.stringify(`${note}!`)}`,
      );
    });
  } finally {
    await server.close();
  }
});

browserTest(
  "a draft from the other tab ends a composition here: Enter sends",
  async (_t, browser) => {
    const server = await startBridge();
    try {
      const { context, page: one } = await openPage(browser);
      const two = await openTab(context);
      await postFollowerMessage(server.base, "oIme", { MsgType: "text", Content: "在吗" });
      for (const page of [one, two]) {
        await openConsole(page, server.base, AGENT);
        await page.locator('.contact[data-contact-id="oIme"]').click();
        await page.locator(".msg.in", { hasText: "在吗" }).waitFor();
      }
      await two.bringToFront();
      await two.locator("#reply").focus();
      // A real composition (the input method's), which the other tab's draft then replaces: Chrome
      // ends it without a compositionend.
      const ime = await context.newCDPSession(two);
      await ime.send("Input.imeSetComposition", {
        text: "zai",
        selectionStart: 3,
        selectionEnd: 3,
      });
      await one.locator("#reply").fill("在的，");
      await two.waitForFunction(`document.querySelector("#reply").value === "在的，"`);
      await two.keyboard.press("End");
      await two.keyboard.insertText("请问有什么可以帮您");
      await two.keyboard.press("Enter");
      await two.locator('.msg.out[data-status="sent"]', { hasText: "在的，请问有什么可以帮您" })
        .waitFor();
    } finally {
      await server.close();
    }
  },
);
