// The contact list keeps its rows (static/console/row_cache.js): a message to one follower
// rebuilds that row only, and a search typed and cleared puts the same rows back; with 2,000
// followers rebuilding every row froze the page for half a second each time.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentrows";
const IDS = ["oR1", "oR2", "oR3", "oR4", "oR5"];

/** Marks each row's node; returns which rows still carry their mark, in list order. */
function markRows(page: Page) {
  return page.evaluate(`[...document.querySelectorAll("#contact-list .contact")]
    .forEach((n) => { n.__kept = n.dataset.contactId; })`);
}
function keptRows(page: Page) {
  return page.evaluate(`[...document.querySelectorAll("#contact-list .contact")]
    .map((n) => [n.dataset.contactId, n.__kept === n.dataset.contactId])`) as Promise<
    Array<[string, boolean]>
  >;
}

consoleTest(
  "a message rebuilds its own row only; a search cleared brings back the same rows",
  { agent: AGENT },
  async (t, { server, page }) => {
    for (const id of IDS) {
      await postFollowerMessage(server.base, id, { MsgType: "text", Content: `${id} first` });
      await page.locator(`.contact[data-contact-id="${id}"]`).waitFor();
    }
    // The list as GET contacts gives it, with no refresh after a live message still to come
    // (it brings the bridge's preview, and rebuilds that row).
    const reload = async () => {
      await page.reload();
      await page.locator(`#contact-list .contact`).nth(IDS.length - 1).waitFor();
    };
    await reload();

    await t.step("a message to oR2: its row anew, at the top; the others untouched", async () => {
      await markRows(page);
      await postFollowerMessage(server.base, "oR2", { MsgType: "text", Content: "oR2 again" });
      await page.locator("#contact-list .contact").first()
        .filter({ hasText: "oR2 again" }).waitFor();
      const rows = await keptRows(page);
      assert.deepEqual(rows.map(([id]) => id), ["oR2", "oR5", "oR4", "oR3", "oR1"]);
      assert.deepEqual(rows.filter(([, kept]) => !kept).map(([id]) => id), ["oR2"]);
    });

    await t.step("a search typed and cleared: the same rows back", async () => {
      await reload();
      await markRows(page);
      await page.locator("#contact-filter").fill("oR4");
      await page.locator('#contact-list .contact[data-contact-id="oR1"]').waitFor({
        state: "detached",
      });
      await page.locator("#contact-filter").fill("");
      await page.locator('#contact-list .contact[data-contact-id="oR1"]').waitFor();
      const rows = await keptRows(page);
      assert.equal(rows.length, 5);
      assert.deepEqual(rows.filter(([, kept]) => !kept), []);
    });
  },
);
