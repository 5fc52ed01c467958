// A reply typed while the agent's socket was down was kept in the page only: a reload (natural
// when the connection seems stuck) or a closed tab lost it without a word, while the agent
// believed it would go. Now it is stored until the bridge has it, shown after a reload as
// waiting with a Cancel, sent under its own client_id when the socket is back (once, whichever
// tabs are open; by another tab once the one it was typed in is reloaded or closed), never sent
// once cancelled, and not sent by itself once over a day old. A picture uploaded while the socket
// was down is a reply like a text: kept and sent the same way.

import assert from "node:assert/strict";
import type { Page, WebSocketRoute } from "playwright-core";
import type { FakeWechat } from "../../tools/fake_wechat.ts";
import { connectRoutedAgent, type TestBridge } from "../helpers/server.ts";
import {
  B,
  leaving,
  makePng,
  openConsole,
  openTab,
  postFollowerMessage,
  waitUntil,
} from "./browser.ts";
import { type ConsoleSession, consoleTest, wechatConsoleTest } from "./console_session.ts";

const AGENT = "agentOut";
const F = "oOutbox";

/**
 * The agent's network for sockets only (HTTP stays up, so a reload loads): `down()` cuts every
 * socket of the pages it routes and refuses new ones, `up()` lets them through. It records the
 * reply frames each page wrote to the bridge, and `deaf` drops what the bridge sends back.
 */
function socketNetwork() {
  const net = {
    blocked: false,
    deaf: false,
    /** client_id of each reply frame the bridge got, with the tab it came from */
    replies: [] as Array<{ tab: string; clientId: string; content: unknown }>,
    open: new Set<{ page: WebSocketRoute; server: WebSocketRoute }>(),
    async route(page: Page, tab: string) {
      await page.routeWebSocket(/\/msg\?/, (ws) => {
        if (net.blocked) {
          ws.close({ code: 1011, reason: "network down" });
          return;
        }
        const server = ws.connectToServer();
        const pair = { page: ws, server };
        net.open.add(pair);
        ws.onMessage((frame) => {
          const data = JSON.parse(String(frame))?.data ?? {};
          if (data.msg_type === "text" && data.contact_id === F) {
            net.replies.push({ tab, clientId: data.client_id, content: data.msg?.content });
          }
          server.send(frame);
        });
        server.onMessage((frame) => {
          if (!net.deaf) ws.send(frame);
        });
        ws.onClose(() => net.open.delete(pair));
      });
    },
    async down() {
      net.blocked = true;
      for (const pair of [...net.open]) {
        net.open.delete(pair);
        await pair.server.close().catch(() => {});
        await pair.page.close({ code: 1011, reason: "network down" }).catch(() => {});
      }
    },
    up() {
      net.blocked = false;
    },
  };
  return net;
}

/** Every test here: a bridge sending to a fake WeChat, the agent's page not yet open (its
 * sockets are routed first). */
const OUTBOX = { agent: AGENT, appId: "wxoutbox", open: false } as const;

/** What WeChat was asked to send to the follower, texts in order. */
function sentTexts(fake: FakeWechat): string[] {
  return fake.sent
    .filter((body) => body["touser"] === F)
    .map((body) => String((body["text"] as { content?: string } | undefined)?.content ?? ""));
}

/** The follower's history at the bridge: our replies' texts, oldest first. */
async function historyReplies(server: TestBridge): Promise<string[]> {
  const res = await fetch(`${server.base}${B}/history?userid=${AGENT}&contact_id=${F}&limit=50`);
  assert.equal(res.status, 200);
  const { messages } = await res.json();
  return messages
    .filter((m: { direction: string }) => m.direction === "out")
    .map((m: { msg: { content: string } }) => m.msg.content);
}

/** The stored replies (localStorage) the page sees. */
async function storedReplies(page: Page): Promise<string[]> {
  return await page.evaluate(`Object.keys(localStorage)
    .filter((k) => k.startsWith("wxbridge.outbox:"))`) as string[];
}

async function openFollower(page: Page): Promise<void> {
  await page.locator(`.contact[data-contact-id="${F}"]`).click();
  await page.locator(".msg.in", { hasText: "订单还没到" }).waitFor();
}

/** Two tabs of the agent on F's conversation, their sockets through one `net`. A frame reaches
 * both sockets first: each knows a seq, so each reconnects with since= and hears the echo of a
 * reply sent while it reconnected (a tab opened after the follower's message knew none and
 * reconnected blind, reading history instead: refused it, it stayed "sending" when its socket
 * opened after the echo, and a test failed at random). `initScript` runs in both. */
async function twoTabs({ context, page: one, server }: ConsoleSession, initScript?: string) {
  if (initScript) await context.addInitScript(initScript);
  const two = await openTab(context);
  const net = socketNetwork();
  await net.route(one, "one");
  await net.route(two, "two");
  await onFollower(one, server);
  await openConsole(two, server.base, AGENT);
  await openFollower(two);
  await postFollowerMessage(server.base, F, { MsgType: "text", Content: "还在吗" });
  for (const page of [one, two]) await page.locator(".msg.in", { hasText: "还在吗" }).waitFor();
  return { one, two, net };
}

/** One tab of the agent on F's conversation, its sockets through `net`. */
async function oneTab({ page, server }: ConsoleSession) {
  const net = socketNetwork();
  await net.route(page, "one");
  await onFollower(page, server);
  return net;
}

/** The console reconnecting on its own after the network came back (the Retry button). */
async function reconnect(page: Page): Promise<void> {
  const connected = page.locator('#conn[data-state="connected"]');
  const deadline = Date.now() + 10_000;
  // The button hides while the page tries on its own: clicked only while it shows.
  while (!(await connected.isVisible())) {
    if (Date.now() > deadline) throw new Error("the console never connected again");
    await page.locator("#conn-retry").click({ timeout: 200 }).catch(() => {});
    await page.waitForTimeout(50);
  }
}

/** Types a reply in the open conversation while the socket is down: it waits, stored. */
async function typeWhileDown(page: Page, text: string): Promise<void> {
  await page.locator("#reply").fill(text);
  await page.locator("#reply").press("Enter");
  await page.locator('.msg.out[data-status="sending"]', { hasText: text })
    .locator(".status", { hasText: "Waiting for connection" }).waitFor();
}

/** The console open on F's conversation, F having written first. */
async function onFollower(page: Page, server: TestBridge) {
  await openConsole(page, server.base, AGENT);
  await postFollowerMessage(server.base, F, { MsgType: "text", Content: "订单还没到" });
  await openFollower(page);
}

/** The network goes down: every one of `pages` says it is not connected. */
async function goOffline(net: ReturnType<typeof socketNetwork>, pages: Page[]): Promise<void> {
  await net.down();
  for (const page of pages) await page.locator('#conn:not([data-state="connected"])').waitFor();
}

/** The network comes back: `pages` reconnect (one after the other, or `atOnce`), and each shows
 * `text` sent, when given. */
async function comeBack(
  net: ReturnType<typeof socketNetwork>,
  pages: Page[],
  options: { text?: string; atOnce?: boolean } = {},
): Promise<void> {
  net.up();
  if (options.atOnce) await Promise.all(pages.map(reconnect));
  else for (const page of pages) await reconnect(page);
  if (options.text === undefined) return;
  for (const page of pages) {
    await page.locator('.msg.out[data-status="sent"]', { hasText: options.text }).waitFor();
  }
}

/** The tabs that wrote each frame of reply `text` to the bridge, once time enough has passed
 * for a second to have reached WeChat; WeChat's texts are checked to be `wechat`. */
async function sentFrom(
  page: Page,
  { fake, net }: { fake: FakeWechat; net: ReturnType<typeof socketNetwork> },
  text: string,
  wechat: string[],
): Promise<string[]> {
  await page.waitForTimeout(1000);
  assert.deepEqual(sentTexts(fake), wechat);
  return net.replies.filter((r) => r.content === text).map((r) => r.tab);
}

wechatConsoleTest(
  "a reply typed offline survives a reload and reaches WeChat once",
  OUTBOX,
  async (t, session) => {
    const { fake, server, page } = session;
    const net = await oneTab(session);
    const text = "退款已经原路退回，请留意";

    await t.step("typed while the socket is down, then reloaded: it waits there", async () => {
      await goOffline(net, [page]);
      await typeWhileDown(page, text);
      await page.reload();
      await openFollower(page);
      const waiting = page.locator('.msg.out[data-status="sending"]', { hasText: text });
      await waiting.locator(".status", { hasText: "Waiting for connection…" }).waitFor();
      await waiting.getByRole("button", { name: "Cancel" }).waitFor();
      assert.equal(await page.locator(".msg.out", { hasText: text }).count(), 1);
      assert.deepEqual(sentTexts(fake), []);
    });

    await t.step("the socket back: sent once, under the client_id it was typed with", async () => {
      await comeBack(net, [page], { text });
      assert.deepEqual(await sentFrom(page, { fake, net }, text, [text]), ["one"]);
      assert.deepEqual(await storedReplies(page), []);
    });

    await t.step("reloaded again: the history holds it once", async () => {
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await openFollower(page);
      await page.locator('.msg.out[data-status="sent"]', { hasText: text }).waitFor();
      assert.equal(await page.locator(".msg.out", { hasText: text }).count(), 1);
      assert.deepEqual(await historyReplies(server), [text]);
    });

    await t.step(
      "written just before the reload, its echo lost: the next page sends nothing more",
      async () => {
        const late = "发票明天寄出";
        // The bridge gets the frame, the page hears nothing back (the socket dying as it went).
        net.deaf = true;
        await page.locator("#reply").fill(late);
        await page.locator("#reply").press("Enter");
        await waitUntil(
          () => sentTexts(fake).includes(late),
          () => `WeChat never got the reply: ${JSON.stringify(fake.sent)}`,
        );
        await page.locator('.msg.out[data-status="sending"]', { hasText: late }).waitFor();
        net.deaf = false;
        // Loaded at the list, its conversation not opened (no history read for the page).
        await openConsole(page, server.base, AGENT);
        await page.waitForFunction(`!Object.keys(localStorage)
          .some((k) => k.startsWith("wxbridge.outbox:"))`);
        assert.deepEqual(await sentFrom(page, { fake, net }, late, [text, late]), ["one"]);
        await openFollower(page);
        await page.locator('.msg.out[data-status="sent"]', { hasText: late }).waitFor();
        assert.equal(await page.locator(".msg.out", { hasText: late }).count(), 1);
        assert.deepEqual(await storedReplies(page), []);
        assert.deepEqual(await historyReplies(server), [text, late]);
      },
    );
  },
);

wechatConsoleTest(
  "a picture uploaded while the socket is down survives a reload too",
  OUTBOX,
  async (_t, session) => {
    const { fake, page } = session;
    const net = await oneTab(session);
    await goOffline(net, [page]);
    // The upload is HTTP, which works: the reply waits only for the socket.
    await page.locator("#attach-input").setInputFiles({
      name: "size-chart.png",
      mimeType: "image/png",
      buffer: Buffer.from(await makePng(200, 120)),
    });
    // Picked, it waits in the composer: Send sends it.
    await page.locator("#send-button").click();
    await page.locator('.msg.out.type-image[data-status="sending"]')
      .locator(".status", { hasText: "Waiting for connection" }).waitFor();
    await page.reload();
    await openFollower(page);
    await page.locator('.msg.out.type-image[data-status="sending"]')
      .locator(".status", { hasText: "Waiting for connection" }).waitFor();
    await comeBack(net, [page]);
    await page.locator('.msg.out.type-image[data-status="sent"]').waitFor();
    await page.waitForTimeout(1000);
    const images = fake.sent.filter((body) => body["touser"] === F && body["msgtype"] === "image");
    assert.equal(images.length, 1, JSON.stringify(fake.sent));
    assert.equal(await page.locator(".msg.out.type-image").count(), 1);
    assert.deepEqual(await storedReplies(page), []);
  },
);

wechatConsoleTest(
  "two tabs of the agent: a stored reply is sent by one of them, once",
  OUTBOX,
  async (t, session) => {
    const { fake } = session;
    const { one, two, net } = await twoTabs(session);
    const first = "第一条：已安排补发";
    const second = "第二条：快递单号稍后发您";

    await t.step("typed in one tab while down: the other shows it waiting too", async () => {
      await goOffline(net, [one, two]);
      await typeWhileDown(one, first);
      await two.locator('.msg.out[data-status="sending"]', { hasText: first })
        .locator(".status", { hasText: "Waiting for connection" }).waitFor();
    });

    await t.step("both tabs reconnect at once: WeChat gets it once", async () => {
      // The other tab cannot read the history either (a proxy refusing it): only the rule of
      // which tab sends keeps it from sending the reply too.
      await two.route(`**${B}/history?*`, (route) => route.abort("connectionreset"));
      await comeBack(net, [one, two], { text: first, atOnce: true });
      assert.equal((await sentFrom(one, { fake, net }, first, [first])).length, 1);
      await two.unroute(`**${B}/history?*`);
    });

    await t.step(
      "the tab that typed it reloads while down: the other takes it over, sent once",
      async () => {
        await goOffline(net, [one, two]);
        await typeWhileDown(one, second);
        await two.locator('.msg.out[data-status="sending"]', { hasText: second }).waitFor();
        await one.reload();
        await openFollower(one);
        await one.locator('.msg.out[data-status="sending"]', { hasText: second }).waitFor();
        await comeBack(net, [one, two], { text: second });
        assert.equal((await sentFrom(one, { fake, net }, second, [first, second])).length, 1);
        assert.deepEqual(await storedReplies(one), []);
      },
    );

    await t.step("the tab that typed it is closed while down: the other sends it", async () => {
      const third = "第三条：有问题随时找我";
      await goOffline(net, [one, two]);
      await typeWhileDown(one, third);
      await two.locator('.msg.out[data-status="sending"]', { hasText: third }).waitFor();
      await one.close();
      await comeBack(net, [two], { text: third });
      assert.deepEqual(await sentFrom(two, { fake, net }, third, [first, second, third]), [
        "two",
      ]);
      assert.deepEqual(await storedReplies(two), []);
    });
  },
);

wechatConsoleTest(
  "without Web Locks (plain http on a LAN address) a stored reply still reaches WeChat once",
  OUTBOX,
  async (_t, session) => {
    // As a page on http://10.0.0.5:1234 has it: no navigator.locks outside a secure context.
    const { one, two, net } = await twoTabs(
      session,
      `Object.defineProperty(Navigator.prototype, "locks", {
        get: () => undefined, configurable: true })`,
    );
    assert.equal(await one.evaluate("navigator.locks === undefined"), true);
    const text = "没有锁也只发一次";
    await goOffline(net, [one, two]);
    await typeWhileDown(one, text);
    await two.locator('.msg.out[data-status="sending"]', { hasText: text }).waitFor();
    // The page that finds it as it loads sends it; the tab told of it live does not.
    await one.reload();
    await openFollower(one);
    await comeBack(net, [one, two], { text, atOnce: true });
    assert.deepEqual(await sentFrom(one, { fake: session.fake, net }, text, [text]), ["one"]);
  },
);

wechatConsoleTest(
  "a stored reply cancelled in any tab is never sent",
  OUTBOX,
  async (t, session) => {
    const { fake, server } = session;
    const { one, two, net } = await twoTabs(session);
    const text = "这条不要发了";

    await t.step("typed, reloaded, cancelled in the other tab: gone from both", async () => {
      await goOffline(net, [one, two]);
      await typeWhileDown(one, text);
      await one.reload();
      await openFollower(one);
      await one.locator('.msg.out[data-status="sending"]', { hasText: text }).waitFor();
      await cancelIn(two, text);
      await one.locator(".msg.out", { hasText: text }).waitFor({ state: "detached" });
      assert.deepEqual(await storedReplies(one), []);
    });

    await t.step("the socket back: nothing goes to WeChat", async () => {
      await comeBack(net, [one, two]);
      await one.waitForTimeout(1000);
      assert.deepEqual(sentTexts(fake), []);
      assert.deepEqual(net.replies, []);
      await one.reload();
      await openFollower(one);
      assert.equal(await one.locator(".msg.out", { hasText: text }).count(), 0);
      assert.deepEqual(await historyReplies(server), []);
    });
  },
);

wechatConsoleTest(
  "a stored reply cancelled gives the list back what it showed before, in every tab",
  OUTBOX,
  async (t, session) => {
    const { fake, server } = session;
    const { one, two, net } = await twoTabs(session);
    // Another follower wrote after F: above F in the list until the agent answers F.
    await postFollowerMessage(server.base, "oAbove", { MsgType: "text", Content: "我也在等" });
    for (const page of [one, two]) {
      await page.locator('.contact[data-contact-id="oAbove"]').waitFor();
      await listShows(page, ["oAbove", F], "还在吗");
    }
    await goOffline(net, [one, two]);

    await t.step("cancelled in the tab that typed it", async () => {
      await typeWhileDown(one, "马上查");
      // Waiting, it heads the list in every tab, as it ends the thread there.
      for (const page of [one, two]) await listShows(page, [F, "oAbove"], "You: 马上查");
      await cancelIn(one, "马上查");
      for (const page of [one, two]) await listShows(page, ["oAbove", F], "还在吗");
    });

    await t.step("cancelled in the other tab", async () => {
      await typeWhileDown(one, "稍等一下");
      await listShows(two, [F, "oAbove"], "You: 稍等一下");
      await cancelIn(two, "稍等一下");
      for (const page of [one, two]) await listShows(page, ["oAbove", F], "还在吗");
    });

    await t.step("two waiting, the first cancelled, then the second", async () => {
      await typeWhileDown(one, "第一句");
      await typeWhileDown(one, "第二句");
      await cancelIn(two, "第一句");
      for (const page of [one, two]) await listShows(page, [F, "oAbove"], "You: 第二句");
      // What the list showed under the second is the first, cancelled too: what is left.
      await cancelIn(one, "第二句");
      for (const page of [one, two]) await listShows(page, ["oAbove", F], "还在吗");
    });

    await t.step("the socket back: nothing was sent", async () => {
      await comeBack(net, [one, two], { atOnce: true });
      await one.waitForTimeout(500);
      assert.deepEqual(sentTexts(fake), []);
      for (const page of [one, two]) await listShows(page, ["oAbove", F], "还在吗");
    });
  },
);

wechatConsoleTest(
  "a stored reply cancelled in another tab hides no new message below the view",
  OUTBOX,
  async (_t, session) => {
    const { server } = session;
    const { one, two, net } = await twoTabs(session);
    for (let i = 0; i < 30; i++) {
      await postFollowerMessage(server.base, F, { MsgType: "text", Content: `第 ${i} 条` });
    }
    for (const page of [one, two]) await page.locator(".msg.in", { hasText: "第 29 条" }).waitFor();
    await goOffline(net, [one, two]);
    await typeWhileDown(one, "我查一下");
    // Tab one goes up to read what came before; the reply is taken back in tab two.
    await one.bringToFront();
    await one.locator("#messages").hover();
    await one.mouse.wheel(0, -600);
    await one.waitForFunction(`(() => {
      const box = document.querySelector("#messages");
      return box.scrollHeight - box.scrollTop - box.clientHeight > 400;
    })()`);
    await cancelIn(two, "我查一下");
    await one.locator(".msg.out", { hasText: "我查一下" }).waitFor({ state: "detached" });
    await comeBack(net, [one, two], { atOnce: true });
    await postFollowerMessage(server.base, F, { MsgType: "text", Content: "人呢" });
    // Counted among the messages seen, the cancelled reply made this one read as seen.
    await one.locator("#new-pill", { hasText: "New messages" }).waitFor();
  },
);

/** Cancels the waiting reply `text` in `page`, and waits until it is gone from there. */
async function cancelIn(page: Page, text: string): Promise<void> {
  const reply = page.locator(".msg.out", { hasText: text });
  await reply.getByRole("button", { name: "Cancel" }).click();
  await reply.waitFor({ state: "detached" });
}

/** Waits until the list shows `order` (contact ids, top to bottom) and F's preview reads
 * `preview`; failing, says what it shows. */
async function listShows(page: Page, order: string[], preview: string): Promise<void> {
  const shown = `({ order: [...document.querySelectorAll("#contact-list .contact")]
      .map((n) => n.dataset.contactId),
    preview: document.querySelector('.contact[data-contact-id="${F}"] .contact-preview')
      ?.textContent })`;
  const want = JSON.stringify({ order, preview });
  await page.waitForFunction(`JSON.stringify(${shown}) === ${JSON.stringify(want)}`, undefined, {
    timeout: 5000,
  }).catch(async (error) => {
    throw new Error(`the list shows ${JSON.stringify(await page.evaluate(shown))}`, {
      cause: error,
    });
  });
}

wechatConsoleTest(
  "a stored reply over a day old is not sent by itself",
  OUTBOX,
  async (t, session) => {
    const { fake, page } = session;
    const net = await oneTab(session);
    const text = "昨天的回复";

    await t.step("found at load: failed, said so, with Try again and Remove", async () => {
      // As a page left it a day and more ago, the socket down ever since.
      const entry = {
        client_id: "c-yesterday",
        agent_id: AGENT,
        account: "",
        contact_id: F,
        msg_type: "text",
        msg: { content: text },
        queued_at: Date.now() - 25 * 3600_000,
        written: false,
      };
      await page.evaluate(
        ([key, value]) => localStorage.setItem(key!, value!),
        [`wxbridge.outbox:${AGENT}:c-yesterday`, JSON.stringify(entry)],
      );
      await page.reload();
      await page.locator(".toast", { hasText: "typed more than a day ago" }).waitFor();
      await openFollower(page);
      const failed = page.locator('.msg.out[data-status="failed"]', { hasText: text });
      await failed.locator(".failure", { hasText: "more than a day ago" }).waitFor();
      await failed.getByRole("button", { name: "Remove" }).waitFor();
      await page.waitForTimeout(1000);
      assert.deepEqual(sentTexts(fake), []);
      assert.equal(net.replies.length, 0);
    });

    await t.step("Try again sends it, as a new reply", async () => {
      await page.locator(".msg.out", { hasText: text }).locator(".retry-button").click();
      await page.locator('.msg.out[data-status="sent"]', { hasText: text }).waitFor();
      assert.deepEqual(sentTexts(fake), [text]);
      assert.notEqual(net.replies[0]?.clientId, "c-yesterday");
      assert.deepEqual(await storedReplies(page), []);
    });
  },
);

consoleTest(
  "a message to another agent typed offline is not stored, and leaving asks",
  { agent: AGENT, open: false },
  async (_t, { server, page }) => {
    const colleague = await connectRoutedAgent(server, "agentPeer");
    try {
      const net = socketNetwork();
      await net.route(page, "one");
      await openConsole(page, server.base, AGENT);
      colleague.send({
        data: { msg_type: "text", contact_id: AGENT, msg: { content: "oOutbox 交给你了" } },
        result: { code: 1001, message: "common" },
      });
      await page.locator('.contact[data-contact-id="agentPeer"]').click();
      await page.locator(".msg.in", { hasText: "交给你了" }).waitFor();
      await goOffline(net, [page]);
      await typeWhileDown(page, "好的，我来跟进");
      // Stored, every page after would deliver it to the colleague again: nothing takes it once.
      assert.deepEqual(await storedReplies(page), []);
      assert.equal(await leaving(page), "beforeunload");
    } finally {
      await colleague.close();
    }
  },
);
