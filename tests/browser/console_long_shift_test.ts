// The console over a whole shift, looked at once more as an agent works it: keyboard only,
// through many conversations. Down a long list with Alt+↓ from the reply box, the conversation
// opened went out of the list's view: nothing showed where in the queue the agent was; and a
// reply half typed in one conversation left no trace in the list once the agent was pulled to
// another, where the follower's next message covered it; and a reply sent with the network
// gone said "Sending…" under a header that said Offline; and a search hit in a long message
// showed the whole message from its start, the words found far down it, unmarked; and Escape
// from the help sheet (opened with ? from the messages or a list entry) put the focus on the ?
// button, where the next j, k or r did nothing the agent meant; and a search hit in a location's
// label (or a voice's recognition) showed nothing, and one cut in a row of flags re-paired them;
// and a reply already on its way when the network went said Sending… on under Offline.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import {
  B,
  browserTest,
  followerXml,
  openConsole,
  openPage,
  postFollowerMessage,
  screenshot,
} from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentA";

/** Posts one text from each of `count` followers (oM00, oM01…), the later ones newer. */
async function manyFollowers(base: string, count: number): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${base}${B}/send_xml`, {
      method: "POST",
      headers: { "content-type": "text/xml" },
      body: followerXml(`oM${String(i).padStart(2, "0")}`, {
        MsgType: "text",
        Content: `问题 ${i}`,
        CreateTime: now - count + i,
      }),
    });
    assert.equal(res.status, 200, await res.text());
  }
}

/** Whether the list's active entry is inside the list's visible part (an expression). */
const activeInView = `(() => {
  const active = document.querySelector("#contact-list .contact.active");
  const scroller = active?.closest(".contact-scroll");
  if (!active || !scroller) return false;
  const a = active.getBoundingClientRect();
  const s = scroller.getBoundingClientRect();
  return a.top >= s.top - 1 && a.bottom <= s.bottom + 1;
})()`;

/** Waits until the open conversation's entry is in the list's view; failing, says so. */
async function activeShows(page: Page): Promise<void> {
  await page.waitForFunction(activeInView, undefined, { timeout: 10_000 }).catch((error) => {
    throw new Error("the open conversation is out of the list's view", { cause: error });
  });
}

consoleTest(
  "down a long list with Alt+↓, the open conversation stays in view",
  { agent: AGENT },
  async (_t, { server, page }) => {
    await manyFollowers(server.base, 40);
    await page.locator('.contact[data-contact-id="oM00"]').waitFor();
    await page.locator('.contact[data-contact-id="oM39"]').click();
    await page.locator(".msg.in", { hasText: "问题 39" }).waitFor();
    // From the reply box, one after the other, past the bottom of what the list shows.
    for (let i = 38; i >= 20; i--) {
      await page.keyboard.press("Alt+ArrowDown");
      await page.locator(".msg.in", { hasText: `问题 ${i}` }).waitFor();
    }
    await page.locator('.contact.active[data-contact-id="oM20"]').waitFor();
    assert.equal(await page.evaluate("document.activeElement?.id"), "reply");
    await activeShows(page);
    // And back up to the top.
    for (let i = 21; i <= 39; i++) await page.keyboard.press("Alt+ArrowUp");
    await page.locator('.contact.active[data-contact-id="oM39"]').waitFor();
    await page.locator(".msg.in", { hasText: "问题 39" }).waitFor();
    await activeShows(page);
  },
);

consoleTest(
  "a reply half typed in one conversation shows in the list while the agent is in another",
  { agent: AGENT },
  async (t, { server, page }) => {
    for (const id of ["oX", "oY"]) {
      await postFollowerMessage(server.base, id, { MsgType: "text", Content: `${id} 你好` });
      await page.locator(`.contact[data-contact-id="${id}"]`).waitFor();
    }
    const x = page.locator('.contact[data-contact-id="oX"]');
    await x.click();
    await page.locator("#reply").pressSequentially("还在查，稍等");
    // Pulled away to the other conversation before sending.
    await page.locator('.contact[data-contact-id="oY"]').click();
    await page.locator(".msg.in", { hasText: "oY 你好" }).waitFor();

    await t.step("the follower writes meanwhile: the draft still shows", async () => {
      await postFollowerMessage(server.base, "oX", { MsgType: "text", Content: "有结果了吗" });
      await x.locator(".unread", { hasText: "1" }).waitFor();
      assert.equal(await x.locator(".contact-preview").innerText(), "Draft: 还在查，稍等");
    });

    await t.step("back, sent: the draft is gone from the list", async () => {
      await x.click();
      assert.equal(await page.locator("#reply").inputValue(), "还在查，稍等");
      await page.keyboard.press("Enter");
      await page.locator(".msg.out", { hasText: "还在查，稍等" }).waitFor();
      await page.locator('.contact[data-contact-id="oY"]').click();
      await x.locator(".contact-preview", { hasText: "You: 还在查，稍等" }).waitFor();
    });
  },
);

consoleTest(
  "a reply sent with the network gone waits for it, and says so",
  { agent: AGENT },
  async (_t, { server, context, page }) => {
    await postFollowerMessage(server.base, "oNet", { MsgType: "text", Content: "在吗" });
    await page.locator('.contact[data-contact-id="oNet"]').click();
    await page.locator("#reply").pressSequentially("在的，您");
    // The network goes in the middle of typing; the agent types on and sends.
    await context.setOffline(true);
    await page.locator('#conn[data-state="offline"]').waitFor();
    await page.keyboard.type("请说");
    await page.keyboard.press("Enter");
    const reply = page.locator(".msg.out", { hasText: "在的，您请说" });
    // Not "Sending…" under a header that says Offline: nothing can go.
    await reply.locator(".status", { hasText: "Waiting for connection…" }).waitFor({
      timeout: 10_000,
    }).catch(async (error) => {
      throw new Error(`the reply says ${await reply.locator(".status").innerText()}`, {
        cause: error,
      });
    });
    await context.setOffline(false);
    await page.locator('#conn[data-state="connected"]').waitFor({ timeout: 30_000 });
    await page.locator('.msg.out[data-status="sent"]', { hasText: "在的，您请说" }).waitFor();
    const res = await fetch(`${server.base}${B}/history?userid=${AGENT}&contact_id=oNet`);
    const sent = (await res.json()).messages.filter((m: { direction: string }) =>
      m.direction === "out"
    );
    assert.equal(sent.length, 1, JSON.stringify(sent));
  },
);

browserTest(
  "a reply on its way when the network goes says it waits for the connection",
  async (_t, browser) => {
    const server = await startBridge();
    try {
      const { context, page } = await openPage(browser);
      // The socket's frames pass through here: the first reply is held, as a slow network
      // holds it, so it is still on its way when the network goes.
      let held = 0;
      await page.routeWebSocket(/\/msg\?/, (ws) => {
        const bridge = ws.connectToServer();
        ws.onMessage((frame) => {
          if (held === 0 && String(frame).includes("在的")) {
            held += 1;
            return;
          }
          bridge.send(frame);
        });
      });
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oNet", { MsgType: "text", Content: "在吗" });
      await page.locator('.contact[data-contact-id="oNet"]').click();
      await page.locator("#reply").fill("在的，请说");
      await page.keyboard.press("Enter");
      const reply = page.locator(".msg.out", { hasText: "在的，请说" });
      await reply.locator(".status", { hasText: "Sending…" }).waitFor();
      await context.setOffline(true);
      await page.locator('#conn[data-state="offline"]').waitFor();
      // Drawn before the network went, it said Sending… on under the header's Offline.
      await reply.locator(".status", { hasText: "Waiting for connection…" }).waitFor({
        timeout: 10_000,
      }).catch(async (error) => {
        throw new Error(`the reply says ${await reply.locator(".status").innerText()}`, {
          cause: error,
        });
      });
      await context.setOffline(false);
      await page.locator('.msg.out[data-status="sent"]', { hasText: "在的，请说" }).waitFor({
        timeout: 30_000,
      });
      const res = await fetch(`${server.base}${B}/history?userid=${AGENT}&contact_id=oNet`);
      const sent = (await res.json()).messages.filter((m: { direction: string }) =>
        m.direction === "out"
      );
      assert.equal(sent.length, 1, JSON.stringify(sent));
    } finally {
      await server.close();
    }
  },
);

consoleTest(
  "a search hit in a long message shows where it matched",
  { agent: AGENT },
  async (_t, { server, page }) => {
    // A follower's long paragraph; the order number comes near its end.
    const long = "我上周在你们店里买了一件外套，颜色和图片上的不一样，".repeat(30) +
      "订单号 TB20261202 麻烦查一下，谢谢。";
    await postFollowerMessage(server.base, "oPara", { MsgType: "text", Content: long });
    await page.locator('.contact[data-contact-id="oPara"]').click();
    await page.keyboard.press("Control+k");
    await page.locator("#search-input:focus").waitFor();
    await page.keyboard.type("tb20261202");
    await page.keyboard.press("Enter");
    const hit = page.locator("#search-panel .search-hit").first();
    await hit.waitFor();
    assert.equal(await hit.locator("mark").innerText(), "TB20261202");
    const shown = await hit.locator("span").first().innerText();
    assert.ok(shown.length < 200, `the hit shows ${shown.length} characters`);
    assert.match(shown, /^…/);
    await screenshot(page, "console-laptop-search-long-hit");
    await hit.click();
    await page.locator("#messages .msg.highlight", { hasText: "TB20261202" }).waitFor();
  },
);

/** The focused element: its id, or the conversation of the list entry it is. */
const focused = `(() => { const a = document.activeElement;
  return a?.dataset?.contactId ? "entry:" + a.dataset.contactId : a?.id ?? ""; })()`;

consoleTest(
  "Escape from the help sheet gives the focus back where it was",
  { agent: AGENT },
  async (t, { server, page }) => {
    for (const id of ["oHelp", "oOther"]) {
      await postFollowerMessage(server.base, id, { MsgType: "text", Content: `${id} 你好` });
      await page.locator(`.contact[data-contact-id="${id}"]`).waitFor();
    }
    await page.locator('.contact[data-contact-id="oHelp"]').click();
    await page.locator(".msg.in", { hasText: "oHelp 你好" }).waitFor();
    const sheet = page.locator("#help-sheet");

    await t.step("? from the messages, Escape: back in the messages", async () => {
      await page.locator("#messages").click();
      await page.keyboard.press("?");
      await sheet.waitFor();
      await page.keyboard.press("Escape");
      await sheet.waitFor({ state: "detached" });
      assert.equal(await page.evaluate(focused), "messages");
    });

    await t.step("? from a list entry, the list drawn anew meanwhile: back on it", async () => {
      await page.locator('.contact[data-contact-id="oOther"]').focus();
      await page.keyboard.press("?");
      await sheet.waitFor();
      // The follower writes while the sheet is open: every entry is rebuilt.
      await postFollowerMessage(server.base, "oOther", { MsgType: "text", Content: "还在吗" });
      await page.locator('.contact[data-contact-id="oOther"] .contact-preview', {
        hasText: "还在吗",
      }).waitFor();
      await page.keyboard.press("Escape");
      await sheet.waitFor({ state: "detached" });
      assert.equal(await page.evaluate(focused), "entry:oOther");
    });

    await t.step("opened with the ? button, closed: back on the button", async () => {
      await page.locator("#help-button").click();
      await sheet.waitFor();
      await page.keyboard.press("Escape");
      await sheet.waitFor({ state: "detached" });
      assert.equal(await page.evaluate(focused), "help-button");
    });
  },
);

consoleTest(
  "a search hit in a location's label, or after a row of flags, shows what was found",
  { agent: AGENT },
  async (t, { server, page }) => {
    await postFollowerMessage(server.base, "oMap", {
      MsgType: "location",
      Location_X: "31.2304",
      Location_Y: "121.4737",
      Scale: "15",
      Label: "上海市黄浦区人民大道 人民广场",
    });
    // The order number comes after 20 flags and two colons: 24 code units before it falls
    // between the halves of a flag.
    await postFollowerMessage(server.base, "oFlag", {
      MsgType: "text",
      Content: "🇨🇳".repeat(20) + "：：TB9",
    });
    await page.locator('.contact[data-contact-id="oFlag"]').waitFor();
    await page.locator('.contact[data-contact-id="oMap"]').click();
    const search = async (query: string) => {
      await page.keyboard.press("Control+k");
      await page.locator("#search-input:focus").waitFor();
      await page.locator("#search-input").fill(query);
      await page.keyboard.press("Enter");
      const hit = page.locator("#search-panel .search-hit").first();
      await hit.locator("mark").waitFor({ timeout: 10_000 }).catch(async (error) => {
        throw new Error(`the hit shows ${JSON.stringify(await hit.innerText())}`, {
          cause: error,
        });
      });
      return hit;
    };

    await t.step("the label the bridge searched, its words marked", async () => {
      const hit = await search("人民广场");
      assert.equal(await hit.locator("mark").innerText(), "人民广场");
      await page.keyboard.press("Escape");
    });

    await t.step("whole flags before the match", async () => {
      const hit = await search("tb9");
      const shown = await hit.locator("span").first().innerText();
      // Cut between its halves, the row read 🇳🇨 (New Caledonia) from there on.
      assert.match(shown, /^…(🇨🇳)+：：TB9$/u, shown);
      await page.keyboard.press("Escape");
    });
  },
);
