// The console's attachments: a file picked, pasted or dropped waits in the composer with its
// preview until Send (a wrong screenshot went to the customer at once, past recall), then goes
// to POST upload and out as an image, voice or video reply; the console shows it inline as it
// does text replies, and the follower simulator shows what the follower got. Demo mode (no
// WeChat credentials): the bridge keeps the files.

import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import type { Page, Request } from "playwright-core";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startBridge } from "../helpers/server.ts";
import {
  B,
  browserTest,
  leaving,
  makeMp4,
  makePng,
  openConsole,
  openPage,
  openTab,
  postFollowerMessage,
  screenshot,
} from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agent1";

interface Frame {
  data: {
    msg_type: string;
    contact_id: string;
    client_id: string;
    msg: { media_id?: string; media_url?: string };
  };
  result: { code: number };
}

/** Records the replies the page writes on its agent socket (commands left out). */
function replyFrames(page: Page): Frame[] {
  const frames: Frame[] = [];
  page.on("websocket", (ws) => {
    ws.on("framesent", (frame) => {
      const parsed = JSON.parse(String(frame.payload));
      if (parsed?.result?.code >= 1001) frames.push(parsed);
    });
  });
  return frames;
}

/** Records the page's requests to POST upload. */
function uploadRequests(page: Page): Request[] {
  const requests: Request[] = [];
  page.on("request", (req) => {
    if (req.method() === "POST" && new URL(req.url()).pathname === `${B}/upload`) {
      requests.push(req);
    }
  });
  return requests;
}

/** Waits until an <img> in the page has loaded at the given width (not a broken image). */
async function imageLoaded(page: Page, selector: string, width: number): Promise<void> {
  await page.waitForFunction(
    `[...document.querySelectorAll(${
      JSON.stringify(selector)
    })].some((i) => i.complete && i.naturalWidth === ${width})`,
  );
}

browserTest(
  "console sends a picture through the attach button, and the follower sees it",
  async (t, browser) => {
    const server = await startBridge();
    const FOLLOWER = "oAttachMei01";
    try {
      const { page } = await openPage(browser);
      const frames = replyFrames(page);
      const uploads = uploadRequests(page);
      await openConsole(page, server.base, AGENT);

      const sim = await openPage(browser);
      await sim.page.goto(`${server.base}/console/follower`);
      await sim.page.locator("#follower-id").fill(FOLLOWER);
      await sim.page.locator("#follower-name").fill("Mei 美");
      await sim.page.getByRole("button", { name: "Switch" }).click();
      await sim.page.locator("#text").fill("The receipt you sent is blank?");
      await sim.page.locator("#text").press("Enter");
      await sim.page.locator('.row.mine[data-state="sent"]').waitFor();

      await page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
      await page.locator(".msg.in", { hasText: "The receipt you sent is blank?" }).waitFor();

      const png = await makePng(240, 160);
      let mediaUrl = "";

      await t.step("the upload shows its progress, then the picture shows as sent", async () => {
        // The upload is held until the page has shown it in progress.
        let release = () => {};
        const held = new Promise<void>((resolve) => release = resolve);
        await page.route(`**${B}/upload?*`, async (route) => {
          await held;
          await route.continue();
        }, { times: 1 });
        await page.getByRole("button", { name: "Attach a picture, voice file or video" })
          .waitFor();
        await page.locator("#attach-input").setInputFiles({
          name: "receipt.png",
          mimeType: "image/png",
          buffer: Buffer.from(png),
        });
        // Picked, it waits in the composer with its preview: nothing is uploaded or sent yet.
        await imageLoaded(page, ".staged-item img", 240);
        await page.locator(".staged-item", { hasText: "receipt.png" }).waitFor();
        await screenshot(page, "console-laptop-attach-staged");
        assert.equal(uploads.length, 0, "uploaded before Send");
        assert.equal(frames.length, 0, "sent before Send");
        await page.locator("#send-button").click();
        await page.locator("#staged").waitFor({ state: "hidden" });
        const uploading = page.locator('.msg.out[data-status="uploading"]');
        await uploading.locator('[role="progressbar"]').waitFor();
        await uploading.locator(".status", { hasText: /Uploading|Waiting to upload/ }).waitFor();
        // The picture shows at once, from the chosen file.
        await imageLoaded(page, '.msg.out[data-status="uploading"] img', 240);
        await screenshot(page, "console-laptop-attach-uploading");
        assert.equal(frames.length, 0, "the reply went out before its upload finished");
        release();

        const sent = page.locator('.msg.out.type-image[data-status="sent"]');
        await sent.locator(".status", { hasText: "Sent" }).waitFor();
        assert.equal(frames.length, 1, JSON.stringify(frames));
        const frame = frames[0]!;
        assert.equal(frame.result.code, 1002);
        assert.equal(frame.data.msg_type, "image");
        assert.equal(frame.data.contact_id, FOLLOWER);
        assert.match(frame.data.client_id, /^c-/);
        assert.match(frame.data.msg.media_id ?? "", /^demo_/);
        mediaUrl = frame.data.msg.media_url ?? "";
        assert.match(mediaUrl, /^http:\/\/127\.0\.0\.1:\d+\/media\//);
        // Once sent, it shows from media_url, as the other tabs and the history show it.
        await sent.locator(`img[src="${mediaUrl}"]`).waitFor();
        await imageLoaded(page, '.msg.out[data-status="sent"] img', 240);

        assert.equal(uploads.length, 1);
        const url = new URL(uploads[0]!.url());
        assert.equal(url.searchParams.get("userid"), AGENT);
        assert.equal(url.searchParams.get("filename"), "receipt.png");
        const headers = await uploads[0]!.allHeaders();
        assert.equal(headers["content-type"], "image/png");
        assert.equal(headers["authorization"], undefined, "no token here, so no bearer");
        assert.match(
          await page.locator(`.contact[data-contact-id="${FOLLOWER}"] .contact-preview`)
            .innerText(),
          /^You: \[Image\]/,
        );
      });

      await t.step("the simulator shows the picture, and media_url serves the file", async () => {
        const reply = sim.page.locator('.row.reply[data-msg-type="image"]');
        await reply.locator(`img[src="${mediaUrl}"]`).waitFor();
        await imageLoaded(sim.page, '.row.reply[data-msg-type="image"] img', 240);
        const res = await fetch(mediaUrl);
        assert.equal(res.status, 200);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), png);
      });

      await t.step("a file of the wrong type shows the bridge's 415 message", async () => {
        // A text file renamed .png: the browser calls it image/png, its bytes say otherwise.
        await page.locator("#attach-input").setInputFiles({
          name: "notes.png",
          mimeType: "image/png",
          buffer: Buffer.from("These are my notes, not a picture.\n"),
        });
        await page.locator("#reply").press("Enter");
        const failed = page.locator('.msg.out[data-status="failed"]');
        await failed.locator(".status", { hasText: "Not sent" }).waitFor();
        const text = await failed.locator(".failure").innerText();
        assert.match(text, /^Upload refused \(415\): Cannot upload application\/octet-stream/);
        assert.match(text, /image\/jpeg, image\/png/);
        assert.match(await failed.locator(".file-name").innerText(), /^notes\.png$/);
        assert.equal(frames.length, 1, "a refused upload sent a reply");
        assert.equal(
          await uploads.at(-1)!.headerValue("content-type"),
          "application/octet-stream",
        );
        await screenshot(page, "console-laptop-attach-refused");
        await failed.getByRole("button", { name: "Remove" }).click();
        await failed.waitFor({ state: "detached" });
      });

      await t.step("after a reload the picture is still there, from the history", async () => {
        await page.reload();
        await page.locator('#conn[data-state="connected"]').waitFor();
        await page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
        const sent = page.locator('.msg.out.type-image[data-status="sent"]');
        await sent.locator(`img[src="${mediaUrl}"]`).waitFor();
        await imageLoaded(page, '.msg.out[data-status="sent"] img', 240);
        assert.equal(await page.locator(".msg.out").count(), 1);
        await page.locator("#reply").fill("Here it is again, with the amount circled.");
        await screenshot(page, "console-laptop-attach-sent");
      });

      await t.step("on a phone, the sent picture fits the conversation", async () => {
        const phone = await openPage(browser, "phone");
        await openConsole(phone.page, server.base, AGENT);
        await phone.page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
        await imageLoaded(phone.page, '.msg.out[data-status="sent"] img', 240);
        const box = await phone.page.locator('.msg.out[data-status="sent"] img').boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= 390, JSON.stringify(box));
        await phone.page.getByRole("button", { name: "Attach a picture, voice file or video" })
          .waitFor();
        await screenshot(phone.page, "console-phone-attach-sent");
        await screenshot(sim.page, "follower-laptop-picture-reply");
      });
    } finally {
      await server.close();
    }
  },
);

browserTest(
  "console sends a pasted picture and dropped voice and video, with its token",
  async (t, browser) => {
    const secret = "browser-attach-secret-0123456789abcdef";
    const server = await startBridge({ env: { AGENT_SECRET: secret } });
    const FOLLOWER = "oAttachDrop02";
    try {
      const token = await mintAgentToken(secret, AGENT, 600);
      const { page } = await openPage(browser);
      await page.addInitScript(
        `localStorage.setItem(${JSON.stringify(`wxbridge.token:${AGENT}`)}, ${
          JSON.stringify(token)
        })`,
      );
      const frames = replyFrames(page);
      const uploads = uploadRequests(page);
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, FOLLOWER, {
        MsgType: "text",
        Content: "Can you send me the manual?",
      });
      await page.locator(`.contact[data-contact-id="${FOLLOWER}"]`).click();
      await page.locator(".msg.in", { hasText: "Can you send me the manual?" }).waitFor();

      await t.step("a picture pasted waits in the box: removable, sent on Send", async () => {
        const png = await makePng(120, 90);
        // A string runs as an expression in the page: the DOM's types are not Deno's.
        const paste = () =>
          page.evaluate(`(() => {
          const box = document.querySelector("#reply");
          const bytes = Uint8Array.from(atob(${
            JSON.stringify(Buffer.from(png).toString("base64"))
          }), (c) => c.charCodeAt(0));
          const data = new DataTransfer();
          data.items.add(new File([bytes], "image.png", { type: "image/png" }));
          box.dispatchEvent(new ClipboardEvent("paste", {
            clipboardData: data, bubbles: true, cancelable: true,
          }));
        })()`);
        await paste();
        const item = page.locator(".staged-item", { hasText: "image.png" });
        await imageLoaded(page, ".staged-item img", 120);
        // The wrong screenshot: taken off before it went anywhere.
        await item.getByRole("button", { name: "Remove image.png" }).click();
        await item.waitFor({ state: "detached" });
        assert.equal(await page.evaluate(`document.activeElement?.id`), "reply");
        await paste();
        await imageLoaded(page, ".staged-item img", 120);
        assert.deepEqual([uploads.length, frames.length], [0, 0], "sent before Send");
        await page.locator("#reply").press("Enter");
        await imageLoaded(page, '.msg.out.type-image[data-status="sent"] img', 120);
        assert.equal(await page.locator("#reply").inputValue(), "");
        assert.equal(frames.at(-1)?.result.code, 1002);
        assert.equal(await uploads.at(-1)!.headerValue("authorization"), `Bearer ${token}`);
        assert.equal(new URL(uploads.at(-1)!.url()).searchParams.get("filename"), "image.png");
      });

      await t.step("voice and video dropped are staged, then sent in order", async () => {
        // AMR: its header and a second of 12.2 kbit/s frames (browsers do not play it).
        const amr = new Uint8Array(6 + 50 * 32);
        amr.set(new TextEncoder().encode("#!AMR\n"));
        for (let i = 0; i < 50; i++) amr[6 + i * 32] = 0x3c;
        const mp4 = await makeMp4();
        const files = [
          // Browsers often know no type for .amr: the console reads it from the bytes.
          { name: "hello.amr", type: "", bytes: amr },
          { name: "how-to.mp4", type: "video/mp4", bytes: mp4 },
        ].map((f) => ({ ...f, bytes: Buffer.from(f.bytes).toString("base64") }));
        await page.evaluate(`(() => {
          const target = document.querySelector(".messages");
          const data = new DataTransfer();
          for (const f of ${JSON.stringify(files)}) {
            const bytes = Uint8Array.from(atob(f.bytes), (c) => c.charCodeAt(0));
            data.items.add(new File([bytes], f.name, { type: f.type }));
          }
          globalThis.__drop = data;
          target.dispatchEvent(new DragEvent("dragenter", {
            dataTransfer: data, bubbles: true, cancelable: true,
          }));
        })()`);
        await page.locator("#drop-zone", { hasText: `Drop to attach for ${FOLLOWER}` }).waitFor();
        await screenshot(page, "console-laptop-attach-drop");
        await page.evaluate(`document.querySelector(".messages").dispatchEvent(
          new DragEvent("drop", { dataTransfer: globalThis.__drop, bubbles: true, cancelable: true }),
        )`);
        await page.locator("#drop-zone").waitFor({ state: "hidden" });
        await page.locator(".staged-item", { hasText: "how-to.mp4" }).waitFor();
        assert.equal(await page.locator(".staged-item").count(), 2);
        assert.equal(frames.length, 1, "sent before Send");
        await page.locator("#send-button").click();
        const voice = page.locator('.msg.out.type-voice[data-status="sent"]');
        const video = page.locator('.msg.out.type-video[data-status="sent"]');
        await voice.waitFor();
        await video.waitFor();
        // AMR does not play in Chromium: the file is offered as a link instead of a player.
        await voice.locator(".media-fallback").waitFor();
        await page.waitForFunction(
          "document.querySelector('.msg.out.type-video video')?.readyState >= 1",
        );
        const [, voiceFrame, videoFrame] = frames;
        assert.equal(frames.length, 3, JSON.stringify(frames));
        assert.deepEqual(
          [voiceFrame!.data.msg_type, voiceFrame!.result.code],
          ["voice", 1003],
        );
        assert.deepEqual(
          [videoFrame!.data.msg_type, videoFrame!.result.code],
          ["video", 1004],
        );
        assert.equal(await uploads[1]!.headerValue("content-type"), "audio/amr");
        assert.equal(await uploads[2]!.headerValue("content-type"), "video/mp4");
        for (const upload of uploads) {
          assert.equal(await upload.headerValue("authorization"), `Bearer ${token}`);
        }
        const res = await fetch(videoFrame!.data.msg.media_url!);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), mp4);
        await page.evaluate(`(() => {
          const box = document.querySelector(".messages");
          box.scrollTop = box.scrollHeight;
        })()`);
        await screenshot(page, "console-laptop-attach-media");
      });

      await t.step("the simulator shows the picture, the voice and the video", async () => {
        const sim = await openPage(browser);
        // A page of its own (no console storage): the demo routes need the agent's token.
        await sim.page.goto(`${server.base}/console/follower?follower=${FOLLOWER}&token=${token}`);
        await imageLoaded(sim.page, '.row.reply[data-msg-type="image"] img', 120);
        await sim.page.locator('.row.reply[data-msg-type="voice"]')
          .locator("audio[controls], .media-link").waitFor();
        await sim.page.waitForFunction(
          "document.querySelector('.row.reply[data-msg-type=\"video\"] video')?.readyState >= 1",
        );
        await screenshot(sim.page, "follower-laptop-media-replies");
      });
    } finally {
      await server.close();
    }
  },
);

consoleTest(
  "a picture put in the box and not sent: leaving asks first, removed it does not",
  { agent: AGENT },
  async (t, { server, context, page }) => {
    await postFollowerMessage(server.base, "oKeep", { MsgType: "text", Content: "图呢" });
    const put = async (tab: Page) => {
      // A click: Chrome asks before leaving only a page the agent has used.
      await tab.locator('.contact[data-contact-id="oKeep"]').click();
      await tab.locator("#attach-input").setInputFiles({
        name: "order.png",
        mimeType: "image/png",
        buffer: Buffer.from(await makePng(200, 120)),
      });
      await tab.locator(".staged-item", { hasText: "order.png" }).waitFor();
    };
    await t.step("staged, it is only in this page: leaving asks", async () => {
      await put(page);
      assert.equal(await leaving(page), "beforeunload");
    });
    await t.step("removed, the page closes without a word", async () => {
      const other = await openTab(context);
      await openConsole(other, server.base, AGENT);
      await put(other);
      await other.getByRole("button", { name: "Remove order.png" }).click();
      await other.locator("#staged").waitFor({ state: "hidden" });
      assert.equal(await leaving(other), "closed");
    });
  },
);
