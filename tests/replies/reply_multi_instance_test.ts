// Agents' replies with two bridges on one Redis behind a round-robin proxy, as main.ts
// processes. An agent whose socket dropped reconnects through the proxy, often to the other
// instance, and the console sends again every reply it had not seen echoed: the same
// `client_id` must still reach WeChat once. And a rolling restart (SIGTERM) lets the replies an
// instance was sending finish, so the follower gets each once and the agent hears it was sent.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { killBridge, spawnBridge, type SpawnedBridge, waitReady } from "../helpers/spawn.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const B = "/im_component/wx_official_account";
const AGENT_SECRET = "reply-multi-instance-test-secret-0123456789";

/** Two main.ts on one Redis key prefix and one fake WeChat; all removed after `fn`. */
async function withTwoInstances(
  name: string,
  fn: (
    a: SpawnedBridge,
    b: SpawnedBridge,
    fake: Awaited<ReturnType<typeof startFakeWechat>>,
  ) => Promise<void>,
): Promise<void> {
  const prefix = uniquePrefix(name);
  const redisUrl = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
    encodeURIComponent(prefix)
  }`;
  const fake = await startFakeWechat({ appId: "wxreplies", secret: "secret" });
  const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const bridges = dirs.map((dir) =>
    spawnBridge({
      REDIS_URL: redisUrl,
      STORE: "",
      DATA_DIR: dir,
      AGENT_SECRET,
      WECHAT_APPID: "wxreplies",
      WECHAT_SECRET: "secret",
      WECHAT_API_BASE: fake.url,
      LOG_LEVEL: "error",
    })
  );
  try {
    await Promise.all(bridges.map(waitReady));
    await fn(bridges[0]!, bridges[1]!, fake);
  } finally {
    await Promise.all(bridges.map((b) => killBridge(b, "SIGTERM")));
    await fake.close();
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
    await flushPrefix(REDIS_URL!, prefix);
  }
}

const reply = (follower: string, clientId: string, content: string) => ({
  data: { msg_type: "text", contact_id: follower, client_id: clientId, msg: { content } },
  result: { code: 1001, message: "common" },
});

const isSent = (clientId: string) => (e: Received) =>
  e.data.msg?.["event"] === "reply_sent" && e.data.msg?.["client_id"] === clientId;

Deno.test({
  name: "a reply's client_id sent again to the other instance reaches WeChat once",
  ignore: REDIS_URL === null,
  async fn() {
    await withTwoInstances("replyonce", async (a, b, fake) => {
      const token = await mintAgentToken(AGENT_SECRET, "alice", 600);
      const onA = await connectAgent(`${a.wsBase}${B}/msg?token=${token}`);
      try {
        const hello = await post(
          `${a.base}${B}/send_xml`,
          textXml("oOnce", "gh_x", "hi", "9400001"),
        );
        assert.equal(`${hello.status} ${hello.text}`, "200 success");
        await onA.waitFor((e) => e.data.msg?.["content"] === "hi");
        onA.send(reply("oOnce", "c-once", "on my way"));
        await onA.waitFor(isSent("c-once"), 10_000);
      } finally {
        await onA.close();
      }
      // The console did not see the echo before its socket dropped: it sends the reply again,
      // and the proxy puts the new socket on B.
      const onB = await connectAgent(`${b.wsBase}${B}/msg?token=${token}`);
      try {
        const again = await post(
          `${b.base}${B}/send`,
          JSON.stringify(reply("oOnce", "c-once", "on my way")),
          { authorization: `Bearer ${token}`, "content-type": "application/json" },
        );
        assert.ok(again.status < 300, `${again.status} ${again.text}`);
        onB.send(reply("oOnce", "c-once", "on my way"));
        // A reply with a new client_id behind them: once it is at WeChat, the others would be.
        onB.send(reply("oOnce", "c-next", "anything else?"));
        await onB.waitFor(isSent("c-next"), 10_000);
      } finally {
        await onB.close();
      }
      assert.deepEqual(
        fake.sent.map((s) => (s["text"] as { content: string }).content),
        ["on my way", "anything else?"],
      );
    });
  },
});

Deno.test({
  name: "SIGTERM while a reply is at WeChat: it finishes, once, and the agent hears so elsewhere",
  ignore: REDIS_URL === null,
  async fn() {
    await withTwoInstances("replyrestart", async (a, b, fake) => {
      const token = await mintAgentToken(AGENT_SECRET, "alice", 600);
      const onA = await connectAgent(`${a.wsBase}${B}/msg?token=${token}`);
      let lastSeq = 0;
      try {
        const hello = await post(
          `${a.base}${B}/send_xml`,
          textXml("oSlow", "gh_x", "hi", "9400002"),
        );
        assert.equal(`${hello.status} ${hello.text}`, "200 success");
        await onA.waitFor((e) => e.data.msg?.["content"] === "hi");
        // WeChat is slow today: the reply is still on its way when the restart begins.
        fake.delay("cgi-bin/message/custom/send", 1_500);
        onA.send(reply("oSlow", "c-slow", "on my way"));
        const echo = await onA.waitFor((e) => e.data["client_id"] === "c-slow");
        lastSeq = echo.data.seq!;
        assert.equal((await a.stop()).code, 0);
        assert.equal((await onA.closed).code, 1012);
      } finally {
        await onA.close();
      }
      const onB = await connectAgent(`${b.wsBase}${B}/msg?token=${token}&since=${lastSeq}`);
      try {
        await onB.waitFor(isSent("c-slow"), 10_000);
      } finally {
        await onB.close();
      }
      assert.equal(fake.sent.length, 1);
      const history = await fetch(`${b.base}${B}/history?contact_id=oSlow`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const items = (await history.json()).messages as Array<Record<string, unknown>>;
      assert.deepEqual(
        items.filter((i) => i["client_id"] === "c-slow").map((i) => i["status"]),
        ["sent"],
      );
    });
  },
});
