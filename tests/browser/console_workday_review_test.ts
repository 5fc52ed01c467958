// The working day's fixes (console_workday_test.ts) looked at again, for what they broke: the
// page under a dialog made inert took the focus from the reply box when a search hit opened
// its conversation (the box was still inert when it was focused).

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { browserTest, openConsole, openPage, postFollowerMessage } from "./browser.ts";

const AGENT = "agentA";

browserTest(
  "a search hit opens its conversation with the reply box focused",
  async (_t, browser) => {
    const server = await startBridge();
    try {
      const { page } = await openPage(browser);
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oHit", {
        MsgType: "text",
        Content: "发票抬头写公司",
      });
      await postFollowerMessage(server.base, "oHere", { MsgType: "text", Content: "在吗" });
      await page.locator('.contact[data-contact-id="oHere"]').click();
      await page.keyboard.press("Control+k");
      await page.keyboard.type("发票");
      await page.keyboard.press("Enter");
      await page.locator("#search-panel .search-hit").first().click();
      await page.locator("#search-panel").waitFor({ state: "detached" });
      await page.locator("#messages .msg.highlight", { hasText: "发票抬头" }).waitFor();
      const focused = await page.evaluate(
        "document.activeElement?.id || document.activeElement?.tagName",
      );
      assert.equal(focused, "reply");
      await page.keyboard.type("好的");
      assert.equal(await page.locator("#reply").inputValue(), "好的");
    } finally {
      await server.close();
    }
  },
);
