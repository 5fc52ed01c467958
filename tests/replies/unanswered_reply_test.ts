// A reply on its way to WeChat when the bridge was killed (kill -9, a crash, the OOM killer)
// stayed "sending" in history for good: the console showed it on its way after every reload,
// and its agent was never told. Now the next start fails it as not confirmed (WeChat was asked,
// it may have reached the follower) and tells its agent, with its client_id, as of any failed
// reply. main.ts on its default store, against the fake WeChat, as an agent over a real socket.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { killBridge, spawnBridge, waitReady } from "../helpers/spawn.ts";
import { SEND } from "./_reply_env.ts";
import { UNANSWERED_ERROR } from "../../src/replies/unanswered_replies.ts";

const B = "/im_component/wx_official_account";

Deno.test("a reply WeChat had not answered when main.ts was killed: the next start fails it as not confirmed and tells its agent", async () => {
  const fake = await startFakeWechat({ appId: "wxunanswered", secret: "s" });
  const dataDir = await Deno.makeTempDir({ prefix: "unanswered-" });
  const env = {
    DATA_DIR: dataDir,
    STORE: "",
    WECHAT_APPID: "wxunanswered",
    WECHAT_SECRET: "s",
    WECHAT_API_BASE: fake.url,
    LOG_LEVEL: "warn",
  };
  let bridge = spawnBridge(env);
  let agent: TestAgent | null = null;
  try {
    await waitReady(bridge);
    agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa`);
    const res = await post(`${bridge.base}${B}/send_xml`, textXml("oLeft", "gh", "在吗", "7701"));
    assert.equal(`${res.status} ${res.text}`, "200 success");
    await agent.waitFor((e) => e.data["id"] === "7701");
    // WeChat takes the send and does not answer before the kill.
    fake.delay(SEND, 8_000);
    agent.send({
      data: { msg_type: "text", contact_id: "oLeft", client_id: "c-left", msg: { content: "在" } },
      result: { code: 1001, message: "common" },
    });
    const deadline = Date.now() + 10_000;
    while (!fake.calls.some((c) => `/${c.path}` === SEND)) {
      assert.ok(Date.now() < deadline, "the send reached WeChat");
      await new Promise((r) => setTimeout(r, 20));
    }
    await agent.close();
    agent = null;
    await killBridge(bridge, "SIGKILL");

    bridge = spawnBridge(env);
    await waitReady(bridge);
    agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa&since=1`);
    const failed = (e: Received) => e.data["client_id"] === "c-left" && e.result.code === -1;
    const told = await agent.waitFor(failed, 10_000);
    assert.equal(told.data["msg_type"], "error", JSON.stringify(told));
    assert.equal(told.data["unconfirmed"], true);
    assert.equal(told.data["errmsg"], UNANSWERED_ERROR);
    const url = `${bridge.base}${B}/history?userid=qa&contact_id=oLeft&limit=10`;
    const body = await (await fetch(url)).json() as { messages: Array<Record<string, unknown>> };
    const item = body.messages.find((m) => m["client_id"] === "c-left");
    assert.deepEqual(
      [item?.["status"], item?.["unconfirmed"], item?.["error"]],
      ["failed", true, UNANSWERED_ERROR],
    );
    assert.equal(told.data["reply_id"], item?.["id"]);
    // Told once: a later sweep (and the next start) finds nothing left.
    await agent.close();
    agent = null;
    await killBridge(bridge, "SIGTERM");
    bridge = spawnBridge(env);
    await waitReady(bridge);
    agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa&since=1`);
    await agent.waitFor(failed, 10_000);
    // The log replayed (the echo, the failure); a settle at this start would come after them.
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(agent.received.filter(failed).length, 1, "told once");
  } finally {
    await agent?.close();
    await killBridge(bridge, "SIGTERM");
    await fake.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
