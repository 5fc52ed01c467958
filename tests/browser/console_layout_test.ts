// The layout keeps what the agent reads legible: with the Details panel open on a 1366 px
// laptop the follower's name keeps its room (the header's pills and buttons wrap instead), and a
// follower with many labels keeps a list row of one line per label, never one character per line.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { postFollowerMessage, screenshot } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentlayout";
/** A real OpenID's length: 28 characters. */
const OPENID = "oLAYOUT1234567890abcdefghijk";
const LABELS = Array.from({ length: 10 }, (_, i) => `标签${i + 1}`);

/** Width the name has, and the width its text needs. */
function nameRoom(page: Page) {
  return page.evaluate(`(() => {
    const n = document.getElementById("conv-name");
    return { client: n.clientWidth, scroll: n.scrollWidth };
  })()`) as Promise<{ client: number; scroll: number }>;
}

/** Each list label's height and the row's, for the row of `id`. */
function labelBoxes(page: Page, id: string) {
  return page.evaluate(`(() => {
    const row = document.querySelector('.contact[data-contact-id="${id}"]');
    const labels = [...row.querySelectorAll(".label")];
    return {
      row: row.getBoundingClientRect().height,
      labels: labels.map((l) => l.getBoundingClientRect().height),
      pill: row.querySelector(".window-pill").getBoundingClientRect().height,
      plain: document.querySelector('.contact[data-contact-id="oPLAIN"]')
        .getBoundingClientRect().height,
    };
  })()`) as Promise<{ row: number; labels: number[]; pill: number; plain: number }>;
}

for (const size of ["laptop", "phone"] as const) {
  consoleTest(
    `${size}: the name keeps its room beside the Details panel; many labels keep a row legible`,
    { agent: AGENT, size },
    async (_t, { server, page }) => {
      await postFollowerMessage(server.base, OPENID, { MsgType: "text", Content: "在吗" });
      await postFollowerMessage(server.base, "oPLAIN", { MsgType: "text", Content: "你好" });
      await server.store.setLabels(AGENT, OPENID, LABELS);
      await page.reload();
      const row = page.locator(`.contact[data-contact-id="${OPENID}"]`);
      await row.locator(".label").first().waitFor();
      const boxes = await labelBoxes(page, OPENID);
      // One line each (the pill's height), and the row at most a line taller than one without
      // labels: not grown into a column of characters.
      for (const h of boxes.labels) assert.ok(h <= boxes.pill + 2, JSON.stringify(boxes));
      assert.ok(boxes.row <= boxes.plain + boxes.pill + 4, JSON.stringify(boxes));
      await screenshot(page, `console-${size}-many-labels`);

      await row.click();
      await page.locator("#conv-name", { hasText: OPENID }).waitFor();
      if (size === "laptop") {
        await page.locator("#panel-button").click();
        await page.locator("#panel-mount .panel, #panel-mount aside").first().waitFor();
      }
      const room = await nameRoom(page);
      if (size === "laptop") {
        assert.ok(room.scroll <= room.client + 1, `name cut: ${JSON.stringify(room)}`);
      } else {
        // A phone cannot show all 28 characters beside the back button: most of them, cut.
        assert.ok(room.client >= 120, `name squeezed: ${JSON.stringify(room)}`);
      }
      await screenshot(page, `console-${size}-name-beside-details`);
    },
  );
}
