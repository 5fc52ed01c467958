// Reports on the account's own sends, retried by WeChat to another instance behind the proxy:
// one report, counted once and shown once, as a follower's retried message is (docs/redis.md).

import assert from "node:assert/strict";
import { connectAgent, post, type Received } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix, waitUntil } from "./_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const B = "/im_component/wx_official_account";

const fixture = (name: string) =>
  Deno.readTextFile(new URL(`../fixtures/wechat/wechatpy/${name}.xml`, import.meta.url));

async function reportCount(server: TestBridge, event: string): Promise<number> {
  const text = await (await fetch(`${server.base}/metrics`)).text();
  const line = text.split("\n").find((l) =>
    l.startsWith(`bridge_account_reports_total{event="${event}"}`)
  );
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

Deno.test({
  name: "a report retried to another instance is one report",
  ignore: REDIS_URL === null,
}, async (t) => {
  const prefix = uniquePrefix("reports");
  const url = `${REDIS_URL}?prefix=${prefix}`;
  const one = await startBridge({ env: { REDIS_URL: url } });
  const two = await startBridge({ env: { REDIS_URL: url } });
  const agent = await connectAgent(`${one.wsBase}${B}/msg?userid=ops`);
  try {
    await waitUntil(
      async () => (await two.store.onlineAgents?.())?.includes("ops") || undefined,
      "ops online on both instances",
    );
    for (
      const [file, event] of [
        ["mass_send_job_finish", "MASSSENDJOBFINISH"],
        ["template_send_job_finish", "TEMPLATESENDJOBFINISH"],
        ["template_subscribe_msg_sent", "subscribe_msg_sent_event"],
      ] as const
    ) {
      await t.step(event, async () => {
        const xml = await fixture(file);
        assert.equal((await post(`${one.base}${B}/send_xml`, xml)).text, "success");
        // WeChat's retry, through the proxy to the other instance.
        assert.equal((await post(`${two.base}${B}/send_xml`, xml)).text, "success");
        assert.equal((await post(`${one.base}${B}/send_xml`, xml)).text, "success");
        const counts = await Promise.all([one, two].map((s) => reportCount(s, event)));
        assert.equal(counts[0]! + counts[1]!, 1, JSON.stringify(counts));
      });
    }
    await t.step("the rare one reached the agent once", async () => {
      // A marker after the reports: whatever they sent the agent has arrived.
      await post(
        `${two.base}${B}/send_xml`,
        `<xml><ToUserName>gh_a</ToUserName><FromUserName>oMark</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>m</Content><MsgId>9101</MsgId></xml>`,
      );
      await agent.waitFor((e) => e.data["id"] === "9101");
      const shown = agent.messages().filter((e: Received) =>
        e.result.code === 102 && e.data.msg?.["event"] === "MASSSENDJOBFINISH"
      );
      assert.equal(shown.length, 1);
    });
  } finally {
    await agent.close();
    await one.close();
    await two.close();
    await flushPrefix(REDIS_URL!, prefix);
  }
});
