// A token that expires mid-shift, with the console open and a reply half typed: the bridge closes
// the socket (4401), and the console said "Disconnected, retrying" before guessing the token was
// "refused (expired, or for another agent)". It now says the token expired, and a fresh one picks
// up where the agent was: the conversation, the draft, nothing lost. With the console open in two
// tabs, the fresh token pasted in one left the other asking for it (its socket closed, its title
// still there) until the agent happened to look at it; and a token put in one tab before the old
// one ran out left the other tab asking for one when its own expired, though the browser had it.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startBridge } from "../helpers/server.ts";
import {
  browserTest,
  openConsole,
  openPage,
  openTab,
  postFollowerMessage,
  waitUntil,
} from "./browser.ts";

const AGENT = "agentA";
const SECRET = "token-test-secret-0123456789abcdef";

browserTest("a token expiring mid-shift says so and keeps the draft", async (t, browser) => {
  const server = await startBridge({ env: { AGENT_SECRET: SECRET } });
  try {
    const { context, page } = await openPage(browser);
    // One second, plus the 5 s of clock tolerance the bridge checks it with.
    const shortLived = await mintAgentToken(SECRET, AGENT, 1);
    await context.addInitScript(
      `localStorage.setItem("wxbridge.token:${AGENT}", ${JSON.stringify(shortLived)})`,
    );
    await openConsole(page, server.base, AGENT);
    await postFollowerMessage(server.base, "oLate", { MsgType: "text", Content: "发票开好了吗" });
    await page.locator('.contact[data-contact-id="oLate"]').click();
    await page.locator(".msg.in", { hasText: "发票开好了吗" }).waitFor();
    await page.locator("#reply").fill("发票已经开好，请查收");

    await t.step("at expiry the console says the token expired", async () => {
      // The bridge closes the socket on its own clock: this waits for that, however long.
      await page.locator('#conn[data-state="token"]').waitFor({ timeout: 30_000 });
      assert.match(await page.locator("#token-reason").innerText(), /token expired at .*kept/);
      assert.equal(await page.locator("#reply").inputValue(), "发票已经开好，请查收");
    });

    await t.step("a fresh token: the same conversation, the draft there to send", async () => {
      await page.locator("#token-input").fill(await mintAgentToken(SECRET, AGENT, 600));
      await page.locator("#token-input").press("Enter");
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator("#conv-name", { hasText: "oLate" }).waitFor();
      assert.equal(await page.locator("#reply").inputValue(), "发票已经开好，请查收");
      await page.locator("#reply").press("Enter");
      await page.locator('.msg.out[data-status="sent"]', { hasText: "发票已经开好" }).waitFor();
    });
  } finally {
    await server.close();
  }
});

browserTest(
  "a fresh token pasted in one tab brings the agent's other tab back",
  async (_t, browser) => {
    const server = await startBridge({ env: { AGENT_SECRET: SECRET } });
    try {
      const { context, page: one } = await openPage(browser);
      const two = await openTab(context);
      const shortLived = await mintAgentToken(SECRET, AGENT, 1);
      const key = `wxbridge.token:${AGENT}`;
      // The first page load keeps the short-lived token, as a shift's first login did.
      await context.addInitScript(
        `if (!localStorage.getItem("${key}")) localStorage.setItem("${key}", ${
          JSON.stringify(shortLived)
        })`,
      );
      await postFollowerMessage(server.base, "oBoth", { MsgType: "text", Content: "在吗" });
      for (const page of [two, one]) {
        await page.bringToFront();
        await openConsole(page, server.base, AGENT);
        await page.locator('.contact[data-contact-id="oBoth"]').click();
      }
      await two.locator("#reply").fill("在的，请稍等");
      for (const page of [one, two]) {
        await page.locator('#conn[data-state="token"]').waitFor({ timeout: 30_000 });
      }
      await one.bringToFront();
      await one.locator("#token-input").fill(await mintAgentToken(SECRET, AGENT, 600));
      await one.locator("#token-input").press("Enter");
      await one.locator('#conn[data-state="connected"]').waitFor();
      await two.locator('#conn[data-state="connected"]').waitFor();
      assert.equal(await two.locator("#reply").inputValue(), "在的，请稍等", "the draft lost");
      await two.bringToFront();
      await two.locator("#reply").press("Enter");
      await two.locator('.msg.out[data-status="sent"]', { hasText: "请稍等" }).waitFor();
    } finally {
      await server.close();
    }
  },
);

browserTest(
  "a token replaced in one tab before it ran out serves the other tab too",
  async (_t, browser) => {
    const server = await startBridge({ env: { AGENT_SECRET: SECRET } });
    try {
      const { context, page: one } = await openPage(browser);
      const two = await openTab(context);
      const key = `wxbridge.token:${AGENT}`;
      const shortLived = await mintAgentToken(SECRET, AGENT, 2);
      let sockets = 0;
      two.on("websocket", () => sockets++);
      await context.addInitScript(
        `if (!localStorage.getItem("${key}")) localStorage.setItem("${key}", ${
          JSON.stringify(shortLived)
        })`,
      );
      for (const page of [two, one]) {
        await page.bringToFront();
        await openConsole(page, server.base, AGENT);
      }
      // In one tab the agent puts in the day's token while the first one still works.
      await one.locator("#token-button").click();
      await one.locator("#token-input").fill(await mintAgentToken(SECRET, AGENT, 600));
      await one.locator("#token-input").press("Enter");
      await one.locator('#conn[data-state="connected"]').waitFor();
      // The other tab's socket still runs on the first token: the bridge closes it at its end
      // (exp, plus 5 s of clock tolerance), and the tab opens the next one.
      await waitUntil(() => sockets >= 2, () => "the other tab opened no new socket", 30_000);
      await two.locator('#conn[data-state="connected"]').waitFor();
      assert.equal(await two.locator("#token-panel").isVisible(), false, "asked for a token");
      await postFollowerMessage(server.base, "oLater", { MsgType: "text", Content: "还在吗" });
      await two.locator('.contact[data-contact-id="oLater"]').waitFor();
    } finally {
      await server.close();
    }
  },
);
