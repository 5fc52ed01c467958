// A working day in the console, in what went wrong for an agent through it: a conversation left
// open overnight kept yesterday's "Today" over its messages, so the next morning's messages came
// under a second "Today"; Alt+↓ from the reply box left the focus on the list, where the next
// reply's "k" opened the conversation before and the rest went into its draft; the conversation
// was out of the tab order, so the keyboard could not scroll back through it; and the wheel
// stopped after one page of history, the view thrown to its top with nothing left to scroll;
// a follower's burst in one second, split by a page of history, showed its older half last;
// the older pages counted as new messages on the "New messages ↓" pill; and with the transfer
// form open, what the follower wrote came in below the view; and at a search hit far back, one
// new message counted as two; Tab went on out of the search dialog to the controls under it;
// a reload or a closed tab while a picture uploaded lost it without a word; and under Unread,
// the conversation opened left the list, so Alt+↓ went back to the top, not to the next one;
// in Chinese the transfer box, and the Transfer and End buttons' names, were still English; and
// on a phone, in a conversation, nothing said that other followers were writing; and a reply
// WeChat never answered, which may have arrived, read "Not delivered", "refused", Retry (and
// after a reload, from history, "Not delivered" again).

import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import {
  B,
  browserTest,
  followerXml,
  makePng,
  openConsole,
  openPage,
  postFollowerMessage,
  screenshot,
} from "./browser.ts";
import { consoleTest, wechatConsoleTest } from "./console_session.ts";

const AGENT = "agentA";
const DAY_MS = 24 * 3600_000;

/** The day separators of the open conversation, top to bottom. */
const separators = (page: Page) => page.locator("#messages .day").allInnerTexts();

/** Waits until the open conversation's day separators read `want`; failing, says what they read. */
async function separatorsRead(page: Page, want: string[]): Promise<void> {
  const expr = `JSON.stringify([...document.querySelectorAll("#messages .day")]
    .map((n) => n.textContent)) === ${JSON.stringify(JSON.stringify(want))}`;
  await page.waitForFunction(expr).catch(async (error) => {
    throw new Error(`separators ${JSON.stringify(await separators(page))}`, { cause: error });
  });
}

browserTest(
  "a conversation left open overnight says Yesterday, not Today twice",
  async (t, browser) => {
    let offsetMs = 0;
    const server = await startBridge({ now: () => Date.now() + offsetMs });
    try {
      const { page } = await openPage(browser);
      // The page's clock jumps a day when told; the bridge's moves with it.
      await page.clock.install();
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oNight", {
        MsgType: "text",
        Content: "晚上好，在吗",
      });
      await page.locator('.contact[data-contact-id="oNight"]').click();
      await page.locator(".msg.in", { hasText: "晚上好，在吗" }).waitFor();
      assert.deepEqual(await separators(page), ["Today"]);

      await t.step("the next morning, before anyone writes", async () => {
        offsetMs = DAY_MS;
        await page.clock.fastForward(DAY_MS);
        await separatorsRead(page, ["Yesterday"]);
      });

      await t.step("the follower writes again", async () => {
        await postFollowerMessage(server.base, "oNight", {
          MsgType: "text",
          Content: "早上好",
          CreateTime: Math.floor((Date.now() + offsetMs) / 1000),
        });
        await page.locator(".msg.in", { hasText: "早上好" }).waitFor();
        await separatorsRead(page, ["Yesterday", "Today"]);
        await screenshot(page, "console-laptop-next-morning");
      });
    } finally {
      await server.close();
    }
  },
);

consoleTest(
  "Alt+↓ from the reply box: the next reply is typed in the next conversation",
  { agent: AGENT },
  async (_t, { server, page }) => {
    for (const id of ["oFirst", "oSecond", "oThird"]) {
      await postFollowerMessage(server.base, id, { MsgType: "text", Content: `${id} 你好` });
      await page.locator(`.contact[data-contact-id="${id}"]`).waitFor();
    }
    const order = await page.evaluate(
      `[...document.querySelectorAll("#contact-list .contact")].map((n) => n.dataset.contactId)`,
    ) as string[];
    const [first, second] = order;
    await page.locator(`.contact[data-contact-id="${first}"]`).click();
    await page.locator("#reply").pressSequentially("稍等");
    await page.keyboard.press("Alt+ArrowDown");
    await page.locator(".msg.in", { hasText: `${second} 你好` }).waitFor();
    // An English reply: its k went to the list, which opened the conversation before.
    await page.keyboard.type("ok, checking");
    assert.equal(await page.locator("#reply").inputValue(), "ok, checking");
    assert.equal(await page.locator("#conv-name").innerText(), second);
    await page.keyboard.press("Alt+ArrowUp");
    await page.locator(".msg.in", { hasText: `${first} 你好` }).waitFor();
    assert.equal(await page.locator("#reply").inputValue(), "稍等");
    assert.equal(await page.evaluate("document.activeElement?.id"), "reply");
  },
);

consoleTest(
  "the keyboard reaches the conversation and scrolls back through it",
  { agent: AGENT },
  async (_t, { server, page }) => {
    for (let i = 0; i < 60; i++) {
      const res = await fetch(`${server.base}${B}/send_xml`, {
        method: "POST",
        headers: { "content-type": "text/xml" },
        body: followerXml("oLong", { MsgType: "text", Content: `第 ${i} 条` }),
      });
      assert.equal(res.status, 200, await res.text());
    }
    await page.locator('.contact[data-contact-id="oLong"]').click();
    await page.locator(".msg.in", { hasText: "第 59 条" }).waitFor();
    assert.ok(
      await page.locator("#messages").evaluate((n) => n.scrollTop > 0),
      "the conversation does not scroll: the test tests nothing",
    );
    // Back from the reply box, past the composer's tools, as a keyboard goes.
    await page.locator("#reply").focus();
    const passed: string[] = [];
    for (let i = 0; i < 10 && passed.at(-1) !== "messages"; i++) {
      await page.keyboard.press("Shift+Tab");
      passed.push(
        String(
          await page.evaluate("document.activeElement?.id || document.activeElement?.className"),
        ),
      );
    }
    assert.equal(passed.at(-1), "messages", `Shift+Tab went ${passed.join(" < ")}`);
    // Shift+Tab passed the "Load earlier" button at its top: End and PageUp from there.
    const bottomGap = `(() => { const b = document.querySelector("#messages");
      return b.scrollHeight - b.scrollTop - b.clientHeight; })()`;
    await page.keyboard.press("End");
    await page.waitForFunction(`${bottomGap} < 40`);
    await page.keyboard.press("PageUp");
    await page.waitForFunction(`${bottomGap} > 200`);
    await screenshot(page, "console-laptop-log-focused");
  },
);

/** Posts `count` texts from `follower` ("第 i 条"), the i-th at `timeOf(i)` (Unix seconds). */
async function postMany(
  base: string,
  follower: string,
  count: number,
  timeOf: (i: number) => number,
): Promise<void> {
  for (let i = 0; i < count; i++) {
    const res = await fetch(`${base}${B}/send_xml`, {
      method: "POST",
      headers: { "content-type": "text/xml" },
      body: followerXml(follower, {
        MsgType: "text",
        Content: `第 ${i} 条`,
        CreateTime: timeOf(i),
      }),
    });
    assert.equal(res.status, 200, await res.text());
  }
}

/** The follower's texts in the open conversation, top to bottom. */
const shownTexts = (page: Page) => page.locator("#messages .msg.in .text").allInnerTexts();

/** Resolves once the page has drawn a frame and no page of history is on its way. */
const settled = (page: Page) =>
  page.waitForFunction(`![...document.querySelectorAll("#messages .history-edge")]
    .some((n) => n.textContent === "Loading…")`);

consoleTest(
  "the wheel scrolls back through a long history to its first message",
  { agent: AGENT },
  async (_t, { server, page }) => {
    const now = Math.floor(Date.now() / 1000);
    await postMany(server.base, "oLong", 300, (i) => now - 300 + i);
    // After a reload the conversation comes from its history, a page at a time.
    await page.reload();
    await page.locator('#conn[data-state="connected"]').waitFor();
    await page.locator('.contact[data-contact-id="oLong"]').click();
    await page.locator(".msg.in", { hasText: "第 299 条" }).waitFor();
    const seen = new Set<string>();
    const start = page.locator("#messages .history-edge", {
      hasText: "Start of the conversation",
    });
    await page.locator("#messages").hover();
    for (let i = 0; i < 200 && !(await start.count()); i++) {
      for (const text of await shownTexts(page)) seen.add(text);
      await page.mouse.wheel(0, -1500);
      await settled(page);
    }
    for (const text of await shownTexts(page)) seen.add(text);
    // It stopped after a page: the view jumped to the top of what came in, where the wheel had
    // nothing left to scroll, so no more was asked for.
    assert.ok(await start.count(), `stuck at ${(await shownTexts(page))[0]}`);
    const missed = Array.from({ length: 300 }, (_, i) => `第 ${i} 条`).filter((t) => !seen.has(t));
    assert.deepEqual(missed, []);
  },
);

consoleTest(
  "a burst in one second, split by a page of history, shows in order",
  { agent: AGENT },
  async (t, { server, page }) => {
    const now = Math.floor(Date.now() / 1000);
    // A follower pasting a list: 120 messages, one second, more than two pages of history.
    await postMany(server.base, "oBurst", 120, () => now);
    await page.reload();
    await page.locator('#conn[data-state="connected"]').waitFor();
    await page.locator('.contact[data-contact-id="oBurst"]').click();
    await page.locator(".msg.in", { hasText: "第 119 条" }).waitFor();
    const earlier = page.locator("#messages .history-edge button", { hasText: "Load earlier" });
    const start = page.locator("#messages .history-edge", {
      hasText: "Start of the conversation",
    });
    for (let i = 0; i < 20 && !(await start.count()); i++) {
      // The page loads a page itself once its edge is in view: the button can go between
      // finding it and the click (a loaded machine), and after the first message it is gone.
      await earlier.click({ timeout: 2_000 }).catch(() => {});
      await settled(page);
    }
    await start.waitFor();

    await t.step("every message in the order sent", async () => {
      assert.deepEqual(
        await shownTexts(page),
        Array.from({ length: 120 }, (_, i) => `第 ${i} 条`),
      );
    });

    await t.step("one new message is one, not the older pages too", async () => {
      await postFollowerMessage(server.base, "oBurst", { MsgType: "text", Content: "还在吗" });
      // Below the window being read: announced, not drawn.
      await page.locator("#new-pill").waitFor();
      assert.equal(await page.locator("#new-pill").innerText(), "New messages ↓");
    });
  },
);

consoleTest(
  "with the transfer form open, what the follower writes shows",
  { agent: AGENT },
  async (_t, { server, page }) => {
    const now = Math.floor(Date.now() / 1000);
    await postMany(server.base, "oHand", 30, () => now);
    await page.locator('.contact[data-contact-id="oHand"]').click();
    await page.locator(".msg.in", { hasText: "第 29 条" }).waitFor();
    await page.locator("#reply").focus();
    await page.keyboard.press("Alt+t");
    await page.locator("#transfer-to").waitFor();
    // The agent picks a colleague; the follower adds what the colleague should know.
    await postFollowerMessage(server.base, "oHand", { MsgType: "text", Content: "订单号 8841" });
    await page.locator(".msg.in", { hasText: "订单号 8841" }).waitFor();
    const gap = `(() => { const b = document.querySelector("#messages");
    return b.scrollHeight - b.scrollTop - b.clientHeight; })()`;
    await page.waitForFunction(`${gap} < 40`, undefined, { timeout: 3000 }).catch(async (e) => {
      throw new Error(`${await page.evaluate(gap)} px below the view`, { cause: e });
    });
    assert.equal(await page.locator("#new-pill").isVisible(), false);
    await screenshot(page, "console-laptop-transfer-form-new-message");
  },
);

consoleTest(
  "at a search hit far back, one new message is one",
  { agent: AGENT },
  async (_t, { server, page }) => {
    const now = Math.floor(Date.now() / 1000);
    await postMany(server.base, "oFar", 200, (i) => now - 200 + i);
    await postFollowerMessage(server.base, "oNear", { MsgType: "text", Content: "在吗" });
    await page.reload();
    await page.locator('#conn[data-state="connected"]').waitFor();
    await page.locator('.contact[data-contact-id="oNear"]').click();
    await page.keyboard.press("Control+k");
    // Typed once the box has the focus: keys before that went to the page under the dialog.
    await page.locator("#search-input:focus").waitFor();
    await page.keyboard.type("第 5 条");
    await page.keyboard.press("Enter");
    await page.locator("#dialog-mount button", { hasText: "第 5 条" }).first().click();
    await page.locator("#messages .msg.highlight", { hasText: "第 5 条" }).waitFor();
    await settled(page);
    await postFollowerMessage(server.base, "oFar", { MsgType: "text", Content: "查到了吗" });
    await page.locator("#new-pill").waitFor();
    assert.equal(await page.locator("#new-pill").innerText(), "New messages ↓");
    await page.locator("#new-pill").click();
    await page.locator(".msg.in", { hasText: "查到了吗" }).waitFor();
  },
);

consoleTest("Tab stays in the search dialog", { agent: AGENT }, async (_t, { server, page }) => {
  await postFollowerMessage(server.base, "oFind", { MsgType: "text", Content: "发票抬头写公司" });
  await page.locator('.contact[data-contact-id="oFind"]').click();
  await page.keyboard.press("Control+k");
  // Typed once the box has the focus: keys before that went to the page under the dialog.
  await page.locator("#search-input:focus").waitFor();
  await page.keyboard.type("发票");
  await page.keyboard.press("Enter");
  await page.locator("#search-panel .search-hit").waitFor();
  const outside: string[] = [];
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press("Tab");
    const where = await page.evaluate(`(() => {
      const a = document.activeElement;
      if (!a || a === document.body || a.closest("#search-panel")) return "";
      return a.id || a.className || a.tagName;
    })()`);
    if (where) outside.push(String(where));
  }
  assert.deepEqual(outside, [], "Tab reached what the dialog covers");
  await page.keyboard.press("Escape");
  await page.locator("#search-panel").waitFor({ state: "detached" });
  await page.locator("#reply").pressSequentially("好的");
  assert.equal(await page.locator("#reply").inputValue(), "好的");
});

wechatConsoleTest(
  "leaving while a picture uploads asks first",
  { agent: AGENT, appId: "wxday" },
  async (_t, { server, page }) => {
    await postFollowerMessage(server.base, "oPic", { MsgType: "text", Content: "发张图给我" });
    // A click: Chrome asks before leaving only a page the agent has used.
    await page.locator('.contact[data-contact-id="oPic"]').click();
    await page.locator(".msg.in", { hasText: "发张图给我" }).waitFor();
    // The upload is held: a slow network, the picture on its way.
    await page.route(`**${B}/upload?*`, () => {});
    await page.locator("#attach-input").setInputFiles({
      name: "size-chart.png",
      mimeType: "image/png",
      buffer: Buffer.from(await makePng(200, 120)),
    });
    // Picked, it waits in the composer: Send sends it.
    await page.locator("#send-button").click();
    await page.locator('.msg.out[data-status="uploading"]').waitFor();
    const asked = new Promise<string>((resolve) =>
      page.on("dialog", (dialog) => {
        resolve(dialog.type());
        dialog.dismiss();
      })
    );
    // Not asked, the page just closes.
    const closed = new Promise<string>((resolve) => page.once("close", () => resolve("closed")));
    await page.close({ runBeforeUnload: true });
    assert.equal(await Promise.race([asked, closed]), "beforeunload");
  },
);

consoleTest(
  "down the Unread filter with Alt+↓, one after the other",
  { agent: AGENT },
  async (_t, { server, page }) => {
    for (let i = 0; i < 5; i++) {
      await postFollowerMessage(server.base, `oU${i}`, { MsgType: "text", Content: `未读 ${i}` });
      await page.locator(`.contact[data-contact-id="oU${i}"]`).waitFor();
    }
    const listed = () =>
      page.evaluate(`[...document.querySelectorAll("#contact-list .contact")]
      .map((n) => n.dataset.contactId)`) as Promise<string[]>;
    await page.locator("#triage-mount button", { hasText: "Unread" }).click();
    assert.deepEqual(await listed(), ["oU4", "oU3", "oU2", "oU1", "oU0"]);
    // The agent starts in the middle of the queue, and works down it from the reply box.
    await page.locator('.contact[data-contact-id="oU3"]').click();
    await page.locator(".msg.in", { hasText: "未读 3" }).waitFor();
    await page.locator('.contact[data-contact-id="oU3"].active').waitFor();
    for (const next of ["oU2", "oU1"]) {
      await page.keyboard.press("Alt+ArrowDown");
      await page.locator(".msg.in", { hasText: `未读 ${next.slice(2)}` }).waitFor({ timeout: 3000 })
        .catch(async (error) => {
          throw new Error(`Alt+↓ opened ${await page.locator("#conv-name").innerText()}`, {
            cause: error,
          });
        });
    }
    // Read ones leave the filter once left; the one open stays.
    await page.waitForFunction(
      `[...document.querySelectorAll("#contact-list .contact")].map((n) => n.dataset.contactId)
      .join() === "oU4,oU1,oU0"`,
    );
  },
);

browserTest(
  "in Chinese, the transfer box and the head's buttons say so in Chinese",
  async (_t, browser) => {
    const server = await startBridge();
    try {
      const { context, page } = await openPage(browser);
      await context.addInitScript(`localStorage.setItem("wxbridge.lang", "zh-CN")`);
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oZh", { MsgType: "text", Content: "转人工" });
      await page.locator('.contact[data-contact-id="oZh"]').click();
      // On a phone these buttons are icons: their names are all a screen reader has.
      await page.getByRole("button", { name: "转接给其他客服" }).click();
      assert.equal(await page.locator("#transfer-button").getAttribute("title"), "转接给其他客服");
      assert.equal(
        await page.locator("#transfer-to").getAttribute("placeholder"),
        "客服 ID，例如 agent2",
      );
      assert.equal(await page.locator("#close-button").getAttribute("aria-label"), "结束会话");
      assert.equal(await page.locator("#close-button").getAttribute("title"), "结束会话");
      await screenshot(page, "console-laptop-zh-transfer");
    } finally {
      await server.close();
    }
  },
);

browserTest("on a phone, the way back says how many wait", async (_t, browser) => {
  const server = await startBridge();
  try {
    const { page } = await openPage(browser, "phone");
    await openConsole(page, server.base, AGENT);
    await postFollowerMessage(server.base, "oHere", { MsgType: "text", Content: "我先问" });
    await page.locator('.contact[data-contact-id="oHere"]').tap();
    await page.locator(".msg.in", { hasText: "我先问" }).waitFor();
    const back = page.locator("#back-button");
    await back.waitFor();
    // The system's notice that oHere is ours was read with it.
    assert.equal(await page.locator("#back-count").isVisible(), false);
    await postFollowerMessage(server.base, "oElse", { MsgType: "text", Content: "我也有问题" });
    await postFollowerMessage(server.base, "oElse", { MsgType: "text", Content: "在吗" });
    // Two messages; the system's notice that oElse is ours (unread in its list) is oElse's
    // news too, counted once with them.
    await page.locator("#back-count", { hasText: "2" }).waitFor();
    assert.equal(await back.getAttribute("aria-label"), "Back to conversations, 2 waiting for you");
    await screenshot(page, "console-phone-back-count");
    // What this conversation brings is read here: it is not counted.
    await postFollowerMessage(server.base, "oHere", { MsgType: "text", Content: "还有" });
    await page.locator(".msg.in", { hasText: "还有" }).waitFor();
    assert.equal(await page.locator("#back-count").innerText(), "2");
  } finally {
    await server.close();
  }
});

wechatConsoleTest("a reply WeChat never answered says it may have arrived", {
  agent: AGENT,
  appId: "wxday",
}, async (t, { server, fake, page }) => {
  await postFollowerMessage(server.base, "oLost", { MsgType: "text", Content: "到账了吗" });
  await page.locator('.contact[data-contact-id="oLost"]').click();
  // WeChat's gateway answers 502 to the send (not sent again): the bridge cannot know.
  fake.failHttpNext("/cgi-bin/message/custom/send", 502);
  await page.locator("#reply").fill("已经到账了，请查收");
  await page.keyboard.press("Enter");
  const failed = page.locator('.msg.out[data-status="failed"]', { hasText: "已经到账了" });
  await failed.waitFor({ timeout: 60_000 });
  assert.equal(await failed.locator(".status.failed").innerText(), "Not confirmed");
  assert.match(await failed.locator(".failure").innerText(), /may have it/);
  assert.doesNotMatch(await failed.innerText(), /refused|Not delivered/);
  // The count agrees: WeChat may have taken it, so it is one of the 5.
  assert.equal(await page.locator("#conv-quota").innerText(), "4 of 5 replies left");
  await screenshot(page, "console-laptop-reply-unconfirmed");

  await t.step("after a reload, from history, it still may have arrived", async () => {
    await page.reload();
    await page.locator('#conn[data-state="connected"]').waitFor();
    await page.locator('.contact[data-contact-id="oLost"]').click();
    const again = page.locator('.msg.out[data-status="failed"]', { hasText: "已经到账了" });
    await again.waitFor();
    assert.equal(await again.locator(".status.failed").innerText(), "Not confirmed");
    assert.match(await again.locator(".failure").innerText(), /may have it/);
    assert.doesNotMatch(await again.innerText(), /refused|Not delivered/);
  });
});
