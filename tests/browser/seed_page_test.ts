import assert from "node:assert/strict";
import { SEED_XML } from "../helpers/seed.ts";
import { startBridge } from "../helpers/server.ts";
import {
  browserTest,
  consoleLines,
  openPage,
  screenshot,
  waitUntil as waitFor,
} from "./browser.ts";

const RECEIVED = "message received: ";

browserTest("seed page logs a message posted to /send", async (t, browser) => {
  const server = await startBridge();
  try {
    const { page } = await openPage(browser);
    const lines = consoleLines(page);
    await page.goto(`${server.base}/`);

    await t.step("connects to the host it was loaded from, with the echo subprotocol", async () => {
      await page.waitForFunction("sock && sock.readyState === WebSocket.OPEN");
      const expected = `connected to ws://127.0.0.1:${server.port}?userId=1`;
      await waitFor(
        () => lines.includes(expected),
        () => `no "${expected}" in ${JSON.stringify(lines)}`,
      );
      assert.equal(await page.evaluate("sock.protocol"), "echo");
      assert.equal(await page.locator("#message").inputValue(), "pong");
      assert.equal(await page.getByRole("button", { name: "Send Message" }).count(), 1);
    });

    await t.step("logs the seed's XML as a system message", async () => {
      const res = await fetch(`${server.base}/send`, { method: "POST", body: SEED_XML });
      assert.equal(res.status, 200, await res.text());
      await waitFor(
        () =>
          lines.some((line) =>
            line.startsWith(RECEIVED) && line.includes("occaecat ut in fugiat dolor")
          ),
        () => `nothing received: ${JSON.stringify(lines)}`,
      );
      const line = lines.find((l) => l.startsWith(RECEIVED) && l.includes("occaecat"))!;
      const envelope = JSON.parse(line.slice(RECEIVED.length));
      assert.equal(envelope.result.code, 102);
      assert.equal(envelope.data.contact_id, "system01");
      assert.equal(envelope.data.msg.msg_type, "enim");
      assert.equal(envelope.data.msg.follower_id, "魏秀兰");
    });

    await t.step("the Send button sends the box's text and the page stays connected", async () => {
      const before = lines.filter((l) => l.startsWith(RECEIVED)).length;
      await page.getByRole("button", { name: "Send Message" }).click();
      // "pong" is no JSON frame: the bridge answers with an error and keeps the socket.
      await waitFor(
        () => lines.filter((l) => l.startsWith(RECEIVED)).length > before,
        () => `no answer to "pong": ${JSON.stringify(lines)}`,
      );
      const answer = JSON.parse(
        lines.filter((l) => l.startsWith(RECEIVED)).at(-1)!.slice(RECEIVED.length),
      );
      assert.equal(answer.result.code, -1);
      assert.equal(await page.evaluate("sock.readyState"), 1);
      assert.ok(!lines.some((l) => l.startsWith("connection closed")), JSON.stringify(lines));
    });

    await screenshot(page, "seed-page-laptop");
    const phone = await openPage(browser, "phone");
    await phone.page.goto(`${server.base}/`);
    await phone.page.waitForFunction("sock && sock.readyState === WebSocket.OPEN");
    await screenshot(phone.page, "seed-page-phone");
  } finally {
    await server.close();
  }
});
