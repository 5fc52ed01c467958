// Issue 14, item 13: every HTML page carries a strict Content-Security-Policy (no
// 'unsafe-inline', no 'unsafe-eval', no framing), and the pages still work under it in a real
// Chromium, which reports every violation as a `securitypolicyviolation` event.

import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import {
  browserTest,
  consoleLines,
  makePng,
  openConsole,
  openPage,
  postFollowerMessage,
} from "./browser.ts";

/** Logs every CSP violation of the page to its console as `CSP violation: …`. */
async function recordViolations(page: Page): Promise<string[]> {
  await page.addInitScript(
    `document.addEventListener("securitypolicyviolation", (e) =>
      console.log("CSP violation: " + e.violatedDirective + " " + e.blockedURI));`,
  );
  const lines = consoleLines(page);
  return lines;
}

const violations = (lines: string[]) => lines.filter((l) => l.startsWith("CSP violation"));

browserTest("HTML pages carry a strict CSP and work under it", async (t, browser) => {
  const server = await startBridge();
  try {
    await t.step("the header on every page: no unsafe-inline, no eval, no framing", async () => {
      for (const path of ["/console", "/console/follower", "/"]) {
        const res = await fetch(`${server.base}${path}`);
        await res.body?.cancel();
        const csp = res.headers.get("content-security-policy") ?? "";
        assert.match(csp, /default-src 'none'/, path);
        assert.match(csp, /script-src 'self'/, path);
        assert.match(csp, /frame-ancestors 'none'/, path);
        assert.match(csp, /object-src 'none'/, path);
        assert.doesNotMatch(csp, /'unsafe-inline'|'unsafe-eval'/, path);
      }
    });

    await t.step("the console connects and shows a message, with no violation", async () => {
      const { page } = await openPage(browser);
      const lines = await recordViolations(page);
      await openConsole(page, server.base, "alice");
      await postFollowerMessage(server.base, "oCsp", { MsgType: "text", Content: "csp ok" });
      await page.locator('.contact[data-contact-id="oCsp"]').click();
      await page.locator(".msg.in", { hasText: "csp ok" }).waitFor();
      assert.deepEqual(violations(lines), []);
      await page.context().close();
    });

    await t.step("a picture's upload shows its progress bar, with no violation", async () => {
      // The bar's first width was an inline style attribute, which the policy blocks.
      const { page } = await openPage(browser);
      const lines = await recordViolations(page);
      await openConsole(page, server.base, "alice");
      await postFollowerMessage(server.base, "oCspUp", { MsgType: "text", Content: "send a pic" });
      await page.locator('.contact[data-contact-id="oCspUp"]').click();
      let release!: () => void;
      const held = new Promise<void>((resolve) => release = resolve);
      await page.route("**/upload?*", async (route) => {
        await held;
        await route.continue();
      }, { times: 1 });
      await page.locator("#attach-input").setInputFiles({
        name: "csp.png",
        mimeType: "image/png",
        buffer: Buffer.from(await makePng(40, 30)),
      });
      await page.locator(".staged-item", { hasText: "csp.png" }).waitFor();
      await page.locator("#send-button").click();
      await page.locator('.msg.out[data-status="uploading"] [role="progressbar"]').waitFor();
      release();
      assert.deepEqual(violations(lines), []);
      await page.context().close();
    });

    await t.step(
      "the seed page's inline script and handlers run (hashed), no violation",
      async () => {
        const { page } = await openPage(browser);
        const lines = await recordViolations(page);
        await page.goto(`${server.base}/`);
        await page.waitForFunction("sock && sock.readyState === WebSocket.OPEN");
        // The button's inline onclick handler sends on the socket.
        await page.getByRole("button", { name: "Send Message" }).click();
        assert.deepEqual(violations(lines), []);
        await page.context().close();
      },
    );

    await t.step("an inline script the policy does not name is blocked", async () => {
      const { page } = await openPage(browser);
      const lines = await recordViolations(page);
      await page.goto(`${server.base}/console?userid=bob`);
      await page.evaluate(`{
        const s = document.createElement("script");
        s.textContent = "window.injected = true";
        document.body.append(s);
      }`);
      assert.equal(await page.evaluate("window.injected === true"), false);
      assert.equal(violations(lines).length > 0, true);
      await page.context().close();
    });
  } finally {
    await server.close();
  }
});
