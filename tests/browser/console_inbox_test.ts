// The console as an inbox, part one: drafts per conversation, alerts, quick replies and the
// live waiting queue with "take it", in headless Chromium against the real server. A waiting
// follower counted twice in the title (the queue, and its notice on the system list), and the
// notice stayed counted after the follower was taken.

import assert from "node:assert/strict";
import type { BrowserContext, Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import {
  B,
  browserTest,
  openConsole,
  openPage,
  postFollowerMessage,
  screenshot,
  waitUntil,
} from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agent1";

/** Sound and notifications the page makes, counted: WebAudio and Notification are stood in
 * for (headless Chromium has no speaker), and the page can be made to look hidden. */
async function recordAlerts(context: BrowserContext): Promise<void> {
  await context.addInitScript(ALERT_RECORDER);
}

/** Runs in the page before its own scripts (plain JavaScript: it is the browser's). */
const ALERT_RECORDER = `
  const record = { tones: 0, notes: [] };
  window.__alerts = record;
  window.__hidden = false;
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true,
    get: () => (window.__hidden ? "hidden" : "visible"),
  });
  const param = () => ({ value: 0, setValueAtTime() {}, exponentialRampToValueAtTime() {} });
  window.AudioContext = class {
    currentTime = 0;
    destination = {};
    resume() {}
    createOscillator() {
      return { type: "", frequency: param(), connect: (n) => n, start: () => record.tones++,
        stop() {} };
    }
    createGain() {
      return { gain: param(), connect: (n) => n };
    }
  };
  window.Notification = class {
    static permission = "granted";
    static requestPermission() {
      return Promise.resolve("granted");
    }
    onclick = null;
    constructor(title) {
      record.notes.push(title);
    }
    close() {}
  };
`;

const alerts = (page: Page) =>
  page.evaluate(() =>
    (globalThis as unknown as { __alerts: { tones: number; notes: string[] } }).__alerts
  );
const setHidden = (page: Page, hidden: boolean) =>
  page.evaluate((h) => (globalThis as unknown as { __hidden: boolean }).__hidden = h, hidden);
const badge = (page: Page) =>
  page.locator('link[rel="icon"]').getAttribute("data-count").then((v) => Number(v ?? 0));
/** Sounds are one per burst (1.5 s apart): the next alert needs the gap to be heard. */
const quietGap = () => new Promise((r) => setTimeout(r, 1600));

consoleTest(
  "drafts stay with their conversation and survive a reload",
  { agent: AGENT },
  async (t, { server, page }) => {
    await postFollowerMessage(server.base, "oAnn", { MsgType: "text", Content: "from Ann" });
    await postFollowerMessage(server.base, "oBen", { MsgType: "text", Content: "from Ben" });
    const open = async (id: string) => {
      await page.locator(`.contact[data-contact-id="${id}"]`).click();
      await page.locator("#conv-name", { hasText: id }).waitFor();
    };

    await t.step("a draft typed for one follower is not in the next one's box", async () => {
      await open("oAnn");
      await page.locator("#reply").fill("Ann, your refund is");
      await open("oBen");
      assert.equal(await page.locator("#reply").inputValue(), "", "Ben's box is empty");
      await page.locator("#reply").fill("Ben: tracking number");
      await open("oAnn");
      assert.equal(await page.locator("#reply").inputValue(), "Ann, your refund is");
    });

    await t.step("a reload keeps both drafts, each with its follower", async () => {
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await open("oBen");
      assert.equal(await page.locator("#reply").inputValue(), "Ben: tracking number");
      await open("oAnn");
      assert.equal(await page.locator("#reply").inputValue(), "Ann, your refund is");
    });

    await t.step("a sent reply clears its draft", async () => {
      await page.locator("#reply").press("Enter");
      await page.locator('.msg.out[data-status="sent"]', { hasText: "Ann, your refund is" })
        .waitFor();
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await open("oAnn");
      assert.equal(await page.locator("#reply").inputValue(), "");
    });
  },
);

browserTest(
  "alerts: sound, desktop notification and favicon badge, each can be turned off",
  async (t, browser) => {
    let offsetMs = 0;
    const server = await startBridge({ now: () => Date.now() + offsetMs });
    try {
      const { context, page } = await openPage(browser);
      await recordAlerts(context);
      await openConsole(page, server.base, AGENT);

      await t.step("a new follower: a sound, and a count on the tab's icon", async () => {
        await postFollowerMessage(server.base, "oNew", { MsgType: "text", Content: "hello" });
        await page.locator('.contact[data-contact-id="oNew"]').waitFor();
        await waitUntil(async () => (await alerts(page)).tones > 0, () => "no sound");
        assert.deepEqual((await alerts(page)).notes, [], "no desktop notification while in view");
        // Its message; the system's notice that it is ours is its news too, counted once.
        await waitUntil(async () => (await badge(page)) === 1, () => "no favicon badge");
        assert.match(await page.locator('link[rel="icon"]').getAttribute("href") ?? "", /%3E1%3C/);
      });

      await t.step("away from the page, a desktop notification too", async () => {
        await quietGap();
        await setHidden(page, true);
        await postFollowerMessage(server.base, "oOther", { MsgType: "text", Content: "anyone?" });
        await waitUntil(
          async () => (await alerts(page)).notes.includes("New follower: oOther"),
          () => "no desktop notification",
        );
        await setHidden(page, false);
      });

      await t.step("a message in the open conversation is no news; one elsewhere is", async () => {
        await page.locator('.contact[data-contact-id="oNew"]').click();
        await page.locator(".msg.in", { hasText: "hello" }).waitFor();
        await quietGap();
        const before = (await alerts(page)).tones;
        await postFollowerMessage(server.base, "oNew", { MsgType: "text", Content: "in view" });
        await page.locator(".msg.in", { hasText: "in view" }).waitFor();
        await new Promise((r) => setTimeout(r, 300));
        assert.equal((await alerts(page)).tones, before, "a sound for the conversation in view");
        await postFollowerMessage(server.base, "oOther", { MsgType: "text", Content: "hello??" });
        await waitUntil(async () => (await alerts(page)).tones > before, () => "no sound");
      });

      await t.step("a reply window about to close alerts", async () => {
        await quietGap();
        const before = (await alerts(page)).tones;
        offsetMs = 47.5 * 3600_000;
        await server.bridge.sweepWindows();
        await page.locator(".msg.note", { hasText: "closes within the hour" }).waitFor();
        await waitUntil(async () => (await alerts(page)).tones > before, () => "no sound");
        offsetMs = 0;
      });

      await t.step("sound and badge off: silence, a plain icon, kept after a reload", async () => {
        await page.locator("#settings-button").click();
        await page.locator("#alert-sound").uncheck();
        await page.locator("#alert-badge").uncheck();
        await page.locator("#settings-panel").press("Escape");
        await waitUntil(async () => (await badge(page)) === 0, () => "the badge stayed");
        await quietGap();
        const before = (await alerts(page)).tones;
        await postFollowerMessage(server.base, "oOther", { MsgType: "text", Content: "still?" });
        await page.locator(".contact-preview", { hasText: "still?" }).waitFor();
        await new Promise((r) => setTimeout(r, 300));
        assert.equal((await alerts(page)).tones, before, "a sound with sound off");
        await page.reload();
        await page.locator('#conn[data-state="connected"]').waitFor();
        await page.locator("#settings-button").click();
        assert.equal(await page.locator("#alert-sound").isChecked(), false);
        assert.equal(await page.locator("#alert-badge").isChecked(), false);
        assert.equal(await page.locator("#alert-desktop").isChecked(), true);
      });
    } finally {
      await server.close();
    }
  },
);

consoleTest(
  "quick replies: kept on the server, managed here, inserted with / and filled",
  { agent: AGENT },
  async (t, { server, page }) => {
    await postFollowerMessage(server.base, "oWang", { MsgType: "text", Content: "发票怎么开" });
    await page.locator('.contact[data-contact-id="oWang"]').click();
    await page.locator(".msg.in", { hasText: "发票怎么开" }).waitFor();
    await server.store.renameContact(AGENT, "oWang", "王女士");

    await t.step("added from the console, it is the team's (GET quick_replies)", async () => {
      await page.locator("#quick-button").click();
      const dialog = page.locator("#quick-manager");
      await dialog.locator('input[name="title"]').fill("发票");
      await dialog.locator('textarea[name="text"]').fill(
        "{name}您好，发票请在订单页申请。客服 {agent}",
      );
      await dialog.locator("#quick-save").click();
      await dialog.locator(".quick-list li", { hasText: "发票" }).waitFor();
      await dialog.locator('input[name="title"]').fill("Greeting");
      await dialog.locator('textarea[name="text"]').fill("Hello {name}!");
      await dialog.locator("#quick-save").click();
      await dialog.locator(".quick-list li", { hasText: "Greeting" }).waitFor();
      const res = await fetch(`${server.base}${B}/quick_replies?userid=someone-else`);
      const titles = (await res.json()).quick_replies.map((q: { title: string }) => q.title);
      assert.deepEqual(titles.sort(), ["Greeting", "发票"].sort());
      await screenshot(page, "console-laptop-quick-replies-en");
      await dialog.locator("button", { hasText: "Close" }).click();
    });

    await t.step("/ and a word find it; Enter puts it in, the name filled", async () => {
      // The list is read after the socket connects: here it comes only once "/发" is typed,
      // as it does on a slow link, and the open picker takes it when it comes.
      let release = () => {};
      const listHeld = new Promise<void>((resolve) => release = resolve);
      await page.route(/\/quick_replies\?/, async (route) => {
        if (route.request().method() === "GET") await listHeld;
        await route.continue();
      });
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator('.contact[data-contact-id="oWang"]').click();
      await page.locator("#reply").focus();
      await page.keyboard.type("/发");
      const picker = page.locator("#quick-picker");
      await picker.locator(".quick-none").waitFor();
      release();
      await picker.locator(".quick-item", { hasText: "发票" }).waitFor();
      await page.unroute(/\/quick_replies\?/);
      assert.equal(await picker.locator(".quick-item").count(), 1, "the search narrowed it");
      await page.keyboard.press("Enter");
      assert.equal(
        await page.locator("#reply").inputValue(),
        `王女士您好，发票请在订单页申请。客服 ${AGENT}`,
      );
      assert.equal(await picker.count(), 0, "the picker closed");
      assert.equal(
        (await server.store.readHistory("oWang", null, 50)).items.filter((i) =>
          i.direction === "out"
        ).length,
        0,
        "choosing sent nothing yet",
      );
      await page.keyboard.press("Enter");
      await page.locator('.msg.out[data-status="sent"]', { hasText: "发票请在订单页申请" })
        .waitFor();
    });

    await t.step("arrows move in the list, Escape closes it", async () => {
      await page.keyboard.type("/");
      const items = page.locator("#quick-picker .quick-item");
      await items.nth(1).waitFor();
      await page.keyboard.press("ArrowDown");
      assert.equal(await items.nth(1).getAttribute("aria-selected"), "true");
      await page.keyboard.press("Escape");
      assert.equal(await page.locator("#quick-picker").count(), 0);
      assert.equal(await page.locator("#reply").inputValue(), "/", "Escape keeps what was typed");
    });

    await t.step("a follower nobody named: {name} is left out, never the OpenID", async () => {
      const openId = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M";
      await postFollowerMessage(server.base, openId, { MsgType: "text", Content: "在吗" });
      await page.locator(`.contact[data-contact-id="${openId}"]`).click();
      await page.locator(".msg.in", { hasText: "在吗" }).waitFor();
      await page.locator("#reply").fill("");
      await page.keyboard.type("/发");
      await page.locator("#quick-picker .quick-item", { hasText: "发票" }).waitFor();
      await page.keyboard.press("Enter");
      assert.equal(
        await page.locator("#reply").inputValue(),
        `您好，发票请在订单页申请。客服 ${AGENT}`,
      );
      await page.locator("#reply").fill("/Greet");
      await page.locator("#quick-picker .quick-item", { hasText: "Greeting" }).waitFor();
      await page.keyboard.press("Enter");
      assert.equal(await page.locator("#reply").inputValue(), "Hello!");
      await page.locator("#reply").fill("");
    });

    await t.step("deleted from the console, it is gone for the team", async () => {
      await page.locator("#quick-button").click();
      const row = page.locator("#quick-manager .quick-list li", { hasText: "Greeting" });
      await row.locator("button", { hasText: "Delete" }).click();
      await row.waitFor({ state: "detached" });
      const res = await fetch(`${server.base}${B}/quick_replies?userid=${AGENT}`);
      assert.deepEqual(
        (await res.json()).quick_replies.map((q: { title: string }) => q.title),
        ["发票"],
      );
    });
  },
);

browserTest(
  "the waiting queue is live, shows what was asked, and take it claims",
  async (t, browser) => {
    const server = await startBridge();
    try {
      const a = await openPage(browser);
      const b = await openPage(browser, "phone");
      await openConsole(a.page, server.base, "agentA");
      await openConsole(b.page, server.base, "agentB");
      // Both full: a new follower waits.
      for (const agent of ["agentA", "agentB"]) {
        const res = await fetch(`${server.base}${B}/send?userid=${agent}`, {
          method: "POST",
          body: JSON.stringify({ data: { msg_type: "capacity", msg: { max: 0 } } }),
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
      }

      await t.step("a waiting follower shows at once, with the first message", async () => {
        await postFollowerMessage(server.base, "oWait", { MsgType: "text", Content: "我要退货" });
        for (const page of [a.page, b.page]) {
          const entry = page.locator('#waiting-live .waiting-entry[data-contact-id="oWait"]');
          await entry.waitFor();
          assert.equal(await entry.locator(".waiting-preview").innerText(), "我要退货");
        }
        await screenshot(a.page, "console-laptop-waiting-en");
        await screenshot(b.page, "console-phone-waiting-en");
      });

      await t.step("the title counts it once, as the queue does", async () => {
        await a.page.locator(".system-entry", { hasText: "oWait" }).waitFor();
        assert.match(await a.page.title(), /^\(1\) /, "the queue and its notice both counted");
        assert.equal(await a.page.locator(".system-entry .unread").count(), 0);
      });

      await t.step("take it: the follower is A's, gone from both queues", async () => {
        await a.page.locator('.waiting-entry[data-contact-id="oWait"] .take-button').click();
        await a.page.locator('#contact-list .contact[data-contact-id="oWait"]').waitFor();
        // Taken, it is open, with what they asked, and the agent types to them.
        await a.page.locator("#conv-name", { hasText: "oWait" }).waitFor();
        await a.page.locator(".msg.in", { hasText: "我要退货" }).waitFor();
        await a.page.waitForFunction(`document.activeElement?.id === "reply"`);
        await a.page.locator("#waiting-live").waitFor({ state: "detached" });
        await b.page.locator("#waiting-live").waitFor({ state: "detached" });
        assert.equal((await server.store.getContact("oWait"))?.agent_id, "agentA");
        // Taken by A: nothing left for B to read.
        await b.page.waitForFunction(`!document.title.startsWith("(")`);
        await a.page.locator('.contact[data-contact-id="oWait"]').click();
        await a.page.locator(".msg.in", { hasText: "我要退货" }).waitFor();
        assert.equal(await a.page.locator("#reply").isDisabled(), false);
      });

      await t.step("B making room takes the queue; it leaves A's list at once", async () => {
        await postFollowerMessage(server.base, "oLater", { MsgType: "text", Content: "还有人吗" });
        const entry = a.page.locator('#waiting-live .waiting-entry[data-contact-id="oLater"]');
        await entry.waitFor();
        const res = await fetch(`${server.base}${B}/send?userid=agentB`, {
          method: "POST",
          body: JSON.stringify({ data: { msg_type: "capacity", msg: { max: null } } }),
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
        await b.page.locator('#contact-list .contact[data-contact-id="oLater"]').waitFor();
        // Well before the console's 30 s reread of the list: the bridge said so.
        await entry.waitFor({ state: "detached", timeout: 3_000 });
      });

      await t.step("B's reply to A's follower is refused by the bridge (409)", async () => {
        const res = await fetch(`${server.base}${B}/send?userid=agentB`, {
          method: "POST",
          body: JSON.stringify({
            data: { msg_type: "text", contact_id: "oWait", msg: { content: "mine" } },
          }),
        });
        assert.equal(res.status, 409);
        await res.body?.cancel();
      });
    } finally {
      await server.close();
    }
  },
);

browserTest(
  "Take it, beaten to it by a colleague: the toast names the follower",
  async (_t, browser) => {
    const server = await startBridge();
    try {
      const { page } = await openPage(browser);
      // The news that agentB took oRace is lost on the way (a slow network): Take it is pressed
      // for a follower already taken.
      await page.routeWebSocket(/\/msg\?/, (ws) => {
        const bridge = ws.connectToServer();
        bridge.onMessage((frame) => {
          if (!String(frame).includes('"claimed"')) ws.send(frame);
        });
      });
      await openConsole(page, server.base, "agentA");
      for (const agent of ["agentA", "agentB"]) {
        const res = await fetch(`${server.base}${B}/send?userid=${agent}`, {
          method: "POST",
          body: JSON.stringify({ data: { msg_type: "capacity", msg: { max: 0 } } }),
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
      }
      await postFollowerMessage(server.base, "oRace", { MsgType: "text", Content: "有人吗" });
      const entry = page.locator('#waiting-live .waiting-entry[data-contact-id="oRace"]');
      await entry.waitFor();
      const res = await fetch(`${server.base}${B}/send?userid=agentB`, {
        method: "POST",
        body: JSON.stringify({ data: { msg_type: "claim", contact_id: "oRace" } }),
      });
      assert.equal(res.status, 200, await res.text());
      await entry.locator(".take-button").click();
      await page.locator(".toast", { hasText: "Another agent took oRace first" }).waitFor();
    } finally {
      await server.close();
    }
  },
);
