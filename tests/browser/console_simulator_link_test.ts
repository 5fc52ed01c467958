// The follower simulator writes as a demo account. It was offered in the top bar whatever the
// mode, so with WeChat credentials an agent could open it and post into the real account's
// bridge, with no reply able to come back to it. It is offered only in demo mode now.

import assert from "node:assert/strict";
import { openConsole } from "./browser.ts";
import { consoleTest, wechatConsoleTest } from "./console_session.ts";

consoleTest(
  "the follower simulator is offered in demo mode",
  { agent: "simdemo" },
  async (_t, s) => {
    await s.page.locator("#simulator-link").waitFor({ state: "visible" });
    assert.equal(await s.page.locator("#simulator-link").getAttribute("href"), "/console/follower");
  },
);

wechatConsoleTest(
  "with WeChat credentials the follower simulator is not offered",
  { agent: "simlive", appId: "wxsimlink", open: false },
  async (_t, s) => {
    const asked = s.page.waitForResponse((r) =>
      new URL(r.url()).pathname.endsWith("/demo/replies")
    );
    await openConsole(s.page, s.server.base, "simlive");
    assert.equal((await asked).status(), 404);
    assert.equal(await s.page.locator("#simulator-link").isVisible(), false);
  },
);
