// A follower's image, then a text, as WeChat posts them to two instances behind a round-robin
// proxy: the image to one (its media still downloading), the text to the other. Each was
// answered `success`; the agent must read them in the order the follower sent them, as it does
// with one instance (src/media/intake.ts queues a follower's later messages behind its media).
// Fails today: the queue behind a follower's media is per process, so the text posted to the
// other instance overtakes the image. Not fixed yet (it needs an order shared in Redis), so it
// runs only with KNOWN_FAILURES=1: `KNOWN_FAILURES=1 deno test -A tests/media/media_order_…`.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const B = "/im_component/wx_official_account";
const AGENT_SECRET = "media-order-multi-instance-secret-0123456789";
const KNOWN_FAILURES = Deno.env.get("KNOWN_FAILURES") === "1";

function imageXml(from: string, mediaId: string, msgId: string): string {
  return `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[${from}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[${mediaId}]]></MediaId><MsgId>${msgId}</MsgId></xml>`;
}

Deno.test({
  name: "an image posted to one instance, a text to the other: the agent reads them in order",
  ignore: REDIS_URL === null || !KNOWN_FAILURES,
  async fn() {
    const prefix = uniquePrefix("mediaorder");
    const redisUrl = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
      encodeURIComponent(prefix)
    }`;
    const fake = await startFakeWechat({ appId: "wxorder", secret: "secret" });
    const env = {
      REDIS_URL: redisUrl,
      AGENT_SECRET,
      WECHAT_APPID: "wxorder",
      WECHAT_SECRET: "secret",
      WECHAT_API_BASE: fake.url,
    };
    const a = await startMain(env);
    const b = await startMain(env).catch(async (error) => {
      await a.stop();
      await fake.close();
      throw error;
    });
    const token = await mintAgentToken(AGENT_SECRET, "alice", 600);
    const alice = await connectAgent(`${b.wsBase}${B}/msg?token=${token}`);
    try {
      const png = new Uint8Array(2_000);
      png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      fake.addMedia("order-img", png, "image/png", "photo.png");
      // WeChat's media/get is slow today: the image is still downloading when the text comes.
      fake.delay("cgi-bin/media/get", 1_500);

      const image = await post(
        `${a.base}${B}/send_xml`,
        imageXml("oOrder", "order-img", "9300001"),
      );
      assert.equal(`${image.status} ${image.text}`, "200 success");
      const text = await post(
        `${b.base}${B}/send_xml`,
        textXml("oOrder", "gh_account", "see the picture above", "9300002"),
      );
      assert.equal(`${text.status} ${text.text}`, "200 success");

      const ids = new Set(["9300001", "9300002"]);
      const isFollowers = (e: Received) => ids.has(String(e.data["id"]));
      await alice.waitFor(
        () => alice.received.filter(isFollowers).length === 2,
        15_000,
      );
      assert.deepEqual(
        alice.received.filter(isFollowers).map((e) => `${e.data["id"]} ${e.data.msg_type}`),
        ["9300001 image", "9300002 text"],
      );
    } finally {
      await alice.close();
      await a.stop();
      await b.stop();
      await fake.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
