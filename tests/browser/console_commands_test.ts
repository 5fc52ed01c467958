// The console's commands: transfer a conversation to another agent, end one, and set how many
// open conversations the bridge may give this agent. Two agents: two consoles, or a console and
// a raw agent socket; followers write as WeChat does (ToUserName = an agent id binds to it).

import assert from "node:assert/strict";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import {
  B,
  browserTest,
  contactsOf,
  type Frame,
  openConsole,
  openPage,
  PHONE,
  screenshot,
  socketFrames,
  waitUntil,
} from "./browser.ts";

const A = "agentA";
const AGENT_B = "agentB";

let msgId = 7_000_000;

/** A follower's text as WeChat posts it; `to` is the ToUserName (an agent id binds to it). */
async function write(base: string, follower: string, to: string, content: string) {
  const now = String(Math.floor(Date.now() / 1000));
  const res = await post(
    `${base}${B}/send_xml`,
    textXml(follower, to, content, `${++msgId}`, now),
    {
      "content-type": "text/xml",
    },
  );
  assert.equal(res.status, 200, res.text);
}

const systemEvent = (event: string, follower: string) => (f: Frame | Received) =>
  f.result?.code === 102 && f.data?.msg?.["event"] === event &&
  f.data?.msg?.["follower_id"] === follower;

browserTest(
  "console transfers a conversation to another agent, and shows a refused transfer",
  async (t, browser) => {
    const server = await startBridge();
    try {
      const a = await openPage(browser);
      const b = await openPage(browser);
      const aFrames = socketFrames(a.page);
      const bFrames = socketFrames(b.page);
      await openConsole(a.page, server.base, A);
      await openConsole(b.page, server.base, AGENT_B);
      const F = "oLi";
      await write(server.base, F, A, "你好，我想退货 — I'd like to return my order");
      const inA = a.page.locator(`#contact-list .contact[data-contact-id="${F}"]`);
      await inA.click();
      await a.page.locator(".msg.in", { hasText: "我想退货" }).waitFor();
      const form = a.page.locator("#transfer-form");

      await t.step("the header's Transfer opens an inline form", async () => {
        assert.equal(await form.isVisible(), false);
        await a.page.getByRole("button", { name: "Transfer to another agent" }).click();
        await form.waitFor();
        assert.equal(
          await a.page.evaluate("document.activeElement?.id"),
          "transfer-to",
          "the agent id field has the focus",
        );
        assert.equal(await a.page.locator("#transfer-name").innerText(), F);
      });

      await t.step("an unknown agent is refused by the bridge, inline", async () => {
        await a.page.locator("#transfer-to").fill("nobody");
        await a.page.locator("#transfer-submit").click();
        await a.page.locator("#transfer-error", { hasText: "unknown agent nobody" }).waitFor();
        const sent = aFrames.sent.find((f) => f.data?.msg_type === "transfer");
        assert.ok(sent, "no transfer frame was sent");
        assert.equal(sent.data?.contact_id, F);
        assert.deepEqual(sent.data?.msg, { to: "nobody" });
        assert.deepEqual(sent.result, { code: 0, message: "command" });
        // Nothing moved: the form stays, so does the conversation, and no toast repeats it.
        assert.equal(await form.isVisible(), true);
        assert.equal(await a.page.locator("#transfer-submit").isEnabled(), true);
        assert.equal(await a.page.locator(".toast").count(), 0);
        assert.equal(await inA.count(), 1);
        assert.equal(
          (await contactsOf(server.base, A)).find((c) => c.contact_id === F)?.agent_id,
          A,
        );
        await screenshot(a.page, "console-laptop-transfer-refused");
      });

      await t.step("the form fits a phone", async () => {
        const phone = await openPage(browser, "phone");
        try {
          await openConsole(phone.page, server.base, A);
          await phone.page.locator(`.contact[data-contact-id="${F}"]`).click();
          await phone.page.getByRole("button", { name: "Transfer to another agent" }).click();
          await phone.page.locator("#transfer-to").fill(AGENT_B);
          for (const id of ["transfer-to", "transfer-submit", "transfer-cancel"]) {
            const box = await phone.page.locator(`#${id}`).boundingBox();
            assert.ok(
              box && box.x >= 0 && box.x + box.width <= PHONE.width,
              `#${id} is off screen`,
            );
          }
          assert.equal(
            await phone.page.evaluate("document.documentElement.scrollWidth"),
            PHONE.width,
            "the page scrolls sideways",
          );
          await screenshot(phone.page, "console-phone-transfer-form");
          await phone.page.locator("#transfer-cancel").click();
          await phone.page.locator("#transfer-form").waitFor({ state: "hidden" });
        } finally {
          await phone.context.close();
        }
      });

      await t.step("a transfer to agentB moves the conversation to B", async () => {
        await a.page.locator("#transfer-to").fill(AGENT_B);
        await screenshot(a.page, "console-laptop-transfer-form");
        await a.page.locator("#transfer-submit").click();
        // A: read-only, with a note, out of the active list and under "Transferred".
        await a.page.locator("#window-notice", { hasText: `Transferred to ${AGENT_B}` }).waitFor();
        await form.waitFor({ state: "hidden" });
        assert.equal(await a.page.locator("#composer").isVisible(), false);
        assert.equal(await a.page.locator("#conv-actions").isVisible(), false);
        assert.equal(await inA.count(), 0);
        await a.page.locator("#contacts-empty", { hasText: "No open conversations." }).waitFor();
        await a.page.locator(`#transferred-list .contact[data-contact-id="${F}"]`, {
          hasText: `Transferred to ${AGENT_B}`,
        }).waitFor();
        assert.ok(aFrames.received.some(systemEvent("transferred_out", F)));
        // B: told, and its console lists the follower.
        await waitUntil(
          () => bFrames.received.some(systemEvent("transferred_in", F)),
          () => "agentB's console got no transferred_in",
        );
        await b.page.locator(`#contact-list .contact[data-contact-id="${F}"]`).waitFor();
        const listed = (await contactsOf(server.base, AGENT_B)).find((c) => c.contact_id === F);
        assert.equal(listed?.agent_id, AGENT_B);
        await screenshot(a.page, "console-laptop-transferred");
      });

      await t.step("the follower's next message reaches B, not A", async () => {
        await write(server.base, F, "gh_demo", "还在吗？ Are you still there?");
        await b.page.locator(`.contact[data-contact-id="${F}"] .contact-preview`, {
          hasText: "Are you still there?",
        }).waitFor();
        await b.page.locator(`.contact[data-contact-id="${F}"]`).click();
        await b.page.locator(".msg.in", { hasText: "Are you still there?" }).waitFor();
        // B reads what the follower told A before the transfer.
        await b.page.locator(".msg.in", { hasText: "我想退货" }).waitFor();
        assert.ok(
          !aFrames.received.some((f) => JSON.stringify(f).includes("Are you still there?")),
          "agentA's console got the message too",
        );
        assert.equal(await a.page.locator(".msg.in", { hasText: "still there" }).count(), 0);
        assert.ok(!(await contactsOf(server.base, A)).some((c) => c.contact_id === F));
        await b.page.locator("#reply").fill("我是 agentB，我来帮你 — I'll take it from here.");
        await b.page.locator("#reply").press("Enter");
        await b.page.locator('.msg.out[data-status="sent"]').waitFor();
        await screenshot(b.page, "console-laptop-transferred-in");
      });
    } finally {
      await server.close();
    }
  },
);

browserTest(
  "console ends a conversation after a confirmation, and sets its capacity",
  async (t, browser) => {
    const server = await startBridge();
    const agentB = await connectAgent(`${server.wsBase}${B}/msg?userid=${AGENT_B}`);
    try {
      const { page } = await openPage(browser);
      const frames = socketFrames(page);
      await openConsole(page, server.base, A);
      const F = "oZhao";
      await write(server.base, F, A, "谢谢，问题解决了 Thanks, that solved it");
      const contact = page.locator(`#contact-list .contact[data-contact-id="${F}"]`);
      await contact.click();
      await page.locator(".msg.in", { hasText: "问题解决了" }).waitFor();
      const confirm = page.locator("#close-confirm");
      const closeFrames = () => frames.sent.filter((f) => f.data?.msg_type === "close");

      await t.step("End asks first, and Cancel ends nothing", async () => {
        await page.getByRole("button", { name: "End conversation" }).click();
        await confirm.waitFor();
        assert.match(await confirm.innerText(), new RegExp(`End the conversation with ${F}\\?`));
        await screenshot(page, "console-laptop-close-confirm");
        await page.locator("#close-cancel").click();
        await confirm.waitFor({ state: "hidden" });
        assert.equal(closeFrames().length, 0);
        assert.equal(
          (await contactsOf(server.base, A)).find((c) => c.contact_id === F)?.status,
          "open",
        );
      });

      await t.step("confirming ends it: closed in the console and in GET contacts", async () => {
        await page.locator("#close-button").click();
        await page.locator("#close-submit").click();
        await page.locator(`#contact-list .contact[data-contact-id="${F}"][data-status="closed"]`)
          .waitFor();
        await confirm.waitFor({ state: "hidden" });
        assert.deepEqual(closeFrames().map((f) => f.data?.contact_id), [F]);
        assert.equal(await page.locator("#conv-window").innerText(), "Conversation closed");
        await page.locator("#window-notice", { hasText: "Conversation ended" }).waitFor();
        assert.equal(await page.locator("#conv-actions").isVisible(), false);
        assert.ok(frames.received.some(systemEvent("closed", F)));
        assert.equal(
          (await contactsOf(server.base, A)).find((c) => c.contact_id === F)?.status,
          "closed",
        );
      });

      await t.step("the follower's next message opens it again", async () => {
        await write(server.base, F, "gh_demo", "还有一个问题 — one more question");
        await page.locator(`#contact-list .contact[data-contact-id="${F}"][data-status="open"]`)
          .waitFor();
        await page.locator(".msg.in", { hasText: "one more question" }).waitFor();
        await page.locator("#conv-actions").waitFor();
        assert.equal(await page.locator("#window-notice").isVisible(), false);
        assert.ok(frames.received.filter(systemEvent("assigned", F)).length >= 2);
      });

      // A now has one open conversation; B takes two, so without a limit the next new follower
      // would go to A (fewest open), and with max 1 it must go to B.
      await write(server.base, "oB1", AGENT_B, "for B, one");
      await write(server.base, "oB2", AGENT_B, "for B, two");
      await agentB.waitFor(systemEvent("assigned", "oB2"));
      const capacityOf = async () => (await server.store.getAgent(A))?.capacity;
      const capacityFrames = () => frames.sent.filter((f) => f.data?.msg_type === "capacity");

      await t.step("a bad limit is refused in the form", async () => {
        await page.locator("#capacity-button").click();
        await page.locator("#capacity-form").waitFor();
        await page.locator("#capacity-input").fill("-1");
        await page.locator("#capacity-form").getByRole("button", { name: "Save" }).click();
        await page.locator("#capacity-error", { hasText: "whole number" }).waitFor();
        assert.equal(capacityFrames().length, 0);
      });

      await t.step("max 1 is sent, kept, and steers the next follower to B", async () => {
        await page.locator("#capacity-input").fill("1");
        await page.locator("#capacity-error").waitFor({ state: "hidden" });
        await page.locator("#capacity-open", { hasText: "You have 1 open now." }).waitFor();
        await screenshot(page, "console-laptop-capacity");
        await page.locator("#capacity-form").getByRole("button", { name: "Save" }).click();
        await page.locator("#capacity-form").waitFor({ state: "hidden" });
        assert.equal(await page.locator("#capacity-value").innerText(), "1");
        assert.deepEqual(capacityFrames().at(-1)?.data?.msg, { max: 1 });
        assert.equal(await page.evaluate(`localStorage.getItem("wxbridge.capacity:${A}")`), "1");
        await waitUntil(async () => (await capacityOf()) === 1, () => "capacity not stored");
        await write(server.base, "oNew", "gh_demo", "新客户 — new here");
        await agentB.waitFor((e) => e.data.contact_id === "oNew" && e.result.code === 1001);
        assert.ok(!(await contactsOf(server.base, A)).some((c) => c.contact_id === "oNew"));
        assert.equal(await page.locator('.contact[data-contact-id="oNew"]').count(), 0);
      });

      await t.step("a reconnect says the limit again", async () => {
        await server.store.setCapacity(A, null);
        const before = capacityFrames().length;
        await page.reload();
        await page.locator('#conn[data-state="connected"]').waitFor();
        await waitUntil(async () => (await capacityOf()) === 1, () => "capacity not re-sent");
        assert.equal(capacityFrames().length, before + 1);
        assert.equal(await page.locator("#capacity-value").innerText(), "1");
      });

      await t.step("an empty limit means no limit", async () => {
        await page.locator("#capacity-button").click();
        assert.equal(await page.locator("#capacity-input").inputValue(), "1");
        await page.locator("#capacity-input").fill("");
        await page.locator("#capacity-input").press("Enter");
        await page.locator("#capacity-form").waitFor({ state: "hidden" });
        assert.deepEqual(capacityFrames().at(-1)?.data?.msg, { max: null });
        await waitUntil(async () => (await capacityOf()) === null, () => "limit not lifted");
        assert.equal(await page.locator("#capacity-value").innerText(), "no limit");
        assert.equal(
          await page.evaluate(`localStorage.getItem("wxbridge.capacity:${A}")`),
          "none",
        );
      });

      await t.step("the capacity setting fits a phone", async () => {
        const phone = await openPage(browser, "phone");
        try {
          await openConsole(phone.page, server.base, A);
          await phone.page.locator("#capacity-button").click();
          const box = await phone.page.locator("#capacity-form").boundingBox();
          assert.ok(box && box.x >= 0 && box.x + box.width <= PHONE.width, "popover off screen");
          await screenshot(phone.page, "console-phone-capacity");
        } finally {
          await phone.context.close();
        }
      });
    } finally {
      await agentB.close();
      await server.close();
    }
  },
);
