// A Redis that cannot be reached (killed, here) is an outage, not a bug: every webhook is
// answered 503 with Retry-After (WeChat retries it, a balancer moves on), not a 500 with a stack
// trace logged for each; the process keeps serving; once Redis is back WeChat's retry is taken.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { freePort } from "../helpers/spawn.ts";
import { startBridge } from "../helpers/server.ts";
import { canRunRedisServer, openStoreOnPort, startRedis, stopRedis } from "./_redis_test_env.ts";

const B = "/im_component/wx_official_account";

Deno.test({
  name: "Redis unreachable: webhooks answered 503 with Retry-After, then taken once it is back",
  ignore: !await canRunRedisServer(),
  async fn(t) {
    const port = freePort();
    let redis = await startRedis(port);
    const store = await openStoreOnPort(port);
    const server = await startBridge({ store });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=UA`);
    const send = (id: string) =>
      post(`${server.base}${B}/send_xml`, textXml("oU", "gh_x", `text ${id}`, id));
    try {
      await t.step("with Redis up, a message is taken", async () => {
        assert.deepEqual(await send("82001"), { status: 200, text: "success" });
        await agent.waitFor((e) => e.data["id"] === "82001", 5000);
      });

      await stopRedis(redis);
      await t.step("with Redis down: 503, Retry-After, and the process still serves", async () => {
        for (const id of ["82002", "82003"]) {
          const res = await fetch(`${server.base}${B}/send_xml`, {
            method: "POST",
            body: textXml("oU", "gh_x", `text ${id}`, id),
          });
          const body = await res.json();
          assert.equal(res.status, 503, JSON.stringify(body));
          assert.equal(res.headers.get("retry-after"), "1");
          assert.match(body.error, /Store unavailable/);
        }
        const health = await fetch(`${server.base}/healthz`);
        await health.body?.cancel();
        assert.equal(health.status, 200);
      });

      redis = await startRedis(port);
      await t.step("once Redis is back, WeChat's retry is taken and shown", async () => {
        const deadline = Date.now() + 15_000;
        let last = await send("82002");
        while (last.text !== "success" && Date.now() < deadline) {
          assert.ok(last.status >= 500, `${last.status} ${last.text}`);
          await new Promise((r) => setTimeout(r, 100));
          last = await send("82002");
        }
        assert.deepEqual(last, { status: 200, text: "success" });
        await agent.waitFor((e) => e.data["id"] === "82002", 5000);
      });
    } finally {
      await agent.close();
      await server.close();
      await stopRedis(redis);
    }
  },
});
