// The console names followers: WeChat gives only an OpenID, so the agent types a name in the
// conversation header (the rename command). The name shows at once, GET contacts confirms it,
// the follower's later envelopes carry it, and a refusal puts the old name back, inline.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import {
  B,
  browserTest,
  contactsOf,
  openConsole,
  openPage,
  PHONE,
  screenshot,
  socketFrames,
  waitUntil,
} from "./browser.ts";

const A = "A";
const AGENT_B = "B";
const F = "oQW8FuN_KZwBaUKQ1RJD2Tr9M";
const NAME = "王女士 Ms. Wang";

let msgId = 8_100_000;

/** A follower's text as WeChat posts it; `to` is the ToUserName (an agent id binds to it). */
async function write(base: string, to: string, content: string): Promise<string> {
  const id = `${++msgId}`;
  const now = String(Math.floor(Date.now() / 1000));
  const res = await post(`${base}${B}/send_xml`, textXml(F, to, content, id, now), {
    "content-type": "text/xml",
  });
  assert.equal(res.status, 200, res.text);
  return id;
}

const isContacts = (url: URL) => url.pathname === `${B}/contacts`;

browserTest("console renames a follower from the conversation header", async (t, browser) => {
  const server = await startBridge();
  // Agent B is only there to be known to the bridge, for the refusal at the end.
  const agentB = await connectAgent(`${server.wsBase}${B}/msg?userid=${AGENT_B}`);
  try {
    const { page } = await openPage(browser);
    const frames = socketFrames(page);
    const renames = () => frames.sent.filter((f) => f.data?.msg_type === "rename");
    await openConsole(page, server.base, A);
    await write(server.base, A, "你好，我的快递还没到 — my parcel hasn't arrived");
    const listed = page.locator(`#contact-list .contact[data-contact-id="${F}"]`);
    await listed.click();
    await page.locator(".msg.in", { hasText: "快递还没到" }).waitFor();
    const form = page.locator("#rename-form");
    const input = page.locator("#rename-input");
    const renameButton = page.getByRole("button", { name: "Rename follower" });

    await t.step("the header shows the OpenID and a Rename action", async () => {
      assert.equal(await page.locator("#conv-name").innerText(), F);
      assert.equal(await page.locator("#conv-sub").innerText(), "WeChat follower");
      assert.equal(await renameButton.isVisible(), true);
      assert.equal(await form.isVisible(), false);
    });

    await t.step("an empty name is not sent, and Esc cancels", async () => {
      await renameButton.click();
      await form.waitFor();
      assert.equal(await page.evaluate("document.activeElement?.id"), "rename-input");
      assert.equal(await input.inputValue(), "", "an OpenID is no name to start from");
      // The OpenID stays in view, under the field.
      assert.equal(await page.locator("#conv-sub").innerText(), F);
      assert.equal(await page.locator("#rename-save").isDisabled(), true);
      await input.fill("   ");
      assert.equal(await page.locator("#rename-save").isDisabled(), true);
      await input.press("Enter");
      await page.locator("#rename-error", { hasText: "Enter a name" }).waitFor();
      assert.equal(await input.getAttribute("aria-invalid"), "true");
      assert.equal(await form.isVisible(), true);
      await input.fill("Someone");
      await page.locator("#rename-error").waitFor({ state: "hidden" });
      await input.press("Escape");
      await form.waitFor({ state: "hidden" });
      assert.equal(await page.locator("#conv-name").innerText(), F);
      assert.equal(await listed.locator(".contact-name").innerText(), F);
      assert.equal(await page.evaluate("document.activeElement?.id"), "rename-button");
      assert.equal(renames().length, 0, "a rename frame was sent");
    });

    await t.step("a saved name shows at once, and GET contacts confirms it", async () => {
      // The console's GET contacts wait until released: what shows before is the console's own.
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      const heldUrls: string[] = [];
      await page.route(isContacts, async (route) => {
        heldUrls.push(route.request().url());
        await held;
        await route.continue();
      });
      try {
        await renameButton.click();
        await input.fill(NAME);
        await screenshot(page, "console-laptop-rename");
        await input.press("Enter");
        await form.waitFor({ state: "hidden" });
        assert.equal(await page.locator("#conv-name").innerText(), NAME);
        assert.equal(await page.locator("#conv-sub").innerText(), F);
        assert.equal(await listed.locator(".contact-name").innerText(), NAME);
        const sent = renames();
        assert.equal(sent.length, 1);
        assert.equal(sent[0]?.data?.contact_id, F);
        assert.deepEqual(sent[0]?.data?.msg, { name: NAME });
        assert.deepEqual(sent[0]?.result, { code: 0, message: "command" });
        // The console asks the bridge again to confirm.
        await waitUntil(() => heldUrls.length > 0, () => "the console did not re-fetch contacts");
        assert.match(heldUrls[0] ?? "", new RegExp(`userid=${A}(&|$)`));
        const confirmed = page.waitForResponse((res) => isContacts(new URL(res.url())));
        release();
        await confirmed;
      } finally {
        release();
        await page.unroute(isContacts);
      }
      const onServer = (await contactsOf(server.base, A)).find((c) => c.contact_id === F);
      assert.equal(onServer?.name, NAME);
      assert.equal(await page.locator("#conv-name").innerText(), NAME);
      assert.equal(await listed.locator(".contact-name").innerText(), NAME);
      assert.ok(
        !frames.received.some((f) => f.result?.code === -1),
        `refused: ${JSON.stringify(frames.received.filter((f) => f.result?.code === -1))}`,
      );
      await screenshot(page, "console-laptop-renamed");
    });

    await t.step("the follower's next message comes under the new name", async () => {
      const id = await write(server.base, "gh_demo", "还在吗？ Anyone there?");
      await waitUntil(
        () => frames.received.some((f) => f.data?.id === id),
        () => "the console got no envelope for the new message",
      );
      assert.equal(frames.received.find((f) => f.data?.id === id)?.data?.name, NAME);
      await page.locator(".msg.in", { hasText: "Anyone there?" }).waitFor();
      await listed.locator(".contact-preview", { hasText: "Anyone there?" }).waitFor();
      assert.equal(await listed.locator(".contact-name").innerText(), NAME);
      assert.equal(await page.locator("#conv-name").innerText(), NAME);
      // The search finds the follower by the new name.
      await page.locator("#contact-filter").fill("ms. wang");
      assert.equal(await page.locator("#contact-list .contact").count(), 1);
      await page.locator("#contact-filter").fill("nobody");
      assert.equal(await page.locator("#contact-list .contact").count(), 0);
      await page.locator("#contact-filter").fill("");
      await listed.waitFor();
    });

    await t.step("on a phone, the field takes the header", async () => {
      const phone = await openPage(browser, "phone");
      try {
        const phoneFrames = socketFrames(phone.page);
        await openConsole(phone.page, server.base, A);
        await phone.page.locator(`.contact[data-contact-id="${F}"] .contact-name`, {
          hasText: NAME,
        }).click();
        assert.equal(await phone.page.locator("#conv-name").innerText(), NAME);
        const pencil = await phone.page.locator("#rename-button").boundingBox();
        assert.ok(pencil && pencil.x + pencil.width <= PHONE.width, "the pencil is off screen");
        await screenshot(phone.page, "console-phone-renamed");
        // A tap on the name itself opens the field: the pencil alone is a small target.
        const nameBox = await phone.page.locator("#conv-name").boundingBox();
        assert.ok(nameBox);
        await phone.page.touchscreen.tap(nameBox.x + nameBox.width / 2, nameBox.y + 4);
        const phoneInput = phone.page.locator("#rename-input");
        await phoneInput.waitFor();
        assert.equal(await phoneInput.inputValue(), NAME);
        assert.equal(await phone.page.locator("#conv-sub").innerText(), F);
        for (const id of ["rename-input", "rename-save", "rename-cancel", "conv-sub"]) {
          const box = await phone.page.locator(`#${id}`).boundingBox();
          assert.ok(box && box.x >= 0 && box.x + box.width <= PHONE.width, `#${id} off screen`);
        }
        const inputBox = await phoneInput.boundingBox();
        assert.ok(inputBox && inputBox.width >= 140, `the field is ${inputBox?.width}px wide`);
        assert.equal(
          await phone.page.evaluate("document.documentElement.scrollWidth"),
          PHONE.width,
          "the page scrolls sideways",
        );
        await screenshot(phone.page, "console-phone-rename");
        // At most 64 characters, as the bridge takes them.
        await phoneInput.fill("x".repeat(80));
        assert.equal((await phoneInput.inputValue()).length, 64);
        await phone.page.locator("#rename-cancel").click();
        await phone.page.locator("#rename-form").waitFor({ state: "hidden" });
        assert.equal(await phone.page.locator("#conv-name").innerText(), NAME);
        assert.equal(phoneFrames.sent.filter((f) => f.data?.msg_type === "rename").length, 0);
      } finally {
        await phone.context.close();
      }
    });

    await t.step("a refused rename puts the name back and says why, inline", async () => {
      // The follower moves to B behind the console's back (as when the notice is still on its
      // way from another instance): the bridge now refuses A's rename.
      await server.store.transfer(F, A, AGENT_B);
      const refused = "Ms. Wang (VIP) 王女士";
      await renameButton.click();
      assert.equal(await input.inputValue(), NAME);
      await input.fill(refused);
      await input.press("Enter");
      await page.locator("#rename-error", { hasText: `contact ${F} is not served by ${A}` })
        .waitFor();
      assert.equal(renames().at(-1)?.data?.msg?.["name"], refused);
      await form.waitFor();
      assert.equal(await input.inputValue(), refused, "the refused name stays, to fix or drop");
      await listed.locator(".contact-name", { hasText: NAME }).waitFor();
      assert.equal(await page.locator("#conv-name").textContent(), NAME);
      assert.equal(await page.locator(".toast").count(), 0, "a toast repeats the refusal");
      const onServer = (await contactsOf(server.base, AGENT_B)).find((c) => c.contact_id === F);
      assert.equal(onServer?.name, NAME);
      await screenshot(page, "console-laptop-rename-refused");
      await input.press("Escape");
      await form.waitFor({ state: "hidden" });
      assert.equal(await page.locator("#conv-name").innerText(), NAME);
    });
  } finally {
    await agentB.close();
    await server.close();
  }
});
