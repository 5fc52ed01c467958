// The capacity a console shows is the one the bridge enforces: a browser where the agent never
// set it (a new PC or profile) reads it from GET B/agents instead of saying "no limit".

import assert from "node:assert/strict";
import { openConsole, socketFrames } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentcap";

consoleTest(
  "a fresh browser shows the capacity the bridge holds, and does not send one of its own",
  { agent: AGENT, open: false },
  async (_t, { server, page }) => {
    // Set on another PC in an earlier shift.
    await server.store.setCapacity(AGENT, 1);
    const frames = socketFrames(page);
    await openConsole(page, server.base, AGENT);
    await page.locator("#capacity-value", { hasText: /^1$/ }).waitFor();
    assert.equal(frames.sent.filter((f) => f.data?.msg_type === "capacity").length, 0);
    assert.equal((await server.store.getAgent(AGENT))?.capacity, 1);
  },
);
