// Two agents in one browser whose draft keys were one: agent "a:b" typing to follower "c" and
// agent "a" typing to follower "b:c" both kept `wxbridge.draft:a:b:c`, so each one's typing
// replaced the other's box as it was typed (a storage event) and a reload showed the last one.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import { browserTest, openConsole, openPage, openTab, postFollowerMessage } from "./browser.ts";

browserTest(
  "agents a:b and a keep their own drafts for followers c and b:c",
  async (t, browser) => {
    const server = await startBridge();
    try {
      const { context, page: ab } = await openPage(browser);
      const a = await openTab(context);
      // One agent online at a time, so each follower is bound to the agent meant for it.
      await openConsole(ab, server.base, "a:b");
      await postFollowerMessage(server.base, "c", { MsgType: "text", Content: "to a:b" });
      await ab.locator('.contact[data-contact-id="c"]').waitFor();
      await openConsole(a, server.base, "a");
      await postFollowerMessage(server.base, "b:c", { MsgType: "text", Content: "to a" });
      await a.locator('.contact[data-contact-id="b:c"]').waitFor();
      const open = async (page: Page, id: string) => {
        await page.bringToFront();
        await page.locator(`.contact[data-contact-id="${id}"]`).click();
        await page.locator("#conv-name", { hasText: id }).waitFor();
      };
      const box = (page: Page) => page.locator("#reply").inputValue();

      await t.step("typed in both, neither box takes the other's text", async () => {
        await open(ab, "c");
        await ab.locator("#reply").fill("a:b 的草稿");
        await open(a, "b:c");
        await a.locator("#reply").fill("a 的草稿");
        // A write to a key both tabs read would have reached this box as a storage event.
        await ab.bringToFront();
        await ab.locator("#reply").press("End");
        assert.equal(await box(ab), "a:b 的草稿");
        assert.equal(await box(a), "a 的草稿");
      });

      await t.step("after a reload each agent reads back its own", async () => {
        for (
          const [page, agent, id, text] of [
            [ab, "a:b", "c", "a:b 的草稿"],
            [a, "a", "b:c", "a 的草稿"],
          ] as const
        ) {
          await page.bringToFront();
          await openConsole(page, server.base, agent);
          await open(page, id);
          assert.equal(await box(page), text, `${agent}'s draft for ${id}`);
        }
      });
    } finally {
      await server.close();
    }
  },
);
