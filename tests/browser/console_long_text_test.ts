// Texts past where they go: a note over the bridge's 2,000 characters and a reply over WeChat's
// 2,048 bytes. The note the bridge refused was wiped from the box, the reply WeChat refused
// (45002) offered only a Retry that fails the same way; neither said a word while typing.

import assert from "node:assert/strict";
import { openConsole, postFollowerMessage } from "./browser.ts";
import { consoleTest, wechatConsoleTest } from "./console_session.ts";

const AGENT = "agentL";

consoleTest(
  "a note over the limit says so while typing; one the bridge refuses comes back to the box",
  { agent: AGENT, open: false },
  async (t, { server, page }) => {
    // A note of the page's own size the bridge refuses all the same: the page's check passed,
    // the frame is made long on the way, and the real bridge's refusal is what comes back.
    await page.routeWebSocket(/\/msg\?/, (ws) => {
      const bridge = ws.connectToServer();
      ws.onMessage((frame) => {
        const text = String(frame);
        // The network goes as the note is written: it never reaches the bridge.
        if (text.includes("DROP-ME")) {
          ws.close();
          bridge.close();
          return;
        }
        bridge.send(
          text.includes("REFUSE-ME") ? text.replace("REFUSE-ME", "x".repeat(2_100)) : frame,
        );
      });
    });
    await openConsole(page, server.base, AGENT);
    await postFollowerMessage(server.base, "oNote", { MsgType: "text", Content: "发票" });
    await page.locator('.contact[data-contact-id="oNote"]').click();
    await page.locator("#mode-note").click();
    const box = page.locator("#reply");
    const count = page.locator("#composer-count");

    await t.step("near the limit the count shows; past it Send keeps the text", async () => {
      assert.equal(await count.isHidden(), true);
      await box.fill("备".repeat(1_700));
      await count.filter({ hasText: "1,700 / 2,000 characters" }).waitFor();
      assert.equal(await count.getAttribute("data-over"), "false");
      await box.fill("备".repeat(2_500));
      await count.filter({ hasText: "2,500 / 2,000 characters" }).waitFor();
      assert.equal(await count.getAttribute("data-over"), "true");
      await box.press("Enter");
      await page.locator(".toast", { hasText: "A note holds up to 2,000 characters" }).waitFor();
      assert.equal((await box.inputValue()).length, 2_500);
      assert.equal(await page.locator("#messages .msg.note", { hasText: "备备备" }).count(), 0);
    });

    await t.step("a note the bridge refuses is back in the box, the reason shown", async () => {
      await box.fill("客户要发票 REFUSE-ME");
      await box.press("Enter");
      await page.locator(".toast", { hasText: "Cannot add a note" }).waitFor();
      await page.waitForFunction(
        `document.querySelector("#reply").value === "客户要发票 REFUSE-ME"`,
      );
      // Kept as the note draft too: a reload brings it back.
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator('.contact[data-contact-id="oNote"]').click();
      await page.locator("#mode-note").click();
      await page.waitForFunction(
        `document.querySelector("#reply").value === "客户要发票 REFUSE-ME"`,
      );
    });

    await t.step("a note whose socket dies before the bridge answers is back too", async () => {
      await box.fill("客户改了地址 DROP-ME");
      await box.press("Enter");
      await page.locator(".toast", { hasText: "The connection dropped as a note went" }).waitFor();
      await page.waitForFunction(
        `document.querySelector("#reply").value.startsWith("客户改了地址 DROP-ME")`,
      );
      await page.locator('#conn[data-state="connected"]').waitFor();
    });
  },
);

wechatConsoleTest(
  "a reply over WeChat's limit is counted while typing; after a 45002 Edit, not Retry",
  { agent: AGENT, appId: "wxlong" },
  async (t, { server, fake, page }) => {
    await postFollowerMessage(server.base, "oLong", { MsgType: "text", Content: "详细说说" });
    await page.locator('.contact[data-contact-id="oLong"]').click();
    const box = page.locator("#reply");
    const count = page.locator("#composer-count");
    const sends = () => fake.calls.filter((c) => c.path.endsWith("message/custom/send")).length;

    await t.step("bytes are counted as WeChat counts them; past 2,048 nothing goes", async () => {
      // 600 Chinese characters are 1,800 bytes of UTF-8: near WeChat's limit already.
      await box.fill("说".repeat(600));
      await count.filter({ hasText: "1,800 / 2,048 bytes" }).waitFor();
      await box.fill("说".repeat(700));
      await count.filter({ hasText: "2,100 / 2,048 bytes" }).waitFor();
      assert.equal(await count.getAttribute("data-over"), "true");
      await box.press("Enter");
      await page.locator(".toast", { hasText: "Too long for WeChat" }).waitFor();
      assert.equal((await box.inputValue()).length, 700);
      assert.equal(sends(), 0);
    });

    await t.step("refused as too long: Edit takes it back, no Retry to fail again", async () => {
      fake.failNext("/cgi-bin/message/custom/send", 45002, "content size out of limit", 1);
      const text = "说".repeat(500);
      await box.fill(text);
      await box.press("Enter");
      const failed = page.locator('.msg.out[data-status="failed"]');
      await failed.filter({ hasText: "45002" }).waitFor();
      assert.equal(await failed.locator(".retry-button").count(), 0);
      await box.fill("还有一句");
      await failed.locator(".edit-button").click();
      // The refused text back in the box, what was typed since kept under it.
      assert.equal(await box.inputValue(), `${text}\n还有一句`);
      await failed.waitFor({ state: "detached" });
      await box.fill("说".repeat(200));
      await box.press("Enter");
      await page.locator('.msg.out[data-status="sent"]', { hasText: "说说说" }).waitFor();
      assert.equal(sends(), 2);
    });
  },
);
