// A client_id's release that Redis ran but whose answer the refusing instance never had (the
// connection dropped on the way back) is owed, and tried again. Meanwhile the agent sent the
// same client_id to the other instance, which claimed it and sent the reply. The owed release,
// landing late, deleted that claim whoever held it: the same client_id sent again (the console
// resends what it saw no echo of) was claimed anew and reached the follower twice. Now a
// release gives back only the claim its own instance holds.
//
// Two bridges on one redis-server of the test's own: A on a Redis user of its own, whose
// commands the test refuses (ACL) to stand for Redis being away from A alone; B on another.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { freePort } from "../helpers/spawn.ts";
import { startBridge, type TestBridge, waitRouted } from "../helpers/server.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { createRedisStore } from "../../src/store/redis_store.ts";
import { createSendGate } from "./_reply_env.ts";
import {
  canRunRedisServer,
  openStoreOnPort,
  rawClient,
  startRedis,
  stopRedis,
} from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);
const available = await canRunRedisServer();

const send = (server: TestBridge, data: Record<string, unknown>) =>
  fetch(`${server.base}${B}/send?userid=qa`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ data }),
  });

Deno.test({
  name: "a release owed by one instance does not free the claim the other took since",
  ignore: !available,
  async fn() {
    const port = freePort();
    const redis = await startRedis(port);
    const admin = rawClient(`redis://127.0.0.1:${port}`);
    await admin.call("ACL", "SETUSER", "a", "on", ">a-pass", "~*", "&*", "+@all");
    const refuseA = (sign: "+" | "-") =>
      admin.call("ACL", "SETUSER", "a", `${sign}hget`, `${sign}eval`, `${sign}evalsha`);
    const files = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response(PNG, { headers: { "content-type": "image/png" } }),
    );
    const fake = await startFakeWechat({ appId: "wxlate", secret: "s" });
    const env = { WECHAT_APPID: "wxlate", WECHAT_SECRET: "s", WECHAT_API_BASE: fake.url };
    const gate = createSendGate("/cgi-bin/media/upload");
    const a = await startBridge({
      store: await createRedisStore({
        url: `redis://a:a-pass@127.0.0.1:${port}`,
        companyId: "",
        now: Date.now,
        newId: () => crypto.randomUUID(),
        dedupTtlMs: 3600_000,
        heartbeatMs: 500,
      }),
      env: { ...env, MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}` },
      fetch: gate.fetch,
    });
    const b = await startBridge({ store: await openStoreOnPort(port), env });
    const agent = await connectAgent(`${a.wsBase}${B}/msg?userid=qa`);
    try {
      await waitRouted(a, "qa");
      const hi = await post(`${a.base}${B}/send_xml`, textXml("oLate", "gh", "hi", "8860001"));
      assert.equal(`${hi.status} ${hi.text}`, "200 success");
      await agent.waitFor((e) => e.data["id"] === "8860001");

      // A claims c-1, then Redis stops answering A: the reply is refused, its release owed.
      const held = gate.holdNext();
      const first = send(a, {
        msg_type: "image",
        contact_id: "oLate",
        client_id: "c-1",
        msg: { media_url: `http://127.0.0.1:${files.addr.port}/pic.png` },
      });
      await held;
      await refuseA("-");
      gate.release();
      assert.equal((await first).status, 503);
      // What A's release did in Redis, though A never heard it: the claim is gone.
      await admin.del("bridge:client_id:2:qa:oLate\u0000c-1", "bridge:client_id:2:qa:c-1");

      // The agent's next try reaches B, which claims c-1 and sends it.
      const onB = await send(b, {
        msg_type: "text",
        contact_id: "oLate",
        client_id: "c-1",
        msg: { content: "the picture, in words" },
      });
      assert.equal(onB.status, 200, await onB.text());
      assert.equal(fake.sent.length, 1);

      // Redis answers A again; the console sends c-1 once more (no echo seen), to A.
      await refuseA("+");
      const again = await send(a, {
        msg_type: "text",
        contact_id: "oLate",
        client_id: "c-1",
        msg: { content: "the picture, in words" },
      });
      await again.body?.cancel();
      assert.equal(fake.sent.length, 1, "the follower got the reply twice");
    } finally {
      gate.release();
      await refuseA("+").catch(() => {});
      admin.disconnect();
      await agent.close();
      await a.close();
      await b.close();
      await fake.close();
      await files.shutdown();
      await stopRedis(redis);
    }
  },
});
