// A follower's menu taps, scans and messages of a type the console cannot show read in the
// console's language, in the thread and in the list (live, and as GET contacts gives it after a
// reload); the sentences: static/console/event_text.js, tests/console/event_text_test.ts.

import assert from "node:assert/strict";
import { openConsole, postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentlang";
const CJK = /[\u3400-\u9fff]/;

consoleTest(
  "menu taps, scans and unknown types in English: thread, list, after a reload",
  { agent: AGENT },
  async (t, { server, page }) => {
    const row = (id: string) => page.locator(`.contact[data-contact-id="${id}"]`);
    const preview = (id: string) => row(id).locator(".contact-preview");
    await postFollowerMessage(server.base, "oTAP", {
      MsgType: "event",
      Event: "CLICK",
      EventKey: "MENU_ORDERS",
    });
    await postFollowerMessage(server.base, "oODD", { MsgType: "miniprogrampage", Title: "x" });

    await t.step("live: the list and the thread", async () => {
      await preview("oTAP").filter({ hasText: "oTAP tapped the menu (MENU_ORDERS)" }).waitFor();
      await preview("oODD").filter({ hasText: "cannot show (miniprogrampage)" }).waitFor();
      await row("oTAP").click();
      await page.locator("#messages .note-text", { hasText: "tapped the menu (MENU_ORDERS)" })
        .waitFor();
      await postFollowerMessage(server.base, "oTAP", {
        MsgType: "event",
        Event: "SCAN",
        EventKey: "123",
      });
      await page.locator("#messages .note-text", { hasText: "scanned a QR code" }).waitFor();
      const notes = await page.locator("#messages .note-text").allInnerTexts();
      assert.equal(notes.filter((n) => CJK.test(n)).length, 0, notes.join("\n"));
    });

    await t.step("after a reload: GET contacts' previews, in English", async () => {
      await openConsole(page, server.base, AGENT);
      await preview("oTAP").filter({
        hasText: "oTAP scanned a QR code with parameters (scene 123)",
      })
        .waitFor();
      const text = await preview("oODD").innerText();
      assert.match(text, /oODD sent a message of a type the console cannot show/);
      assert.doesNotMatch(await page.locator("#contact-list").innerText(), CJK);
    });
  },
);
