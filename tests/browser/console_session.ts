// The set-up the console's browser tests share: a bridge of the test's own (against a fake
// WeChat when it names an app id), an agent's console open on it in a laptop or phone page, and
// both closed after, whether the test passed or not.

import type { Browser, BrowserContext, Page } from "playwright-core";
import type { FakeWechat } from "../../tools/fake_wechat.ts";
import { startBridge, startWechatBridge, type TestBridge } from "../helpers/server.ts";
import { browserTest, openConsole, openPage } from "./browser.ts";

/** What a console test is given: the browser, the bridge, and the agent's page. */
export interface ConsoleSession {
  browser: Browser;
  server: TestBridge;
  context: BrowserContext;
  page: Page;
}

/** How a console test starts: `agent` signed in (unless `open` is false: the test routes the
 * page first, then opens it), `env` for the bridge, `size` of the page. */
export interface ConsoleOptions {
  agent: string;
  env?: Record<string, string>;
  size?: "laptop" | "phone";
  open?: boolean;
}

/** Registers a browser test with a bridge of its own and `agent`'s console open on it. */
export function consoleTest(
  name: string,
  options: ConsoleOptions,
  fn: (t: Deno.TestContext, session: ConsoleSession) => Promise<void>,
): void {
  browserTest(name, async (t, browser) => {
    const server = await startBridge({ env: options.env });
    try {
      await fn(t, { browser, server, ...await consolePage(browser, server, options) });
    } finally {
      await server.close();
    }
  });
}

/** Registers a browser test as consoleTest does, its bridge sending replies to a fake WeChat for
 * app `options.appId`. */
export function wechatConsoleTest(
  name: string,
  options: ConsoleOptions & { appId: string },
  fn: (t: Deno.TestContext, session: ConsoleSession & { fake: FakeWechat }) => Promise<void>,
): void {
  browserTest(name, async (t, browser) => {
    const { fake, server, close } = await startWechatBridge(options.appId, { env: options.env });
    try {
      await fn(t, { browser, server, fake, ...await consolePage(browser, server, options) });
    } finally {
      await close();
    }
  });
}

async function consolePage(browser: Browser, server: TestBridge, options: ConsoleOptions) {
  const { context, page } = await openPage(browser, options.size);
  if (options.open !== false) await openConsole(page, server.base, options.agent);
  return { context, page };
}

/** Opens `agent`'s console in each of `pages` in turn (each brought to the front, as an agent
 * does: a tab behind draws slowly) on `followerId`'s conversation, and waits until each shows
 * the follower's message `shows` (or, without it, the follower's name in the header). */
export async function openTabsOn(
  pages: Page[],
  server: TestBridge,
  options: { agent: string; followerId: string; shows?: string },
): Promise<void> {
  for (const page of pages) {
    await page.bringToFront();
    await openConsole(page, server.base, options.agent);
    await page.locator(`.contact[data-contact-id="${options.followerId}"]`).click();
    if (options.shows) await page.locator(".msg.in", { hasText: options.shows }).waitFor();
    else await page.locator("#conv-name", { hasText: options.followerId }).waitFor();
  }
}
