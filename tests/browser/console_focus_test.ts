// What an agent has in hand is not taken away by a render: the console re-renders its lists and
// dialogs on every message that comes in, and a keyboard user's focus in the conversation list
// fell to the page body each time, and what was typed in the quick-reply and search dialogs was
// put back to what the last render had (a quick reply saved also cleared the next one, typed while
// it was on its way).

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentA";

/** The `data-contact-id` of the focused element, or what has the focus instead. */
const focusedContact = (page: Page) =>
  page.evaluate(`(() => {
    const at = document.activeElement;
    return at?.dataset?.contactId ?? "not a conversation: " + (at?.id || at?.tagName);
  })()`) as Promise<string>;

consoleTest(
  "focus in the conversation list survives messages coming in",
  { agent: AGENT },
  async (t, { server, page }) => {
    for (const id of ["oAnn", "oBen"]) {
      await postFollowerMessage(server.base, id, { MsgType: "text", Content: `hello from ${id}` });
      await page.locator(`.contact[data-contact-id="${id}"]`).waitFor();
    }

    await t.step("a conversation focused in the list keeps it when another writes", async () => {
      await page.locator('.contact[data-contact-id="oAnn"]').focus();
      await postFollowerMessage(server.base, "oBen", { MsgType: "text", Content: "still there?" });
      await page.locator(".contact-preview", { hasText: "still there?" }).waitFor();
      assert.equal(await focusedContact(page), "oAnn");
      await page.keyboard.press("Enter");
      await page.locator("#conv-name", { hasText: "oAnn" }).waitFor();
    });

    await t.step("j moves to the next one, and a new follower does not take it away", async () => {
      await page.locator("#messages").click();
      await page.keyboard.press("j");
      const moved = await focusedContact(page);
      assert.ok(["oAnn", "oBen"].includes(moved), moved);
      await postFollowerMessage(server.base, "oCat", { MsgType: "text", Content: "new here" });
      await page.locator('.contact[data-contact-id="oCat"]').waitFor();
      assert.equal(await focusedContact(page), moved);
    });
  },
);

consoleTest(
  "what is typed in the quick-reply and search dialogs stays while messages come in",
  { agent: AGENT },
  async (t, { server, page }) => {
    await postFollowerMessage(server.base, "oAnn", { MsgType: "text", Content: "first" });
    await page.locator('.contact[data-contact-id="oAnn"]').click();
    await page.locator(".msg.in", { hasText: "first" }).waitFor();
    let n = 0;
    const messageArrives = async () => {
      const text = `message ${++n}`;
      await postFollowerMessage(server.base, "oAnn", { MsgType: "text", Content: text });
      await page.locator(".msg.in", { hasText: text }).waitFor();
    };

    await t.step("a quick reply being written is kept, then saved whole", async () => {
      await page.locator("#quick-button").click();
      const dialog = page.locator("#quick-manager");
      await dialog.locator(".quick-list li.muted").waitFor();
      await dialog.locator('input[name="title"]').fill("退款");
      await dialog.locator('textarea[name="text"]').fill("{name}您好，退款三个工作日内到账");
      await messageArrives();
      assert.equal(await dialog.locator('input[name="title"]').inputValue(), "退款");
      assert.equal(
        await dialog.locator('textarea[name="text"]').inputValue(),
        "{name}您好，退款三个工作日内到账",
      );
      await dialog.locator("#quick-save").click();
      await dialog.locator(".quick-list li", { hasText: "退款三个工作日" }).waitFor();
      assert.equal(await dialog.locator('input[name="title"]').inputValue(), "", "cleared");
      assert.equal(await dialog.locator('textarea[name="text"]').inputValue(), "");
    });

    await t.step("the next one, typed while the last one saves, is kept", async () => {
      const dialog = page.locator("#quick-manager");
      let release = () => {};
      const saveHeld = new Promise<void>((resolve) => release = resolve);
      await page.route(/\/quick_replies\?/, async (route) => {
        if (route.request().method() === "POST") await saveHeld;
        await route.continue();
      });
      await dialog.locator('input[name="title"]').fill("到账");
      await dialog.locator('textarea[name="text"]').fill("已经到账了吗？");
      await dialog.locator("#quick-save").click();
      await dialog.locator('input[name="title"]').fill("发货");
      await dialog.locator('textarea[name="text"]').fill("今天发货");
      release();
      await dialog.locator(".quick-list li", { hasText: "已经到账了吗" }).waitFor();
      assert.equal(await dialog.locator('input[name="title"]').inputValue(), "发货");
      assert.equal(await dialog.locator('textarea[name="text"]').inputValue(), "今天发货");
      await page.unroute(/\/quick_replies\?/);
      await dialog.locator("button", { hasText: "Close" }).click();
    });

    await t.step("a search being typed is kept", async () => {
      await page.locator("#messages").click();
      await page.keyboard.press("Control+k");
      await page.locator("#search-input").fill("invoice");
      await messageArrives();
      assert.equal(await page.locator("#search-input").inputValue(), "invoice");
      await page.locator("#search-input").press("Enter");
      await page.locator("#search-none").waitFor();
      await page.locator("#search-input").fill("message");
      await messageArrives();
      assert.equal(await page.locator("#search-input").inputValue(), "message");
    });
  },
);
