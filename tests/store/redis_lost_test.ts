// A Redis that comes back empty loses nothing silently: a real redis-server the test starts on its
// own port without persistence, restarted empty mid-test under a real bridge and a real agent
// socket. Every message WeChat posts after the restart (retrying whatever is not `success`, as
// WeChat does) reaches the agent with a seq above every one it had; /readyz and a metric say so.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { freePort } from "../helpers/spawn.ts";
import { startBridge } from "../helpers/server.ts";
import { canRunRedisServer, openStoreOnPort, startRedis, stopRedis } from "./_redis_test_env.ts";

const B = "/im_component/wx_official_account";

const available = await canRunRedisServer();

Deno.test({
  name: "a Redis restarted empty: every message posted after it reaches the agent",
  ignore: !available,
  async fn(t) {
    const port = freePort();
    let redis = await startRedis(port);
    const store = await openStoreOnPort(port);
    const server = await startBridge({ store });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=RA`);
    /** Posts as WeChat does: a refused answer is retried (WeChat: 3 times; here until 15 s). */
    const postUntilSuccess = async (msgId: string) => {
      const statuses: number[] = [];
      const deadline = Date.now() + 15_000;
      for (;;) {
        const res = await post(`${server.base}${B}/send_xml`, textXml("fr", "gh_x", msgId, msgId));
        statuses.push(res.status);
        if (res.status === 200 && res.text === "success") return statuses;
        assert.ok(res.status >= 500, `${res.status} ${res.text}`);
        if (Date.now() > deadline) throw new Error(`never accepted: ${statuses.join(",")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const shown = (msgId: string) => agent.waitFor((e) => e.data["id"] === msgId, 5000);
    try {
      let before = 0;
      await t.step("before the restart, messages are shown", async () => {
        for (const id of ["81001", "81002", "81003"]) {
          await postUntilSuccess(id);
          before = Math.max(before, (await shown(id)).data.seq!);
        }
      });

      await stopRedis(redis);
      redis = await startRedis(port);

      const after: number[] = [];
      const refused: number[] = [];
      await t.step("every message posted after it is shown, with a higher seq", async () => {
        for (let i = 4; i <= 10; i++) {
          const id = String(81000 + i);
          const statuses = await postUntilSuccess(id);
          refused.push(...statuses.filter((s) => s !== 200));
          after.push((await shown(id)).data.seq!);
        }
        assert.equal(after.length, 7);
        assert.ok(after[0]! > before, `seq ${after[0]} after ${before}`);
        assert.deepEqual(after, [...after].sort((a, b) => a - b), "seqs keep increasing");
      });

      await t.step(
        "operators are told: the metric counts the loss, /readyz is ready again",
        async () => {
          const metrics = await (await fetch(`${server.base}/metrics`)).text();
          const lost = Number(/^bridge_store_state_lost_total (\d+)/m.exec(metrics)?.[1]);
          assert.ok(lost >= 1, metrics);
          const ready = await fetch(`${server.base}/readyz`);
          assert.equal(ready.status, 200, await ready.text());
        },
      );
    } finally {
      await agent.close();
      await server.close();
      await stopRedis(redis);
    }
  },
});
