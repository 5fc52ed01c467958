import assert from "node:assert/strict";
import type { WebSocketRoute } from "playwright-core";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { startBridge } from "../helpers/server.ts";

/** The bridge's environment for talking to a fake WeChat. */
const fakeWechatEnv = (fake: FakeWechat) => ({
  WECHAT_APPID: "wxconsole",
  WECHAT_SECRET: "secret",
  WECHAT_API_BASE: fake.url,
});
import {
  B,
  browserTest,
  contactsOf,
  makeMp4,
  makePng,
  openConsole,
  openPage,
  postFollowerMessage,
  screenshot,
  waitUntil,
} from "./browser.ts";
import { consoleTest } from "./console_session.ts";

const AGENT = "agent1";

consoleTest(
  "console shows a follower's message and sends a reply with Enter",
  { agent: AGENT },
  async (t, { server, page, browser }) => {
    const alice = page.locator('.contact[data-contact-id="oAlice"]');

    await t.step(
      "a follower's message appears in the list, unread, with its window",
      async () => {
        await postFollowerMessage(server.base, "oAlice", {
          MsgType: "text",
          Content: "你好, my order #4821 hasn't arrived",
        });
        await alice.locator(".unread", { hasText: "1" }).waitFor();
        assert.match(await alice.locator(".contact-preview").innerText(), /my order #4821/);
        assert.match(
          await alice.locator(".window-pill").innerText(),
          /^(47h 5\dm|48h 00m) left$/,
        );
      },
    );

    await t.step("opening it shows the message and marks it read", async () => {
      await alice.click();
      await page.locator(".msg.in", { hasText: "你好, my order #4821 hasn't arrived" }).waitFor();
      assert.equal(await page.locator("#conv-name").innerText(), "oAlice");
      assert.equal(await page.locator(".day span").first().innerText(), "Today");
      assert.equal(await alice.locator(".unread").count(), 0);
      await waitUntil(
        async () =>
          (await contactsOf(server.base, AGENT)).find((c) => c.contact_id === "oAlice")
            ?.unread === 0,
        () => "the bridge still counts oAlice's message as unread: no read command?",
      );
    });

    await t.step(
      "Shift+Enter starts a new line, Enter sends, and the reply shows sent",
      async () => {
        const reply = page.locator("#reply");
        await reply.click();
        await page.keyboard.type("Let me check.");
        await page.keyboard.press("Shift+Enter");
        await page.keyboard.type("我来查一下。");
        assert.equal(await reply.inputValue(), "Let me check.\n我来查一下。");
        assert.equal(await page.locator(".msg.out").count(), 0);
        await page.keyboard.press("Enter");
        assert.equal(await reply.inputValue(), "");
        const sent = page.locator('.msg.out[data-status="sent"]');
        await sent.waitFor();
        assert.equal(await sent.locator(".text").innerText(), "Let me check.\n我来查一下。");
        assert.equal(await sent.locator(".status").innerText(), "Sent");
        const res = await fetch(`${server.base}${B}/demo/replies?contact_id=oAlice&since=0`);
        const { replies } = await res.json();
        assert.equal(replies.length, 1);
        assert.deepEqual(replies[0].msg, { content: "Let me check.\n我来查一下。" });
        assert.match(await alice.locator(".contact-preview").innerText(), /^You: Let me check\./);
      },
    );

    await t.step("a second follower and system messages show up", async () => {
      await postFollowerMessage(server.base, "oWang", {
        MsgType: "text",
        Content: "请问发票怎么开？",
      });
      await page.locator('.contact[data-contact-id="oWang"] .unread').waitFor();
      await postFollowerMessage(server.base, "oWang", {
        MsgType: "event",
        Event: "LOCATION",
        Latitude: "31.2304",
        Longitude: "121.4737",
        Precision: "65",
      });
      await page.locator('.contact[data-contact-id="system01"] .contact-preview', {
        hasText: /./,
      }).waitFor();
      // The list keeps the open conversation selected; the newest contact is on top.
      assert.equal(
        await page.locator("#contact-list .contact").first().getAttribute("data-contact-id"),
        "oWang",
      );
      await page.locator('.contact[data-contact-id="oAlice"].active').waitFor();
      await screenshot(page, "console-laptop");
    });

    await t.step(
      "a message from another agent opens a conversation with that agent",
      async () => {
        const colleague = new WebSocket(`${server.wsBase}${B}/msg?userid=agent2`);
        const received: string[] = [];
        colleague.onmessage = (event) => received.push(String(event.data));
        const closed = new Promise((resolve) => colleague.onclose = resolve);
        try {
          await new Promise((resolve, reject) => {
            colleague.onopen = resolve;
            colleague.onerror = reject;
          });
          colleague.send(JSON.stringify({
            data: {
              msg_type: "text",
              contact_id: AGENT,
              msg: { content: "Can you take oWang?" },
            },
            result: { code: 1001, message: "common" },
          }));
          const entry = page.locator('.contact[data-contact-id="agent2"]');
          await entry.locator(".window-pill", { hasText: "Agent" }).waitFor();
          // The bridge keeps no history between agents: asked for one, it answered 404 and
          // the thread opened under "Could not load the conversation: No contact agent2".
          const asked: string[] = [];
          const onRequest = (req: { url(): string }) => {
            const url = new URL(req.url());
            if (url.pathname.endsWith("/history")) {
              asked.push(url.searchParams.get("contact_id")!);
            }
          };
          page.on("request", onRequest);
          await entry.click();
          await page.locator(".msg.in", { hasText: "Can you take oWang?" }).waitFor();
          await page.locator("#reply").fill("Sure, 没问题");
          await page.locator("#reply").press("Enter");
          await page.locator('.msg.out[data-status="sent"]', { hasText: "Sure, 没问题" })
            .waitFor();
          await waitUntil(
            () => received.some((frame) => frame.includes("Sure, 没问题")),
            () => `agent2 did not get the answer: ${received.join("\n")}`,
          );
          page.off("request", onRequest);
          assert.deepEqual(asked.filter((id) => id === "agent2"), []);
          assert.equal(await page.locator(".history-edge.error").count(), 0);
        } finally {
          colleague.close();
          await closed;
        }
        await alice.click();
      },
    );

    await t.step("on a phone, the list and the conversation take turns", async () => {
      const phone = await openPage(browser, "phone");
      await openConsole(phone.page, server.base, AGENT);
      const list = phone.page.locator(".contacts-pane");
      const conversation = phone.page.locator(".conversation-pane");
      await list.waitFor();
      assert.equal(await conversation.isVisible(), false);
      await screenshot(phone.page, "console-phone-list");
      await phone.page.locator('.contact[data-contact-id="oAlice"]').click();
      await phone.page.locator('.msg.out[data-status="sent"]').waitFor();
      assert.equal(await list.isVisible(), false);
      await screenshot(phone.page, "console-phone-conversation");
      await phone.page.getByRole("button", { name: "Back to conversations" }).click();
      await list.waitFor();
      assert.equal(await conversation.isVisible(), false);
      // The phone's own back gesture does the same.
      await phone.page.locator('.contact[data-contact-id="oWang"]').click();
      await phone.page.locator(".msg.in", { hasText: "请问发票怎么开？" }).waitFor();
      await phone.page.goBack();
      await list.waitFor();
      assert.equal(await conversation.isVisible(), false);
    });
  },
);

browserTest("console shows WeChat's reason when a reply is refused", async (t, browser) => {
  const fake = await startFakeWechat({ appId: "wxconsole", secret: "secret" });
  fake.failNext(
    "/cgi-bin/message/custom/send",
    45015,
    "response out of time limit or subscription is canceled",
    100,
  );
  const server = await startBridge({ env: fakeWechatEnv(fake) });
  try {
    const { page } = await openPage(browser);
    await openConsole(page, server.base, AGENT);
    await postFollowerMessage(server.base, "oBob", { MsgType: "text", Content: "hello?" });
    await page.locator('.contact[data-contact-id="oBob"]').click();
    await page.locator(".msg.in", { hasText: "hello?" }).waitFor();

    await t.step("the reply is marked not delivered, with errcode and errmsg", async () => {
      await page.locator("#reply").fill("Sorry for the wait");
      await page.locator("#reply").press("Enter");
      const failed = page.locator('.msg.out[data-status="failed"]');
      await failed.waitFor();
      assert.equal(await failed.locator(".status").innerText(), "Not delivered");
      assert.equal(
        await failed.locator(".failure").innerText(),
        "WeChat refused the reply: response out of time limit or subscription is canceled (45015)",
      );
    });

    await t.step("it stays failed after a reload (from history)", async () => {
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator('.contact[data-contact-id="oBob"]').click();
      const failed = page.locator('.msg.out[data-status="failed"]');
      await failed.waitFor();
      assert.match(await failed.locator(".failure").innerText(), /response out of time limit/);
    });
  } finally {
    await server.close();
    await fake.close();
  }
});

browserTest(
  "console refuses to reply outside the 48-hour window and says why",
  async (t, browser) => {
    let offsetMs = -49 * 3600_000;
    const server = await startBridge({ now: () => Date.now() + offsetMs });
    try {
      const { page } = await openPage(browser);
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oOld", {
        MsgType: "text",
        Content: "an old question",
      });
      offsetMs = 0;
      const contact = page.locator('.contact[data-contact-id="oOld"]');
      await contact.waitFor();

      await t.step("the list and the conversation say the window is closed", async () => {
        await contact.locator(".window-pill.closed", { hasText: "Window closed" }).waitFor();
        await contact.click();
        await page.locator("#window-notice", { hasText: "48-hour reply window has closed" })
          .waitFor();
      });

      await t.step("the reply box is disabled, saying why", async () => {
        assert.equal(await page.locator("#reply").isDisabled(), true);
        assert.equal(await page.locator("#send-button").isDisabled(), true);
        assert.equal(
          await page.locator("#composer-reason").innerText(),
          "The reply window is closed",
        );
        assert.equal(
          await page.locator(".toast").count(),
          0,
          "no error toast (typing is not sent outside the window)",
        );
        await screenshot(page, "console-laptop-window-closed");
      });
    } finally {
      await server.close();
    }
  },
);

browserTest("console reconnects with since= after a network drop", async (t, browser) => {
  const server = await startBridge();
  try {
    const { page } = await openPage(browser);
    // Every agent socket goes through here: the test sees the URLs and the seqs, and can cut
    // the connection and refuse new ones as a dead network would.
    const urls: string[] = [];
    let maxSeq = 0;
    let blocked = false;
    let current: WebSocketRoute | null = null;
    await page.routeWebSocket(/\/msg\?/, (ws) => {
      urls.push(ws.url());
      if (blocked) {
        ws.close({ code: 1011, reason: "network down" });
        return;
      }
      const upstream = ws.connectToServer();
      upstream.onMessage((frame) => {
        const seq = JSON.parse(String(frame))?.data?.seq;
        if (typeof seq === "number") maxSeq = Math.max(maxSeq, seq);
        ws.send(frame);
      });
      current = ws;
    });
    await openConsole(page, server.base, AGENT);
    assert.doesNotMatch(urls[0]!, /since=/);
    await postFollowerMessage(server.base, "oCara", { MsgType: "text", Content: "first message" });
    await page.locator('.contact[data-contact-id="oCara"]').click();
    await page.locator(".msg.in", { hasText: "first message" }).waitFor();
    assert.ok(maxSeq > 0, "the bridge sent no seq");
    const seqBeforeDrop = maxSeq;

    await t.step(
      "the drop shows as disconnected, and a reply waits for the connection",
      async () => {
        blocked = true;
        await current!.close({ code: 1011, reason: "network down" });
        await page.locator('#conn[data-state="reconnecting"]').waitFor();
        await page.locator("#conn-label", { hasText: /Disconnected|Reconnecting/ }).waitFor();
        await page.locator("#reply").fill("sent while offline");
        await page.locator("#reply").press("Enter");
        await page.locator('.msg.out[data-status="sending"]', { hasText: "sent while offline" })
          .locator(".status", { hasText: "Waiting for connection" }).waitFor();
        await postFollowerMessage(server.base, "oCara", {
          MsgType: "text",
          Content: "written during the drop",
        });
        await page.locator("#conn-retry").waitFor();
        await screenshot(page, "console-laptop-disconnected");
      },
    );

    await t.step(
      "reconnecting with since= brings what was missed and sends the reply",
      async () => {
        blocked = false;
        await page.locator("#conn-retry").click();
        await page.locator('#conn[data-state="connected"]').waitFor();
        const last = new URL(urls.at(-1)!);
        assert.equal(last.searchParams.get("userid"), AGENT);
        assert.equal(Number(last.searchParams.get("since")), seqBeforeDrop, urls.join("\n"));
        await page.locator(".msg.in", { hasText: "written during the drop" }).waitFor();
        await page.locator('.msg.out[data-status="sent"]', { hasText: "sent while offline" })
          .waitFor();
        assert.equal(await page.locator(".msg.in", { hasText: "first message" }).count(), 1);
        const { replies } =
          await (await fetch(`${server.base}${B}/demo/replies?contact_id=oCara&since=0`)).json();
        assert.deepEqual(replies.map((r: { msg: { content: string } }) => r.msg.content), [
          "sent while offline",
        ]);
      },
    );
  } finally {
    await server.close();
  }
});

browserTest("console asks for a token when the server requires one", async (t, browser) => {
  const secret = "browser-test-secret-0123456789abcdef";
  const server = await startBridge({ env: { AGENT_SECRET: secret } });
  try {
    const { page } = await openPage(browser);
    const authHeaders: Array<string | null> = [];
    page.on("request", (req) => {
      if (req.url().includes(`${B}/contacts`)) {
        authHeaders.push(req.headers()["authorization"] ?? null);
      }
    });
    const socketUrls: string[] = [];
    page.on("websocket", (ws) => socketUrls.push(ws.url()));

    await t.step("a 401 shows the token field", async () => {
      await page.goto(`${server.base}/console?userid=${AGENT}`);
      await page.locator("#token-panel").waitFor();
      await page.locator('#conn[data-state="token"]').waitFor();
      await screenshot(page, "console-laptop-token");
    });

    await t.step("a wrong token is refused and the field stays", async () => {
      await page.locator("#token-input").fill("not-a-token");
      await page.getByRole("button", { name: "Connect" }).click();
      await page.locator("#token-reason", { hasText: "refused" }).waitFor();
    });

    await t.step("a good token connects, is kept, and is sent on socket and HTTP", async () => {
      const token = await mintAgentToken(secret, AGENT, 600);
      await page.locator("#token-input").fill(token);
      await page.getByRole("button", { name: "Connect" }).click();
      await page.locator('#conn[data-state="connected"]').waitFor();
      assert.equal(await page.evaluate(`localStorage.getItem("wxbridge.token:${AGENT}")`), token);
      assert.equal(authHeaders.at(-1), `Bearer ${token}`);
      assert.equal(new URL(socketUrls.at(-1)!).searchParams.get("token"), token);
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      assert.equal(await page.locator("#token-panel").isVisible(), false);
    });
  } finally {
    await server.close();
  }
});

browserTest(
  "console shows voice, video, location, link and failed media readably",
  async (t, browser) => {
    const voice = await Deno.readFile(
      new URL("../fixtures/media/voice.amr", import.meta.url),
    );
    const thumb = await makePng(160, 90);
    const video = await makeMp4(2);
    const files: Record<string, { bytes: Uint8Array; contentType: string }> = {
      voice1: { bytes: voice, contentType: "audio/amr" },
      video1: { bytes: video, contentType: "video/mp4" },
      thumb1: { bytes: thumb, contentType: "image/png" },
    };
    const fake = await startFakeWechat({ appId: "wxconsole", secret: "secret" });
    for (const [id, file] of Object.entries(files)) fake.addMedia(id, file.bytes, file.contentType);
    const server = await startBridge({ env: fakeWechatEnv(fake) });
    try {
      const { page } = await openPage(browser);
      await openConsole(page, server.base, AGENT);
      const F = "oMedia";
      await postFollowerMessage(server.base, F, {
        MsgType: "voice",
        MediaId: "voice1",
        Format: "amr",
        Recognition: "我想查一下订单",
      });
      await page.locator(`.contact[data-contact-id="${F}"]`).click();

      await t.step("voice plays in an audio player, with WeChat's recognition", async () => {
        const audio = page.locator(".msg.type-voice audio[controls]");
        await audio.waitFor();
        await page.locator(".msg.type-voice .recognition", { hasText: "我想查一下订单" }).waitFor();
        await page.waitForFunction("document.querySelector('.msg.type-voice audio').duration > 20");
      });

      await t.step("video plays in a video player with its thumbnail", async () => {
        await postFollowerMessage(server.base, F, {
          MsgType: "video",
          MediaId: "video1",
          ThumbMediaId: "thumb1",
        });
        const player = page.locator(".msg.type-video video[controls]");
        await player.waitFor();
        assert.ok(await player.getAttribute("src"));
        await page.waitForFunction(
          "document.querySelector('.msg.type-video video').readyState >= 1",
        );
      });

      await t.step("location and link read as cards", async () => {
        await postFollowerMessage(server.base, F, {
          MsgType: "location",
          Location_X: "31.230416",
          Location_Y: "121.473701",
          Scale: "15",
          Label: "上海市黄浦区人民广场",
        });
        const location = page.locator(".msg.type-location");
        await location.locator(".card-title", { hasText: "上海市黄浦区人民广场" }).waitFor();
        assert.equal(await location.locator(".card-sub").innerText(), "31.23042, 121.47370");
        assert.match(
          await location.getByRole("link", { name: "Open map" }).getAttribute("href") ?? "",
          /mlat=31\.230416/,
        );
        await postFollowerMessage(server.base, F, {
          MsgType: "link",
          Title: "Delivery FAQ",
          Description: "How long does shipping take?",
          Url: "https://example.com/faq",
        });
        const link = page.locator(".msg.type-link");
        await link.getByRole("link", { name: "Delivery FAQ" }).waitFor();
        assert.equal(await link.locator(".card-sub").innerText(), "How long does shipping take?");
      });

      await t.step("media that could not be fetched says why", async () => {
        await postFollowerMessage(server.base, F, { MsgType: "image", MediaId: "gone" });
        await page.locator(".msg.type-image .media-error", { hasText: "Media unavailable" })
          .waitFor();
        assert.match(
          await page.locator(".msg.type-image .media-error").innerText(),
          /40007|invalid media_id/,
        );
      });
      await page.locator(".messages").evaluate("(box) => { box.scrollTop = box.scrollHeight; }");
      await screenshot(page, "console-laptop-media");
    } finally {
      await server.close();
      await fake.close();
    }
  },
);
