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
    .forEach((n) => {
      n.__kept = n.dataset.contactId;
      (window.__marked ??= new Map()).set(n.dataset.contactId, n.textContent);
    })`);
}
/** Each row in list order: its id, and whether it is the node marked, or else a node built anew
 * though it shows what the marked one showed (a rebuild for nothing). A row whose window pill
 * ticked a minute down meanwhile is rightly built anew. */
function keptRows(page: Page) {
  return page.evaluate(`[...document.querySelectorAll("#contact-list .contact")]
    .map((n) => {
      const marked = window.__marked?.get(n.dataset.contactId);
      return [n.dataset.contactId, n.__kept === n.dataset.contactId,
        n.__kept !== n.dataset.contactId && marked === n.textContent];
    })`) as Promise<Array<[string, boolean, boolean]>>;
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
      await page.locator('#conn[data-state="connected"]').waitFor();
      // Just after a load the list is drawn again as the socket's first frames and the contacts
      // answer come (the rows' keys take what they add): rows are marked once that has passed,
      // when a quarter of a second goes by with every row kept.
      for (let settled = false, tries = 0; !settled && tries < 40; tries++) {
        await markRows(page);
        await page.waitForTimeout(250);
        settled = (await keptRows(page)).every(([, kept]) => kept);
      }
    };
    await reload();

    await t.step("a message to oR2: its row anew, at the top; the others untouched", async () => {
      await markRows(page);
      await postFollowerMessage(server.base, "oR2", { MsgType: "text", Content: "oR2 again" });
      await page.locator("#contact-list .contact").first()
        .filter({ hasText: "oR2 again" }).waitFor();
      const rows = await keptRows(page);
      assert.deepEqual(rows.map(([id]) => id), ["oR2", "oR5", "oR4", "oR3", "oR1"]);
      assert.equal(rows[0]![1], false, "oR2's row is built anew");
      assert.deepEqual(rows.filter(([, , forNothing]) => forNothing).map(([id]) => id), []);
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
      assert.deepEqual(rows.filter(([, , forNothing]) => forNothing).map(([id]) => id), []);
    });
  },
);
