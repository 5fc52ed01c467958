// docs/redis.md: deploy with a rolling restart; a reply the console sends again after its socket
// moved (the same client_id) is not sent twice, whichever instance it reaches. A client_id is now
// taken per conversation (`client_id:<agent>:<follower>\0<client_id>`), and the instances still
// on the version before took `client_id:<agent>:<client_id>`: during the restart that moves the
// sockets from the old instances to the new ones, neither saw the other's, and a reply the
// console sent again went to the follower twice. The old instance is played here by its key in
// Redis, as it writes it; the new one is a real bridge on that Redis.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, rawClient, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const APPID = "wxrolling";
const SECRET = "secret";
const REDIS_URL = await findTestRedis();

Deno.test({
  name: "a client_id an instance of the version before took is not sent again by a new one",
  ignore: REDIS_URL === null,
  async fn() {
    const prefix = uniquePrefix("client-id-rolling");
    const redisUrl = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
      encodeURIComponent(prefix)
    }`;
    const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
    const server = await startBridge({
      env: {
        STORE: "",
        REDIS_URL: redisUrl,
        WECHAT_APPID: APPID,
        WECHAT_SECRET: SECRET,
        WECHAT_API_BASE: fake.url,
      },
    });
    const redis = rawClient(REDIS_URL!);
    const reply = (clientId: string, content: string) =>
      fetch(`${server.base}${B}/send?userid=A`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          data: { msg_type: "text", contact_id: "oRoll", client_id: clientId, msg: { content } },
        }),
      });
    try {
      const res = await post(
        `${server.base}${B}/send_xml`,
        textXml("oRoll", "gh_x", "hi", "8500001"),
      );
      assert.equal(res.text, "success");

      // An old instance took c-old and is sending it; the console, moved here, sends it again.
      await redis.set(`${prefix}client_id:1:A:c-old`, crypto.randomUUID(), "PX", 60_000);
      const again = await reply("c-old", "the reply");
      const body = await again.json();
      assert.equal(again.status, 202, JSON.stringify(body));
      assert.equal(body.data.status, "sending");
      assert.deepEqual(fake.sent, [], "the old instance sends it; this one must not");

      // This one takes c-new; the console, moved to an old instance, sends it again there.
      const sent = await reply("c-new", "another reply");
      assert.equal(sent.status, 200, await sent.text());
      assert.equal(fake.sent.length, 1);
      const oldTakes = await redis.set(`${prefix}client_id:1:A:c-new`, "old", "PX", 60_000, "NX");
      assert.equal(oldTakes, null, "an old instance would take c-new and send it again");
    } finally {
      await redis.quit();
      await server.close();
      await fake.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
