// A label shown on a row finds that row in the list's search (static/console/list_search.js).

import assert from "node:assert/strict";
import { postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentsearch";

consoleTest(
  "typing a label in the list's search lists the followers with it",
  { agent: AGENT },
  async (_t, { server, page }) => {
    for (const id of ["oVIP1", "oPLAIN", "oVIP2"]) {
      await postFollowerMessage(server.base, id, { MsgType: "text", Content: `${id} 你好` });
      await page.locator(`.contact[data-contact-id="${id}"]`).waitFor();
    }
    await server.store.setLabels(AGENT, "oVIP1", ["VIP客户"]);
    await server.store.setLabels(AGENT, "oVIP2", ["退款", "vip"]);
    // The list reads labels from GET contacts: a reload brings them.
    await page.reload();
    await page.locator('.contact[data-contact-id="oVIP1"] .label', { hasText: "VIP客户" })
      .waitFor();
    await page.locator("#contact-filter").fill("VIP");
    await page.locator('#contact-list .contact[data-contact-id="oPLAIN"]').waitFor({
      state: "detached",
    });
    const shown = await page.evaluate(
      `[...document.querySelectorAll("#contact-list .contact")].map((n) => n.dataset.contactId)`,
    ) as string[];
    assert.deepEqual(shown.sort(), ["oVIP1", "oVIP2"]);
    assert.equal(
      await page.locator("#contact-filter").getAttribute("placeholder"),
      "Search name, id or label",
    );
  },
);
