// A shift in the console, in what went wrong for an agent running one: typing a while after the
// follower wrote raised an error, a handed-over conversation reopened after a reload showed the
// bridge's raw 403, WeChat's 45015 left the header counting hours, and a network that dropped
// left the header saying Connected while messages stayed away (until the watchdog, or for good
// when the socket was younger than its first heartbeat, also a page's first socket before any
// heartbeat reached it, and for good from the open conversation when the page had seen no seq
// since a reload); and on a phone with a token, Settings
// (and at 360 px the shortcuts) sat past the screen's edge, out of reach.

import assert from "node:assert/strict";
import type { WebSocketRoute } from "playwright-core";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startBridge } from "../helpers/server.ts";
import {
  B,
  browserTest,
  openConsole,
  openPage,
  postFollowerMessage,
  screenshot,
  socketFrames,
} from "./browser.ts";
import { consoleTest, wechatConsoleTest } from "./console_session.ts";

const AGENT = "agentA";
const AGENT_B = "agentB";

/** Opens agent `userid`'s socket from the test (an agent the bridge then knows) until closed. */
async function agentSocket(wsBase: string, userid: string): Promise<() => Promise<void>> {
  const ws = new WebSocket(`${wsBase}${B}/msg?userid=${userid}`);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  const closed = new Promise((resolve) => ws.onclose = resolve);
  return async () => {
    ws.close();
    await closed;
  };
}

/** The texts of the follower's messages in the open conversation, in the order shown. */
const incomingTexts = (page: import("playwright-core").Page) =>
  page.locator("#messages .msg.in .text").allInnerTexts();

browserTest(
  "typing late and a handed-over conversation after a reload raise no error",
  async (t, browser) => {
    let offsetMs = 0;
    const server = await startBridge({ now: () => Date.now() + offsetMs });
    const closeB = await agentSocket(server.wsBase, AGENT_B);
    try {
      const { page } = await openPage(browser);
      const frames = socketFrames(page);
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oSlow", { MsgType: "text", Content: "在吗？" });
      await page.locator('.contact[data-contact-id="oSlow"]').click();
      await page.locator(".msg.in", { hasText: "在吗？" }).waitFor();

      await t.step("a reply typed a minute after the follower wrote: no error", async () => {
        // WeChat shows typing only within 30 s of a message: the bridge refuses the rest (403),
        // which is no news to the agent, who is only typing.
        offsetMs = 60_000;
        await page.locator("#reply").pressSequentially("稍等，我查一下");
        const refusal = () =>
          frames.received.find((f) => f.result?.code === -1 && f.data?.limit === "typing");
        for (let i = 0; i < 100 && !refusal(); i++) await page.waitForTimeout(50);
        assert.ok(refusal(), "the bridge refused no typing: the step tests nothing");
        await page.locator("#reply").press("Enter");
        await page.locator('.msg.out[data-status="sent"]', { hasText: "稍等，我查一下" }).waitFor();
        assert.deepEqual(await page.locator(".toast").allInnerTexts(), []);
        assert.match(String(refusal()?.data?.client_id), /^cmd-typing-/);
      });

      await t.step("handed over, then reloaded: the notice says where it went", async () => {
        await page.locator("#transfer-button").click();
        await page.locator("#transfer-to").fill(AGENT_B);
        await page.locator("#transfer-submit").click();
        await page.locator("#window-notice", { hasText: `Transferred to ${AGENT_B}` }).waitFor();
        await page.reload();
        await page.locator('#conn[data-state="connected"]').waitFor();
        const entry = page.locator('#transferred-list .contact[data-contact-id="oSlow"]');
        await entry.click();
        await page.locator("#window-notice", { hasText: `Transferred to ${AGENT_B}` }).waitFor();
        // The bridge refuses agentA the history (403) and its read (409): neither is the agent's
        // to fix, so neither shows as an error.
        await page.waitForTimeout(500);
        assert.equal(await page.locator("#messages", { hasText: "Could not load" }).count(), 0);
        assert.deepEqual(await page.locator(".toast").allInnerTexts(), []);
        await screenshot(page, "console-laptop-transferred-reloaded");
      });
    } finally {
      await closeB();
      await server.close();
    }
  },
);

wechatConsoleTest(
  "after WeChat's 45015 the list and the header say the window is closed",
  { agent: AGENT, appId: "wxshift" },
  async (t, { server, fake, page }) => {
    await postFollowerMessage(server.base, "oGone", { MsgType: "text", Content: "订单呢？" });
    const entry = page.locator('.contact[data-contact-id="oGone"]');
    await entry.click();
    await page.locator(".msg.in", { hasText: "订单呢？" }).waitFor();
    fake.failNext(
      "/cgi-bin/message/custom/send",
      45015,
      "response out of time limit or subscription is canceled",
    );
    await page.locator("#reply").fill("您的订单已发货");
    await page.locator("#reply").press("Enter");
    await page.locator('.msg.out[data-status="failed"]', { hasText: "45015" }).waitFor();

    const closedEverywhere = async () => {
      await page.locator("#reply:disabled").waitFor();
      await entry.locator(".window-pill.closed", { hasText: "Window closed" }).waitFor();
      assert.equal(await page.locator("#conv-window").innerText(), "Window closed");
      await page.locator("#window-notice", { hasText: "48-hour reply window has closed" })
        .waitFor();
    };
    await t.step("the reply box, the pill and the header agree at once", closedEverywhere);
    await t.step("and after a reload (GET contacts)", async () => {
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await entry.click();
      await closedEverywhere();
      await screenshot(page, "console-laptop-45015");
    });
  },
);

consoleTest(
  "a network drop: Offline while it lasts, then every message in between, once, in order",
  { agent: AGENT },
  async (t, { server, context, page }) => {
    await postFollowerMessage(server.base, "oNet", { MsgType: "text", Content: "before" });
    await page.locator('.contact[data-contact-id="oNet"]').click();
    await page.locator(".msg.in", { hasText: "before" }).waitFor();
    const during = ["掉线 1 📶", "掉线 2", "掉线 3", "掉线 4", "掉线 5"];

    await t.step("the header says Offline, not Connected", async () => {
      await context.setOffline(true);
      await page.locator('#conn[data-state="offline"]').waitFor();
      for (const text of during) {
        await postFollowerMessage(server.base, "oNet", { MsgType: "text", Content: text });
      }
      await page.waitForTimeout(300);
      assert.deepEqual(await incomingTexts(page), ["before"]);
    });

    await t.step("back online, what came meanwhile shows at once, in order", async () => {
      await context.setOffline(false);
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator(".msg.in", { hasText: "掉线 5" }).waitFor();
      assert.deepEqual(await incomingTexts(page), ["before", ...during]);
      await postFollowerMessage(server.base, "oNet", { MsgType: "text", Content: "after" });
      await page.locator(".msg.in", { hasText: "after" }).waitFor();
      assert.deepEqual(await incomingTexts(page), ["before", ...during, "after"]);
    });
  },
);

browserTest(
  "a socket that goes silent before its first heartbeat is replaced",
  async (t, browser) => {
    const server = await startBridge({ env: { HEARTBEAT_INTERVAL_S: "1" } });
    try {
      const { page } = await openPage(browser);
      // The page's clock runs on its own until told to jump: the watchdog's minute passes at once.
      await page.clock.install();
      const urls: string[] = [];
      let silent = false;
      let first: WebSocketRoute | null = null;
      let heartbeats = 0;
      await page.routeWebSocket(/\/msg\?/, (ws) => {
        urls.push(ws.url());
        // A dead network: the socket stays open and nothing goes either way.
        const dead = silent;
        const upstream = ws.connectToServer();
        upstream.onMessage((frame) => {
          if (dead) return;
          if (JSON.parse(String(frame))?.result?.code === 101) heartbeats += 1;
          ws.send(frame);
        });
        ws.onMessage((frame) => {
          if (!dead) upstream.send(frame);
        });
        first ??= ws;
      });
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oFlap", { MsgType: "text", Content: "one" });
      await page.locator('.contact[data-contact-id="oFlap"]').click();
      await page.locator(".msg.in", { hasText: "one" }).waitFor();
      for (let i = 0; i < 100 && heartbeats === 0; i++) await page.waitForTimeout(50);
      assert.ok(heartbeats > 0, "no heartbeat reached the page");

      await t.step("the network drops, comes back, and drops again at once", async () => {
        silent = true;
        await first!.close({ code: 1011, reason: "network down" });
        await page.locator('#conn[data-state="connected"]').waitFor();
        assert.equal(urls.length, 2);
        await postFollowerMessage(server.base, "oFlap", { MsgType: "text", Content: "two" });
      });

      await t.step("the watchdog's time passes: a new socket brings what was missed", async () => {
        silent = false;
        await page.clock.fastForward(90_000);
        await page.locator(".msg.in", { hasText: "two" }).waitFor();
        assert.equal(urls.length, 3, urls.join("\n"));
        assert.ok(new URL(urls[2]!).searchParams.get("since"), urls[2]);
        assert.deepEqual(await incomingTexts(page), ["one", "two"]);
      });
    } finally {
      await server.close();
    }
  },
);

browserTest(
  "a page's first socket, silent before any heartbeat reached it, is replaced",
  async (_t, browser) => {
    // 30 s heartbeats: the page's first socket takes the first turn, beaten as the bridge
    // started, before the socket was there; its own first heartbeat is 30 s away.
    const server = await startBridge({ env: { HEARTBEAT_INTERVAL_S: "30" } });
    try {
      const { page } = await openPage(browser);
      await page.clock.install();
      const urls: string[] = [];
      let silent = false;
      let heartbeats = 0;
      await page.routeWebSocket(/\/msg\?/, (ws) => {
        urls.push(ws.url());
        const first = urls.length === 1;
        const upstream = ws.connectToServer();
        // The first socket's network dies once told: open, and nothing comes any more.
        upstream.onMessage((frame) => {
          if (first && silent) return;
          if (JSON.parse(String(frame))?.result?.code === 101) heartbeats += 1;
          ws.send(frame);
        });
        ws.onMessage((frame) => upstream.send(frame));
      });
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oEarly", { MsgType: "text", Content: "one" });
      await page.locator('.contact[data-contact-id="oEarly"]').click();
      await page.locator(".msg.in", { hasText: "one" }).waitFor();
      assert.equal(heartbeats, 0, "a heartbeat came: this is not a socket younger than one");
      silent = true;
      await postFollowerMessage(server.base, "oEarly", { MsgType: "text", Content: "two" });
      // Longer than the watchdog's least (75 s) with no frame: a silent socket, not a quiet one.
      await page.clock.fastForward(90_000);
      await page.locator(".msg.in", { hasText: "two" }).waitFor();
      assert.equal(urls.length, 2, urls.join("\n"));
      assert.ok(new URL(urls[1]!).searchParams.get("since"), urls[1]);
      assert.deepEqual(await incomingTexts(page), ["one", "two"]);
    } finally {
      await server.close();
    }
  },
);

browserTest(
  "on a phone with a token, every control of the top bar is on screen",
  async (t, browser) => {
    const secret = "shift-test-secret-0123456789abcdef";
    const server = await startBridge({ env: { AGENT_SECRET: secret } });
    try {
      const token = await mintAgentToken(secret, AGENT, 600);
      for (const width of [390, 360, 320]) {
        await t.step(`${width} px wide`, async () => {
          const { context, page } = await openPage(browser, "phone");
          try {
            await page.setViewportSize({ width, height: 740 });
            await context.addInitScript(
              `localStorage.setItem("wxbridge.token:${AGENT}", ${JSON.stringify(token)})`,
            );
            await openConsole(page, server.base, AGENT);
            for (
              const id of ["capacity-button", "token-button", "help-button", "settings-button"]
            ) {
              const box = await page.locator(`#${id}`).boundingBox();
              assert.ok(
                box && box.x >= 0 && box.x + box.width <= width,
                `#${id} is off screen at ${width} px: ${JSON.stringify(box)}`,
              );
            }
            await page.locator("#settings-button").click();
            await page.locator("#settings-panel").waitFor();
            await screenshot(page, `console-phone-${width}-topbar`);
          } finally {
            await context.close();
          }
        });
      }
    } finally {
      await server.close();
    }
  },
);

/** A frame's `data.seq` (the agent's log position), if it has one. */
function seqOf(frame: string): number | undefined {
  try {
    const seq = JSON.parse(frame)?.data?.seq;
    return typeof seq === "number" ? seq : undefined;
  } catch {
    return undefined;
  }
}

browserTest(
  "a network drop right after a reload, before any seq reached the page, loses nothing",
  async (t, browser) => {
    const server = await startBridge();
    try {
      const { context, page } = await openPage(browser);
      const urls: string[] = [];
      let dead = false;
      /** The seqs of the frames passed on to the page since the reload (it may have closed). */
      let reached: number[] = [];
      /** For each socket the page opened, the seqs that had reached it by then. */
      const reachedBefore: number[][] = [];
      // A dead network: the bridge writes to the socket and thinks it delivered, nothing arrives.
      await page.routeWebSocket(/\/msg\?/, (ws) => {
        urls.push(ws.url());
        reachedBefore.push([...reached]);
        const upstream = ws.connectToServer();
        upstream.onMessage((frame) => {
          const seq = typeof frame === "string" ? seqOf(frame) : undefined;
          if (dead) return;
          if (seq !== undefined) reached.push(seq);
          ws.send(frame);
        });
        ws.onMessage((frame) => {
          if (!dead) upstream.send(frame);
        });
      });
      await openConsole(page, server.base, AGENT);
      await postFollowerMessage(server.base, "oReload", { MsgType: "text", Content: "before" });
      await page.locator('.contact[data-contact-id="oReload"]').waitFor();
      reached = [];
      await page.reload();
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator('.contact[data-contact-id="oReload"]').click();
      await page.locator(".msg.in", { hasText: "before" }).waitFor();

      await t.step("offline, the follower writes, online: it shows, once", async () => {
        dead = true;
        await context.setOffline(true);
        await page.locator('#conn[data-state="offline"]').waitFor();
        await postFollowerMessage(server.base, "oReload", { MsgType: "text", Content: "during" });
        dead = false;
        await context.setOffline(false);
        await page.locator('#conn[data-state="connected"]').waitFor();
        // This page saw no seq: its new socket cannot ask with since= one it never got (a seq
        // it did get after the reload, a replay on a busy machine or the frame of "during" on
        // its way as the network died, it may ask with).
        const since = new URL(urls.at(-1)!).searchParams.get("since");
        const passed = reachedBefore.at(-1)!;
        assert.ok(since === null || passed.includes(Number(since)), `${since}: ${urls.join("\n")}`);
        await page.locator(".msg.in", { hasText: "during" }).waitFor();
        await postFollowerMessage(server.base, "oReload", { MsgType: "text", Content: "after" });
        await page.locator(".msg.in", { hasText: "after" }).waitFor();
        assert.deepEqual(await incomingTexts(page), ["before", "during", "after"]);
      });
    } finally {
      await server.close();
    }
  },
);
