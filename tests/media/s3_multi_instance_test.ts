// Issue 18's "done when" for media: two bridges as `main.ts` processes on one Redis, media in a
// real S3-protocol server (s3rver). A follower's image posted to one instance opens through the
// other, with the object in the bucket and no instance's disk involved, even once the first is
// gone.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";
import { startS3Server } from "../helpers/s3_server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const B = "/im_component/wx_official_account";
const AGENT_SECRET = "s3-multi-instance-test-secret-0123456789";

Deno.test({
  name: "a follower's image posted to one instance opens through another, from the bucket",
  ignore: REDIS_URL === null,
  async fn(t) {
    const prefix = uniquePrefix("s3media");
    const redisUrl = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
      encodeURIComponent(prefix)
    }`;
    const s3 = await startS3Server(["media"]);
    const fake = await startFakeWechat({ appId: "wxmulti", secret: "secret" });
    const env = {
      REDIS_URL: redisUrl,
      MEDIA_STORE: s3.mediaStore("media"),
      // The same on every instance: media URLs are signed with a key derived from it.
      AGENT_SECRET,
      WECHAT_APPID: "wxmulti",
      WECHAT_SECRET: "secret",
      WECHAT_API_BASE: fake.url,
      HEARTBEAT_INTERVAL_S: "1",
    };
    const a = await startMain(env);
    const b = await startMain(env).catch(async (error) => {
      await a.stop();
      throw error;
    });
    let aStopped = false;
    const token = await mintAgentToken(AGENT_SECRET, "agent-b", 600);
    const agent = await connectAgent(`${b.wsBase}${B}/msg?userid=agent-b&token=${token}`);
    try {
      const bytes = new Uint8Array(40_000);
      bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      for (let i = 8; i < bytes.length; i++) bytes[i] = (i * 31) % 251;
      fake.addMedia("img-multi", bytes, "image/png", "photo.png");
      let mediaUrl = "";

      await t.step("posted to A, the agent on B gets a media URL", async () => {
        const xml =
          `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oMulti]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[img-multi]]></MediaId><MsgId>9200001</MsgId></xml>`;
        const res = await post(`${a.base}${B}/send_xml`, xml);
        assert.equal(res.text, "success");
        const got = await agent.waitFor((e: Received) => e.data["id"] === "9200001", 30_000);
        assert.equal(got.data.msg!["error"], undefined, String(got.data.msg!["error"]));
        mediaUrl = got.data.msg!["media_path"] as string;
        assert.ok(mediaUrl.startsWith(`${a.base}/media/`), mediaUrl);
      });

      const key = () => new URL(mediaUrl).pathname.slice("/media/".length);
      const throughB = () => mediaUrl.replace(a.base, b.base);

      await t.step("the object is in the S3 server's bucket", async () => {
        assert.deepEqual(await s3.objects("media"), [key()]);
      });

      await t.step("B serves it, whole and by range", async () => {
        const whole = await fetch(throughB());
        assert.equal(whole.status, 200);
        assert.equal(whole.headers.get("content-type"), "image/png");
        assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), bytes);
        const part = await fetch(throughB(), { headers: { range: "bytes=-16" } });
        assert.equal(part.status, 206);
        assert.deepEqual(new Uint8Array(await part.arrayBuffer()), bytes.subarray(-16));
      });

      await t.step("with A gone, B still serves what A stored", async () => {
        await a.stop();
        aStopped = true;
        const res = await fetch(throughB());
        assert.equal(res.status, 200);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
      });
    } finally {
      await agent.close();
      if (!aStopped) await a.stop();
      await b.stop();
      await fake.close();
      await s3.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
