// The account's reports about a follower in the console: a LOCATION (the follower's client saying
// where it is, chanxuehong's sample of a real follower) and WeChat's kf_* session moves show in
// the follower's thread but are nothing to read: no count on the system list, no "New messages"
// pill; and the conversation's header shows the follower's last known place, from GET contacts
// and, live, from a LOCATION that moved. They counted as unseen system notices and as new
// messages below the view, and the place was shown nowhere.

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { B, followerXml, missingGlyphs, screenshot } from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agentA";
const FOLLOWER = "os-IKuHd9pJ6xsn4mS7GyL4HxqI4";

const fixture = (path: string) =>
  Deno.readTextFile(new URL(`../fixtures/wechat/${path}`, import.meta.url));
const locationSample = await fixture("chanxuehong/location_event.xml");
const kfSample = await fixture("wechatpy/kf_create_session.xml");

/** The LOCATION sample as if sent `later` s from now, `north` degrees of latitude further (the
 * bridge takes one from the same follower in the same second for WeChat's retry). */
function report(later = 0, north = 0): string {
  return locationSample
    .replace("1457752531", String(Math.floor(Date.now() / 1000) + later))
    .replace("30.443105", (30.443105 + north).toFixed(6));
}

async function postXml(base: string, xml: string): Promise<void> {
  const res = await fetch(`${base}${B}/send_xml`, {
    method: "POST",
    headers: { "content-type": "text/xml" },
    body: xml,
  });
  assert.equal(res.status, 200, await res.text());
}

/** Waits two frames: what a render of the last frame changes is on screen. */
const settled = (page: Page) =>
  page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))");

/** What the system list's entry counts as unseen ("" when nothing). */
const systemUnseen = (page: Page) =>
  page.evaluate(`document.querySelector(".system-entry .unread")?.textContent ?? ""`);

consoleTest(
  "LOCATION and kf session reports raise no count; the header shows the place",
  { agent: AGENT },
  async (t, { server, page }) => {
    // Another follower's assignment stays to read: the count the reports must not move.
    await postXml(
      server.base,
      followerXml("oOther", { ToUserName: "gh_21ee2dc92d7d", MsgType: "text", Content: "在" }),
    );
    const now = Math.floor(Date.now() / 1000);
    for (let i = 0; i < 30; i++) {
      await postXml(
        server.base,
        followerXml(FOLLOWER, {
          ToUserName: "gh_21ee2dc92d7d",
          MsgType: "text",
          Content: `第 ${i} 条`,
          CreateTime: now - 30 + i,
        }),
      );
    }
    await page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
    await page.locator(".msg.in", { hasText: "第 29 条" }).waitFor();
    const place = page.locator("#conv-place");
    assert.equal(await place.isVisible(), false, "no place reported yet");
    // The agent reads further up: anything new would be announced by the pill.
    await page.locator("#messages").hover();
    await page.mouse.wheel(0, -600);
    await page.waitForFunction(`(() => { const b = document.querySelector("#messages");
      return b.scrollHeight - b.scrollTop - b.clientHeight > 200; })()`);
    await settled(page);
    // oOther's assignment is a notice to read (the follower's, read with it); the reports add
    // none.
    const unseen = await systemUnseen(page);
    assert.equal(unseen, "1", "the assignment is counted");

    await t.step("a LOCATION is in the thread, counted nowhere, and in the header", async () => {
      await postXml(server.base, report());
      // Listed among the system's notices: it came.
      await page.locator(".system-entry", { hasText: "reported their location" }).waitFor();
      await settled(page);
      assert.equal(await page.locator("#new-pill").isVisible(), false);
      assert.equal(await systemUnseen(page), unseen);
      await place.waitFor();
      // Marked by a drawn pin, not an emoji: with no emoji font (Debian's Chromium with only
      // WenQuanYi, as in CI) 📍 was an empty box.
      assert.deepEqual(
        await missingGlyphs(page, "#conv-place"),
        [],
        "every character has a glyph",
      );
      const pin = await place.locator("svg").boundingBox();
      assert.ok(pin && pin.width > 0 && pin.height > 0, "the pin is drawn");
      assert.match(await place.innerText(), /^30\.44, 116\.65 · \d\d:\d\d/);
      await screenshot(page, "console-laptop-location");
    });

    await t.step("a kf session report: the same", async () => {
      await postXml(
        server.base,
        kfSample.replace("fromuser", FOLLOWER).replace(
          "1399197672",
          String(Math.floor(Date.now() / 1000)),
        ),
      );
      await page.locator(".system-entry", { hasText: "test1@test" }).waitFor();
      await settled(page);
      assert.equal(await page.locator("#new-pill").isVisible(), false);
      assert.equal(await systemUnseen(page), unseen);
    });

    await t.step("the follower's next message is one new message", async () => {
      await postXml(
        server.base,
        followerXml(FOLLOWER, {
          ToUserName: "gh_21ee2dc92d7d",
          MsgType: "text",
          Content: "在吗",
        }),
      );
      await page.locator("#new-pill", { hasText: "New messages ↓" }).waitFor({ timeout: 10_000 });
      // Both reports are in the thread, above it.
      await page.locator("#new-pill").click();
      await page.locator(".msg.in", { hasText: "在吗" }).waitFor();
      await page.locator("#messages .msg", { hasText: "reported their location" }).waitFor();
      await page.locator("#messages .msg", { hasText: "test1@test" }).waitFor();
    });

    await t.step("a move is shown at once", async () => {
      await postXml(server.base, report(5, 0.01));
      await page.locator("#conv-place", { hasText: "30.45, 116.65" }).waitFor();
      assert.equal(await systemUnseen(page), unseen);
    });

    await t.step("after a reload, from GET contacts, with a map link", async () => {
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
      await page.locator("#conv-place", { hasText: "30.45, 116.65" }).waitFor();
      assert.equal(
        await place.getAttribute("href"),
        "https://uri.amap.com/marker?position=116.654735,30.453105",
      );
      assert.equal(await place.getAttribute("target"), "_blank");
      assert.match((await place.getAttribute("rel")) ?? "", /\bnoopener\b/);
      // When, and how precise: the title says.
      assert.match((await place.getAttribute("title")) ?? "", /2703 m/);
    });

    await t.step("in Chinese", async () => {
      await page.evaluate(`localStorage.setItem("wxbridge.lang", "zh-CN")`);
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
      await page.locator("#conv-place", { hasText: "30.45, 116.65" }).waitFor();
      assert.match((await place.getAttribute("title")) ?? "", /精度 2703 米/);
    });
  },
);

consoleTest(
  "the system list: notices counted until it is opened, reports marked and counted nowhere",
  { agent: AGENT },
  async (t, { server, page }) => {
    const entry = page.locator(".system-entry");
    await postXml(
      server.base,
      followerXml(FOLLOWER, { ToUserName: "gh_21ee2dc92d7d", MsgType: "text", Content: "你好" }),
    );
    await entry.locator(".unread", { hasText: "1" }).waitFor();

    await t.step("the account's own send result: marked a report, not counted", async () => {
      const massSend = await fixture("senparc/mass_send_job_finish.xml");
      await postXml(
        server.base,
        massSend.replace("1394524295", String(Math.floor(Date.now() / 1000))),
      );
      await entry.locator(".report-tag", { hasText: "Report" }).waitFor();
      assert.match(await entry.innerText(), /Mass send 1988 finished/);
      assert.equal(await systemUnseen(page), "1", "the assignment alone is counted");
    });

    await t.step("a follower's LOCATION: the same", async () => {
      await postXml(server.base, report());
      await entry.filter({ hasText: "reported their location" }).locator(".report-tag").waitFor();
      assert.equal(await systemUnseen(page), "1");
    });

    await t.step("opened: the count clears; the thread marks the reports alone", async () => {
      await entry.click();
      await page.locator("#messages .msg.note", { hasText: "Mass send 1988 finished" }).waitFor();
      assert.equal(await systemUnseen(page), "");
      const marked = await page.evaluate(`[...document.querySelectorAll("#messages .msg.note")]
        .map((n) => n.dataset.event + ":" + Boolean(n.querySelector(".report-tag")))`);
      assert.deepEqual(marked, ["assigned:false", "MASSSENDJOBFINISH:true", "LOCATION:true"]);
      const tag = page.locator("#messages .report-tag").first();
      assert.match((await tag.getAttribute("title")) ?? "", /not counted/);
      await screenshot(page, "console-laptop-system-reports");
    });

    await t.step("away from it, a notice counts again and a report does not", async () => {
      await page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
      await postXml(server.base, report(5, 0.01));
      await page.locator("#conv-place", { hasText: "30.45, 116.65" }).waitFor();
      await settled(page);
      assert.equal(await systemUnseen(page), "");
      await postXml(
        server.base,
        followerXml("oSecond", { ToUserName: "gh_21ee2dc92d7d", MsgType: "text", Content: "在" }),
      );
      await entry.locator(".unread", { hasText: "1" }).waitFor();
      // The newest is a notice: nothing marks it a report.
      assert.equal(await entry.locator(".report-tag").count(), 0);
    });

    await t.step("a reload keeps the count the list shows, and the list opened", async () => {
      await settled(page);
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await entry.filter({ hasText: "oSecond" }).waitFor();
      assert.equal(await systemUnseen(page), "1", "the notice is still unread");
      await entry.click();
      await page.locator("#messages .msg.note", { hasText: "oSecond" }).waitFor();
      await page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await entry.filter({ hasText: "oSecond" }).waitFor();
      assert.equal(await systemUnseen(page), "", "read before the reload");
    });
  },
);
