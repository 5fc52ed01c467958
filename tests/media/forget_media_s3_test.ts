// Two instances on one Redis, media in one bucket (MEDIA_STORE): a follower forgotten through
// one instance loses its object from the bucket, and the other instance, which had served the
// file (and remembers its size), no longer renews or serves it; a picture another follower sent
// too stays and opens on both.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";
import { startS3Server } from "../helpers/s3_server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";
import { imageXml, png, revokeXml } from "./_forget_media.ts";

const REDIS_URL = await findTestRedis();
const B = "/im_component/wx_official_account";
const AGENT_SECRET = "forget-media-s3-test-secret-0123456789";

/** Two main.ts on one Redis and one bucket, a fake WeChat, and agent-b's socket on B. */
async function startPair(name: string) {
  const prefix = uniquePrefix(name);
  const s3 = await startS3Server(["media"]);
  const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
  const env = {
    REDIS_URL: `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}`,
    MEDIA_STORE: s3.mediaStore("media"),
    AGENT_SECRET,
    WECHAT_APPID: "wxtest",
    WECHAT_SECRET: "secret",
    WECHAT_API_BASE: fake.url,
  };
  const a = await startMain(env);
  const b = await startMain(env).catch(async (error) => {
    await a.stop();
    throw error;
  });
  const token = await mintAgentToken(AGENT_SECRET, "agent-b", 600);
  const agent = await connectAgent(`${b.wsBase}${B}/msg?userid=agent-b&token=${token}`);
  return {
    a,
    b,
    s3,
    fake,
    token,
    agent,
    async stop() {
      await agent.close();
      await a.stop();
      await b.stop();
      await fake.close();
      await s3.close();
      await flushPrefix(REDIS_URL!, prefix);
    },
  };
}

Deno.test({
  name: "a follower forgotten on one instance loses its objects from the shared bucket",
  ignore: REDIS_URL === null,
  async fn() {
    const { a, b, s3, fake, token, agent, stop } = await startPair("forgets3");
    const auth = { authorization: `Bearer ${token}` };
    const status = async (url: string, headers: HeadersInit = {}) => {
      const res = await fetch(url, { headers });
      await res.body?.cancel();
      return res.status;
    };
    const renewal = (base: string, url: string) =>
      status(`${base}${B}/media_url?url=${encodeURIComponent(url)}`, auth);
    const send = async (follower: string, bytes: Uint8Array, msgId: string, to = a.base) => {
      fake.addMedia(`m-${msgId}`, bytes, "image/png", "photo.png");
      const res = await post(`${to}${B}/send_xml`, imageXml(follower, `m-${msgId}`, msgId));
      assert.equal(res.text, "success");
      const got = await agent.waitFor((e: Received) => e.data["id"] === msgId, 30_000);
      const url = got.data.msg!["media_path"] as string;
      assert.ok(url.startsWith(`${to}/media/`), JSON.stringify(got.data.msg));
      return url;
    };
    const keyOf = (url: string) => new URL(url).pathname.slice("/media/".length);
    try {
      const own = await send("oGone", png(19), "89000001");
      const shared = await send("oGone", png(23), "89000002");
      const resent = await send("oGone", png(29), "89000005");
      await send("oStays", png(23), "89000003");
      const onB = (url: string) => url.replace(a.base, b.base);
      // B has served both: it knows their sizes.
      assert.equal(await status(onB(own)), 200);
      assert.equal(await status(onB(shared)), 200);
      assert.equal(await status(onB(resent)), 200);
      const stored = [keyOf(own), keyOf(shared), keyOf(resent)].sort();
      assert.deepEqual((await s3.objects("media")).sort(), stored);

      const res = await post(`${a.base}${B}/send_xml`, revokeXml("oGone"));
      assert.equal(res.text, "success");
      const deadline = Date.now() + 15_000;
      while ((await s3.objects("media")).length > 1) {
        if (Date.now() > deadline) throw new Error("the forgotten follower's object stayed");
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(await s3.objects("media"), [keyOf(shared)]);
      for (const base of [a.base, b.base]) {
        assert.equal(await renewal(base, own), 404, `renewed on ${base}`);
        assert.equal(await status(own.replace(a.base, base)), 404, `opened on ${base}`);
        assert.equal(await renewal(base, shared), 200, `shared renewed on ${base}`);
        assert.equal(await status(shared.replace(a.base, base)), 200, `shared on ${base}`);
      }
      // The same bytes sent again through B, which still remembers the object's size (it has
      // not asked for it since): stored anew, not taken for there.
      const again = await send("oNew", png(29), "89000004", b.base);
      assert.equal(keyOf(again), keyOf(resent));
      assert.ok((await s3.objects("media")).includes(keyOf(resent)));
      assert.equal(await status(again), 200);
    } finally {
      await stop();
    }
  },
});

// An agent on instance B uploads the bytes a follower had sent through A, to reply to another
// follower; the follower revokes through A before the reply is written. A knew nothing of B's
// upload (the hour an upload is kept for its reply was this instance's only) and deleted the
// object the reply then named. Now the hold is in Redis, for every instance.
Deno.test({
  name: "an agent's upload on another instance keeps the object a forget would delete",
  ignore: REDIS_URL === null,
  async fn() {
    const { a, b, s3, fake, token, agent, stop } = await startPair("forgets3hold");
    const send = async (follower: string, bytes: Uint8Array, msgId: string) => {
      fake.addMedia(`m-${msgId}`, bytes, "image/png", "photo.png");
      const res = await post(`${a.base}${B}/send_xml`, imageXml(follower, `m-${msgId}`, msgId));
      assert.equal(res.text, "success");
      const got = await agent.waitFor((e: Received) => e.data["id"] === msgId, 30_000);
      return new URL(got.data.msg!["media_path"] as string).pathname.slice("/media/".length);
    };
    try {
      // Sent first, decided first: once the second is deleted, the first is decided.
      const forwarded = await send("oGone", png(31), "89100001");
      const own = await send("oGone", png(37), "89100002");
      const up = await fetch(`${b.base}${B}/upload?userid=agent-b&filename=r.png`, {
        method: "POST",
        body: png(31) as Uint8Array<ArrayBuffer>,
        headers: { "content-type": "image/png", authorization: `Bearer ${token}` },
      });
      const uploaded = await up.json();
      assert.equal(up.status, 201, JSON.stringify(uploaded));
      assert.ok(String(uploaded.media_url).includes(forwarded), JSON.stringify(uploaded));

      const res = await post(`${a.base}${B}/send_xml`, revokeXml("oGone"));
      assert.equal(res.text, "success");
      const deadline = Date.now() + 15_000;
      while ((await s3.objects("media")).includes(own)) {
        if (Date.now() > deadline) throw new Error("the forgotten follower's object stayed");
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(await s3.objects("media"), [forwarded], "the upload's object");
    } finally {
      await stop();
    }
  },
});
