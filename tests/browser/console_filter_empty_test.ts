// A filter that shows nothing said "No conversation matches your search." with the search box
// empty (the Waiting filter while followers waited in the queue above): it says which it is now.

import assert from "node:assert/strict";
import { postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

consoleTest(
  "an empty filter and an empty search say which emptied the list",
  { agent: "filterempty" },
  async (t, { server, page }) => {
    await postFollowerMessage(server.base, "oFilterEmpty", { MsgType: "text", Content: "hi" });
    await page.locator('.contact[data-contact-id="oFilterEmpty"]').waitFor();
    const empty = page.locator("#contacts-empty");

    await t.step("a filter with nothing under it, the search box empty", async () => {
      await page.locator('.chip[data-filter="closed"]').click();
      await empty.waitFor({ state: "visible" });
      assert.equal(await empty.innerText(), "No conversation under this filter.");
    });

    await t.step("a search that finds nothing", async () => {
      await page.locator('.chip[data-filter="all"]').click();
      await page.locator("#contact-filter").fill("nobody-by-this-name");
      await empty.waitFor({ state: "visible" });
      assert.equal(await empty.innerText(), "No conversation matches your search.");
    });
  },
);
