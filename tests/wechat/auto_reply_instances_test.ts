// README: AUTO_REPLY_TEXT is sent "once per follower per 30 minutes". The cooldown is a Map in
// each process (passive_reply.ts), while with REDIS_URL WeChat's callbacks are spread over the
// instances behind the load balancer: a follower writing three lines to a team with nobody
// online gets the auto-reply from each instance the lines reach (two instances: twice within a
// minute). Expected: once per follower per 30 minutes across the instances sharing the Redis
// (the cooldown in the shared store), as the retry keys and client_ids already are.

import assert from "node:assert/strict";
import { post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, rawClient, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const REDIS_URL = await findTestRedis();

Deno.test({
  name: "two instances on one Redis send a follower the auto-reply once per 30 minutes",
  ignore: REDIS_URL === null,
  async fn() {
    const prefix = uniquePrefix("autoreply");
    const env = {
      STORE: "",
      REDIS_URL: `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}`,
      AUTO_REPLY_TEXT: "我们的客服暂时不在，稍后回复您",
    };
    const a = await startBridge({ env });
    const b = await startBridge({ env });
    try {
      const answers: string[] = [];
      // Nobody is online; the follower writes three lines, which the balancer spreads.
      for (const [i, server] of [a, b, a].entries()) {
        const res = await post(
          `${server.base}${B}/send_xml`,
          textXml("oAuto", "gh_acct", `line ${i}`, String(8840000 + i)),
        );
        assert.equal(res.status, 200, res.text);
        answers.push(res.text);
      }
      const autoReplies = answers.filter((t) => t.includes("我们的客服暂时不在")).length;
      assert.equal(
        autoReplies,
        1,
        `the follower got the auto-reply ${autoReplies} times: ${JSON.stringify(answers)}`,
      );
      // The cooldown is the store's, under its prefix, and lapses after the 30 minutes.
      const redis = rawClient(REDIS_URL!);
      try {
        const ttl = await redis.pttl(`${prefix}auto_reply:oAuto`);
        assert.ok(ttl > 29 * 60_000 && ttl <= 30 * 60_000, `cooldown PTTL ${ttl}`);
      } finally {
        await redis.quit();
      }
    } finally {
      await a.close();
      await b.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
