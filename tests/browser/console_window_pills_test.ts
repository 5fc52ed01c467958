// The window and quota pills as the agent sees them (the rule: static/console/pills.js, unit
// tests in tests/console/pills_test.ts): an unfollowed follower's row and header promise no
// replies.

import assert from "node:assert/strict";
import { openConsole, postFollowerMessage } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentpills";

consoleTest(
  "an unfollowed follower: no open window, no replies left, in the row and the header",
  { agent: AGENT },
  async (_t, { server, page }) => {
    await postFollowerMessage(server.base, "oUNF", { MsgType: "text", Content: "bye soon" });
    const row = page.locator('.contact[data-contact-id="oUNF"]');
    await row.click();
    await page.locator("#conv-quota", { hasText: "5 of 5 replies left" }).waitFor();
    await postFollowerMessage(server.base, "oUNF", { MsgType: "event", Event: "unsubscribe" });
    await page.locator("#window-notice", { hasText: "unfollowed" }).waitFor();
    await page.locator("#conv-window.unsubscribed", { hasText: "Unfollowed" }).waitFor();
    assert.equal(await page.locator("#conv-quota").isHidden(), true);
    await row.locator(".window-pill.unsubscribed", { hasText: "Unfollowed" }).waitFor();
    assert.doesNotMatch(await row.innerText(), /left/);
  },
);

consoleTest(
  "a PC clock 10 minutes fast: the window counts on the bridge's clock",
  { agent: AGENT, open: false },
  async (_t, { server, page }) => {
    // The page's clock runs on from 10½ minutes ahead of the bridge's.
    await page.clock.install({ time: Date.now() + 10 * 60_000 + 30_000 });
    await openConsole(page, server.base, AGENT);
    await postFollowerMessage(server.base, "oSKEW", { MsgType: "text", Content: "hello" });
    const row = page.locator('.contact[data-contact-id="oSKEW"]');
    await row.click();
    // Without the bridge's time it read 47h 49m: ten minutes of the window lost.
    const full = /^(47h 59m|48h 00m) left$/;
    await page.locator("#conv-window", { hasText: full }).waitFor();
    await row.locator(".window-pill", { hasText: full }).waitFor();
  },
);
