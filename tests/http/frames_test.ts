// Issue 14, item 4: a WebSocket frame larger than the frame limit. Deno buffers a whole message
// before the bridge sees it (denoland/deno#15809): a 60 MB frame grew the process by ~180 MB.
// Now only authenticated sockets are upgraded, and the connection relay measures frames by
// their headers and closes a socket whose message is over 256 KiB before reading it. Checked
// on a main.ts process directly and behind a real nginx running docs/production.md's sample.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startNginx } from "../helpers/nginx.ts";
import { spawnBridge, type SpawnedBridge, waitReady } from "../helpers/spawn.ts";

const B = "/im_component/wx_official_account";
const SECRET = "frames-test-agent-secret-0123456789abcdefghi";
const MB = 1024 * 1024;
/** Before: +180 MB for one 60 MB frame. What the relay leaves is a few MB of buffers. */
const GROWTH_LIMIT = 40 * MB;

/** Sends one `mb` MB text frame; resolves with the close code and the bridge's RSS growth. */
async function sendHugeFrame(bridge: SpawnedBridge, wsBase: string, mb: number) {
  const token = await mintAgentToken(SECRET, "mallory", 600);
  const agent = await connectAgent(`${wsBase}${B}/msg?token=${token}`);
  let closed: CloseEvent | null = null;
  try {
    const before = await bridge.rss();
    agent.socket.send("x".repeat(mb * MB));
    let timer: ReturnType<typeof setTimeout> | undefined;
    closed = await Promise.race([
      agent.closed,
      new Promise<null>((r) => timer = setTimeout(() => r(null), 15_000)),
    ]).finally(() => clearTimeout(timer));
    // Give the bridge a moment to read whatever it was going to read.
    await new Promise((r) => setTimeout(r, 500));
    return { closed: closed !== null, growth: await bridge.rss() - before };
  } finally {
    if (closed === null) await agent.close();
  }
}

/** A follower's message still reaches another agent, through `wsBase`/`base`. */
async function stillServes(base: string, wsBase: string, id: string) {
  const token = await mintAgentToken(SECRET, "alice", 600);
  const alice = await connectAgent(`${wsBase}${B}/msg?token=${token}`);
  try {
    const res = await post(`${base}${B}/send_xml`, textXml(`o${id}`, "alice", `after ${id}`, id));
    assert.equal(`${res.status} ${res.text}`, "200 success");
    await alice.waitFor((e) => e.data.msg?.["content"] === `after ${id}`);
  } finally {
    await alice.close();
  }
}

/** Runs `fn` with a fresh main.ts (each measure starts from a process that never grew). */
async function withBridge(fn: (bridge: SpawnedBridge) => Promise<void>): Promise<void> {
  const bridge = spawnBridge({ AGENT_SECRET: SECRET });
  try {
    await waitReady(bridge);
    await fn(bridge);
  } finally {
    assert.equal((await bridge.stop()).code, 0);
  }
}

Deno.test("a 60 MB WebSocket frame: bounded memory, directly and behind nginx", async (t) => {
  await t.step("without a token nothing is upgraded: no socket to send a frame on", async () => {
    await withBridge(async (bridge) => {
      const res = await fetch(`${bridge.base}${B}/msg?userid=mallory`, {
        headers: {
          connection: "Upgrade",
          upgrade: "websocket",
          "sec-websocket-key": btoa("frames-test-key!"),
          "sec-websocket-version": "13",
        },
      });
      await res.body?.cancel();
      assert.equal(res.status, 401);
    });
  });

  await t.step("directly: the socket is closed and the process grows < 40 MB", async () => {
    await withBridge(async (bridge) => {
      const { closed, growth } = await sendHugeFrame(bridge, bridge.wsBase, 60);
      assert.equal(closed, true, "the socket stayed open");
      assert.ok(growth < GROWTH_LIMIT, `RSS grew ${(growth / MB).toFixed(1)} MB`);
      await stillServes(bridge.base, bridge.wsBase, "95001");
    });
  });

  await t.step(
    "behind docs/production.md's nginx: the same (nginx cannot bound frames)",
    async () => {
      await withBridge(async (bridge) => {
        const nginx = await startNginx(bridge.port);
        if (nginx === null) return; // no nginx, outside CI
        try {
          await stillServes(nginx.base, nginx.wsBase, "95002");
          const { closed, growth } = await sendHugeFrame(bridge, nginx.wsBase, 60);
          assert.equal(closed, true, "the socket stayed open");
          assert.ok(growth < GROWTH_LIMIT, `RSS grew ${(growth / MB).toFixed(1)} MB`);
          await stillServes(nginx.base, nginx.wsBase, "95003");
        } finally {
          await nginx.stop();
        }
      });
    },
  );
});
