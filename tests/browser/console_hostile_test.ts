// What a stranger or a colleague can put in front of an agent: a follower's text, display name,
// link, location, unknown-type content and menu key carrying HTML and script, javascript: URLs,
// an RTL override and 20 KB of text; a colleague's message of every kind, one of them dressed as
// the system's "conversation ended" notice. The console shows all of it as text: no script runs,
// no element the sender wrote appears, no javascript: link is made, and a colleague's message is
// never drawn as one of the system's notices.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { startBridge } from "../helpers/server.ts";
import { B, browserTest, followerXml, openConsole, openPage } from "./browser.ts";

const AGENT = "agentA";
const HTML = `<img src=x id=pwn onerror="document.title='pwned'">` +
  `<script id=pwn2>document.title='pwned'</script><b id=pwn3>bold</b>`;

async function postAs(base: string, from: string, fields: Record<string, string>, name = "") {
  const query = name ? `?name=${encodeURIComponent(name)}` : "";
  const res = await fetch(`${base}${B}/send_xml${query}`, {
    method: "POST",
    headers: { "content-type": "text/xml" },
    body: followerXml(from, fields),
  });
  assert.equal(res.status, 200, await res.text());
}

/** What the senders tried to make: their elements, javascript: links, a changed title. */
function injected(page: Page) {
  return page.evaluate(() => {
    const d = (globalThis as unknown as {
      document: { title: string; querySelectorAll(s: string): { length: number } };
    }).document;
    return {
      elements: d.querySelectorAll("#pwn, #pwn2, #pwn3").length,
      javascriptLinks: d.querySelectorAll('a[href^="javascript"], img[src^="javascript"]').length,
      title: d.title.includes("pwned"),
    };
  });
}

const NONE = { elements: 0, javascriptLinks: 0, title: false };

browserTest("hostile followers and colleagues are shown as text", async (t, browser) => {
  const server = await startBridge();
  try {
    const { page } = await openPage(browser);
    const dialogs: string[] = [];
    page.on("dialog", (d) => {
      dialogs.push(d.message());
      d.dismiss().catch(() => {});
    });
    await openConsole(page, server.base, AGENT);

    await t.step("a follower's fields", async () => {
      const text = `${HTML} javascript:alert(1) \u202Egnp.exe`;
      await postAs(server.base, "oHostile", { MsgType: "text", Content: text }, HTML);
      await postAs(server.base, "oHostile", {
        MsgType: "link",
        Title: HTML,
        Description: HTML,
        Url: "javascript:alert(1)",
      });
      await postAs(server.base, "oHostile", {
        MsgType: "location",
        Location_X: "31.2",
        Location_Y: "121.4",
        Scale: "15",
        Label: HTML,
      });
      await postAs(server.base, "oHostile", { MsgType: "enim", Content: HTML });
      await postAs(server.base, "oHostile", { MsgType: "event", Event: "CLICK", EventKey: HTML });
      await postAs(server.base, "oHostile", { MsgType: "text", Content: "x".repeat(20_000) });
      await page.locator('.contact[data-contact-id="oHostile"]').click();
      await page.locator(".msg.in", { hasText: "x".repeat(100) }).waitFor();
      await page.locator(".msg.in", { hasText: "\u202Egnp.exe" }).waitFor();
      assert.deepEqual(await injected(page), NONE);
    });

    await t.step("a colleague's messages, one dressed as the system's notice", async () => {
      const ws = new WebSocket(`${server.wsBase}${B}/msg?userid=agentB`);
      await new Promise((resolve) => ws.onopen = resolve);
      const closed = new Promise((resolve) => ws.onclose = resolve);
      const frames = [
        { msg_type: "text", msg: { content: HTML } },
        { msg_type: "image", msg: { media_path: "javascript:alert(1)" } },
        { msg_type: "link", msg: { url: "javascript:alert(1)", title: HTML } },
        { msg_type: "system", msg: { event: "closed", follower_id: "oHostile", text: HTML } },
        { msg_type: "text", msg: { content: "the last one" } },
      ];
      try {
        for (const frame of frames) {
          const res = await fetch(`${server.base}${B}/send?userid=agentB`, {
            method: "POST",
            body: JSON.stringify({ data: { ...frame, contact_id: AGENT } }),
          });
          assert.equal(res.status, 200, await res.text());
        }
        await page.locator('.contact[data-contact-id="agentB"]').click();
        await page.locator(".msg.in", { hasText: "the last one" }).waitFor();
        assert.deepEqual(await injected(page), NONE);
        // Drawn as the system's notice, it read "The conversation with oHostile has ended".
        assert.equal(await page.locator(".msg.note").count(), 0);
        assert.equal(
          await page.locator('.contact[data-contact-id="oHostile"]').getAttribute("data-status"),
          "open",
        );
        // Nor in the list, where its preview was the notice's text.
        const res = await fetch(`${server.base}${B}/send?userid=agentB`, {
          method: "POST",
          body: JSON.stringify({ data: { ...frames[3], contact_id: AGENT } }),
        });
        assert.equal(res.status, 200, await res.text());
        const preview = page.locator('.contact[data-contact-id="agentB"] .contact-preview');
        await preview.filter({ hasText: "[system]" }).waitFor();
      } finally {
        ws.close();
        await closed;
      }
    });
    assert.deepEqual(dialogs, []);
  } finally {
    await server.close();
  }
});
