// Text as followers and agents really write it: a Chinese input method's Enter picks a candidate
// and must not send (some browsers mark that keydown, some only fire the composition events),
// Arabic or Hebrew reads right to left, one long unbroken line stays inside the screen, and a
// reply of several lines, growing the box, pushed the follower's last message out of view.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import { browserTest, openConsole, openPage, postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentA";

/** Fires a composition event on the reply box, as an input method does. */
const composition = (page: Page, type: "compositionstart" | "compositionend", data = "") =>
  page.locator("#reply").dispatchEvent(type, { data });

/** The direction the browser lays an element out in. */
const direction = (page: Page, selector: string) =>
  page.locator(selector).evaluate((node) =>
    (globalThis as unknown as { getComputedStyle(n: unknown): { direction: string } })
      .getComputedStyle(node).direction
  );

consoleTest(
  "Enter while an input method composes does not send",
  { agent: AGENT },
  async (t, { server, page }) => {
    await postFollowerMessage(server.base, "oIme", { MsgType: "text", Content: "你好" });
    await page.locator('.contact[data-contact-id="oIme"]').click();
    await page.locator(".msg.in", { hasText: "你好" }).waitFor();
    await page.locator("#reply").focus();

    await t.step("Enter picks the candidate: nothing is sent, the text stays", async () => {
      await composition(page, "compositionstart");
      await page.keyboard.insertText("您好");
      await page.keyboard.press("Enter");
      // The key is the input method's (a synthetic one also reaches the box as a newline).
      assert.equal((await page.locator("#reply").inputValue()).trimEnd(), "您好");
      assert.equal(await page.locator(".msg.out").count(), 0, "sent during a composition");
    });

    await t.step("once the composition ends, Enter sends", async () => {
      await composition(page, "compositionend", "您好");
      await page.locator("#reply").fill("您好，请问有什么可以帮您");
      await page.keyboard.press("Enter");
      await page.locator('.msg.out[data-status="sent"]', { hasText: "您好，请问有什么可以帮您" })
        .waitFor();
      assert.equal(await page.locator("#reply").inputValue(), "");
    });
  },
);

browserTest(
  "right-to-left text reads right to left; a long line stays on screen",
  async (t, browser) => {
    const server = await startBridge();
    try {
      const { page } = await openPage(browser, "phone");
      await openConsole(page, server.base, AGENT);
      const arabic = "مرحبا، أريد استرداد المبلغ من فضلك؟";
      await postFollowerMessage(server.base, "oRtl", { MsgType: "text", Content: "订单 12345" });
      await postFollowerMessage(server.base, "oRtl", { MsgType: "text", Content: arabic });
      const unbroken = `https://example.com/track?id=${"9".repeat(400)}`;
      await postFollowerMessage(server.base, "oLong", { MsgType: "text", Content: unbroken });

      await t.step("an Arabic message and its preview are right to left, others not", async () => {
        await page.locator(".contact-preview", { hasText: arabic }).waitFor();
        assert.equal(
          await direction(page, '.contact[data-contact-id="oRtl"] .contact-preview'),
          "rtl",
        );
        await page.locator('.contact[data-contact-id="oRtl"]').click();
        await page.locator(".msg.in", { hasText: arabic }).waitFor();
        assert.equal(await direction(page, `.msg.in:has-text("${arabic}") .text`), "rtl");
        assert.equal(await direction(page, '.msg.in:has-text("订单 12345") .text'), "ltr");
        await page.locator("#reply").fill("شكرا لك");
        assert.equal(await direction(page, "#reply"), "rtl", "the reply box follows what is typed");
        await page.locator("#reply").fill("");
      });

      await t.step("a 430-character unbroken line wraps inside a phone's screen", async () => {
        await page.locator("#back-button").click();
        await page.locator('.contact[data-contact-id="oLong"]').click();
        const bubble = page.locator(".msg.in .text", { hasText: "example.com" });
        await bubble.waitFor();
        // The pane slides in on a phone and the thread is drawn anew as its history comes: measured
        // once the bubble is in place (CI's load once measured it between two draws: no box).
        await page.waitForFunction(
          `(() => {
            const e = [...document.querySelectorAll(".msg.in .text")]
              .find((n) => n.textContent.includes("example.com"));
            const r = e?.getBoundingClientRect();
            return r && r.x >= 0 && r.right <= innerWidth &&
              document.documentElement.scrollWidth === innerWidth;
          })()`,
          undefined,
          { timeout: 5_000 },
        ).catch(() => {/* the assertions below say what is wrong */});
        const box = await bubble.boundingBox();
        const width = page.viewportSize()?.width ?? 0;
        assert.ok(box && box.x >= 0 && box.x + box.width <= width, JSON.stringify(box));
        assert.equal(
          await page.evaluate("document.documentElement.scrollWidth"),
          width,
          "the page scrolls sideways",
        );
      });
    } finally {
      await server.close();
    }
  },
);

consoleTest(
  "a long reply being typed keeps the last message in view",
  { agent: AGENT },
  async (_t, { server, page }) => {
    for (let i = 1; i <= 30; i++) {
      await postFollowerMessage(server.base, "oMany", {
        MsgType: "text",
        Content: i === 30 ? "last question" : `question ${i}`,
      });
    }
    await page.locator('.contact[data-contact-id="oMany"]').click();
    const last = page.locator(".msg.in", { hasText: "last question" });
    await last.waitFor();
    const reply = [
      "您好，关于您的问题：",
      "第一，退款已经提交；",
      "第二，发票会寄出；",
      "第三，快递单号稍后发您；",
      "第四，还有别的问题吗？",
      "谢谢",
    ];
    await page.locator("#reply").focus();
    for (const line of reply) {
      await page.keyboard.type(line);
      await page.keyboard.press("Shift+Enter");
    }
    const pane = await page.locator("#messages").boundingBox();
    const box = await last.boundingBox();
    assert.ok(pane && box, "no boxes");
    assert.ok(
      box.y + box.height <= pane.y + pane.height + 1,
      `the last message ends at ${box.y + box.height}, below the pane's ${pane.y + pane.height}`,
    );
  },
);
