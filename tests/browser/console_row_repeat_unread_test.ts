// A reviewer's attacks on the list rows kept while unchanged (row_cache.js): a reused row must
// never show what is no longer true.

import assert from "node:assert/strict";
import { contactsOf, postFollowerMessage, waitUntil } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentA";

consoleTest(
  "scrolled up in the open conversation, the same words twice: its row counts two, as the title",
  { agent: AGENT },
  async (_t, { server, page }) => {
    for (let i = 0; i < 40; i++) {
      await postFollowerMessage(server.base, "oBack", { MsgType: "text", Content: `line ${i}` });
    }
    await page.locator('.contact[data-contact-id="oBack"]').click();
    await page.locator(".msg.in", { hasText: "line 39" }).waitFor();
    const bridgeUnread = async () =>
      Number((await contactsOf(server.base, AGENT)).find((c) => c.contact_id === "oBack")?.unread);
    await waitUntil(async () => await bridgeUnread() === 0, () => "oBack not read");
    await page.locator("#messages").hover();
    await page.mouse.wheel(0, -20_000);
    await page.waitForFunction(
      `(() => { const b = document.querySelector("#messages");
        return b.scrollHeight - b.scrollTop - b.clientHeight > 400; })()`,
    );
    // "ok", "ok" in the same minute: the row's preview and time are the same after each.
    await postFollowerMessage(server.base, "oBack", { MsgType: "text", Content: "ok" });
    await page.locator('.contact[data-contact-id="oBack"] .unread', { hasText: "1" }).waitFor();
    await postFollowerMessage(server.base, "oBack", { MsgType: "text", Content: "ok" });
    await waitUntil(async () => await bridgeUnread() === 2, () => "the bridge did not count 2");
    await page.waitForFunction(`document.title.startsWith("(2) ")`);
    const rowCount = () =>
      page.evaluate(
        `document.querySelector('#contact-list .contact[data-contact-id="oBack"] .unread')` +
          `?.textContent ?? "none"`,
      );
    let shown: string | null = null;
    await waitUntil(
      async () => (shown = String(await rowCount())) === "2",
      () => `the title says 2 unread, oBack's row says ${shown}`,
    );
    assert.equal(shown, "2");
  },
);
