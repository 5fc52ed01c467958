// Follower media end to end (issue #5): a follower's voice, image and video XML through a real
// bridge, whose media/get goes to the fake WeChat; the agent's envelope carries URLs the bridge
// serves, which this test fetches as an agent's browser would.

import assert from "node:assert/strict";
import { probeDuration } from "../../src/media/transcode.ts";
import { createToolLimiter } from "../../src/media/tool_limiter.ts";
import { post, type Received } from "../helpers/agent.ts";
import { type TestBridge } from "../helpers/server.ts";
import { withMediaBridge } from "../helpers/media_bridge.ts";
import {
  amrDurationSeconds,
  ffmpeg,
  ffprobe,
  makeFixtures,
  skipWithoutFfmpeg,
  VOICE_AMR,
} from "./_media_tools.ts";

const B = "/im_component/wx_official_account";

let msgCounter = 8_000_000;

/** WeChat's XML for a follower's media message; `fields` are the type's own tags. */
function mediaXml(follower: string, msgType: string, fields: Record<string, string>) {
  const msgId = String(++msgCounter);
  const tags = Object.entries(fields).map(([tag, value]) => `<${tag}><![CDATA[${value}]]></${tag}>`)
    .join("");
  const xml =
    `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[${follower}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[${msgType}]]></MsgType>${tags}<MsgId>${msgId}</MsgId></xml>`;
  return { xml, msgId };
}

/** Posts the XML as WeChat would; returns how long the answer took. */
async function deliver(server: TestBridge, xml: string): Promise<number> {
  const started = performance.now();
  const res = await post(`${server.base}${B}/send_xml`, xml);
  const took = performance.now() - started;
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
  return took;
}

const byId = (msgId: string) => (e: Received) => e.data["id"] === msgId && e.result.code > 1000;

/** The signed URL with one character of its `t=` token changed. */
function tampered(url: string): string {
  const u = new URL(url);
  const token = u.searchParams.get("t") ?? "";
  assert.ok(token.length > 0, `no token in ${url}`);
  const first = token[0] === "A" ? "B" : "A";
  u.searchParams.set("t", first + token.slice(1));
  return u.href;
}

async function bytesOf(url: string, init?: RequestInit): Promise<Response & { bytes: Uint8Array }> {
  const res = await fetch(url, init);
  return Object.assign(res, { bytes: new Uint8Array(await res.arrayBuffer()) });
}

Deno.test({
  name: "a follower's voice, image and video reach the agent as URLs the bridge serves",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "media-e2e-" });
    try {
      const fixtures = await makeFixtures(dir);
      const amr = await Deno.readFile(VOICE_AMR);
      await withMediaBridge({}, async (server, fake, agent) => {
        const mediaBase = `${server.base}/media/`;
        let imageUrl = "";

        await t.step(
          "voice: an MP3 URL as long as the AMR, format and recognition kept",
          async () => {
            fake.addMedia("voice-1", amr, "audio/amr", "voice.amr");
            const { xml, msgId } = mediaXml("oVoice", "voice", {
              MediaId: "voice-1",
              Format: "amr",
              Recognition: "你好，我想查订单",
            });
            await deliver(server, xml);
            const got = await agent.waitFor(byId(msgId), 60_000);
            assert.equal(got.result.code, 1003);
            assert.equal(got.data["msg_type"], "voice");
            const msg = got.data.msg!;
            assert.equal(msg["format"], "amr");
            assert.equal(msg["recognition"], "你好，我想查订单");
            assert.equal(msg["media_id"], "voice-1");
            assert.equal(msg["error"], undefined, String(msg["error"]));
            const mediaPath = msg["media_path"] as string;
            assert.ok(mediaPath.startsWith(mediaBase), mediaPath);

            const res = await bytesOf(mediaPath);
            assert.equal(res.status, 200);
            assert.equal(res.headers.get("content-type"), "audio/mpeg");
            const file = `${dir}/served-voice.mp3`;
            await Deno.writeFile(file, res.bytes);
            const info = await ffprobe(file);
            assert.equal(info.codecType, "audio");
            assert.equal(info.codec, "mp3");
            // Plays from start to end without a decoding error.
            await ffmpeg("-xerror", "-i", file, "-f", "null", "-");
            const original = amrDurationSeconds(amr);
            const served = await probeDuration(file, { limiter: createToolLimiter() });
            assert.ok(Math.abs(served - original) < 0.3, `mp3 ${served} s vs amr ${original} s`);

            // The original stays reachable too, byte for byte.
            const originalPath = msg["original_path"] as string;
            assert.ok(originalPath.startsWith(mediaBase), originalPath);
            assert.deepEqual((await bytesOf(originalPath)).bytes, amr);
          },
        );

        await t.step("image: the URL serves the same bytes", async () => {
          fake.addMedia("img-1", fixtures.png, "image/png", "photo.png");
          const { xml, msgId } = mediaXml("oImage", "image", {
            PicUrl: "http://mmbiz.qpic.cn/mmbiz_png/fake/0",
            MediaId: "img-1",
          });
          await deliver(server, xml);
          const got = await agent.waitFor(byId(msgId), 30_000);
          assert.equal(got.result.code, 1002);
          const msg = got.data.msg!;
          assert.equal(msg["error"], undefined, String(msg["error"]));
          imageUrl = msg["media_path"] as string;
          assert.ok(imageUrl.startsWith(mediaBase), imageUrl);
          const res = await bytesOf(imageUrl);
          assert.equal(res.status, 200);
          assert.equal(res.headers.get("content-type"), "image/png");
          assert.deepEqual(res.bytes, fixtures.png);
        });

        await t.step("a URL with one character of its token changed is 403", async () => {
          assert.ok(imageUrl !== "");
          const res = await bytesOf(tampered(imageUrl));
          assert.equal(res.status, 403);
          assert.ok(!new TextDecoder().decode(res.bytes).includes("PNG"));
          const bare = new URL(imageUrl);
          bare.search = "";
          assert.equal((await bytesOf(bare.href)).status, 403);
        });

        await t.step("a range request is 206 with those bytes", async () => {
          const res = await bytesOf(imageUrl, { headers: { Range: "bytes=8-107" } });
          assert.equal(res.status, 206);
          assert.equal(res.headers.get("content-range"), `bytes 8-107/${fixtures.png.length}`);
          assert.deepEqual(res.bytes, fixtures.png.slice(8, 108));
        });

        await t.step(
          "video: downloaded from video_url and served as is, with a thumb",
          async () => {
            fake.addVideo("vid-1", fixtures.mp4);
            fake.addMedia("vid-thumb-1", fixtures.jpeg, "image/jpeg");
            const { xml, msgId } = mediaXml("oVideo", "video", {
              MediaId: "vid-1",
              ThumbMediaId: "vid-thumb-1",
            });
            await deliver(server, xml);
            const got = await agent.waitFor(byId(msgId), 30_000);
            assert.equal(got.result.code, 1004);
            const msg = got.data.msg!;
            assert.equal(msg["error"], undefined, String(msg["error"]));
            const mediaPath = msg["media_path"] as string;
            assert.ok(mediaPath.startsWith(mediaBase), mediaPath);
            const res = await bytesOf(mediaPath);
            assert.equal(res.headers.get("content-type"), "video/mp4");
            assert.deepEqual(res.bytes, fixtures.mp4);
            const thumbPath = msg["thumb_path"] as string;
            assert.ok(thumbPath.startsWith(mediaBase), thumbPath);
            assert.deepEqual((await bytesOf(thumbPath)).bytes, fixtures.jpeg);
          },
        );
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("media WeChat cannot give still reaches the agent, with an error", async (t) => {
  await t.step(
    "a media id WeChat does not know (40007): message delivered with msg.error",
    async () => {
      await withMediaBridge({}, async (server, _fake, agent) => {
        const { xml, msgId } = mediaXml("oMissing", "voice", {
          MediaId: "no-such-media",
          Format: "amr",
          Recognition: "",
        });
        await deliver(server, xml);
        const got = await agent.waitFor(byId(msgId), 10_000);
        assert.equal(got.result.code, 1003);
        assert.equal(got.data["contact_id"], "oMissing");
        assert.equal(got.data.msg?.["media_path"], "");
        assert.match(String(got.data.msg?.["error"]), /40007/);
        assert.equal(got.data.msg?.["format"], "amr");
      });
    },
  );

  await t.step("a slow WeChat does not hold the webhook's answer", async () => {
    await withMediaBridge({ MEDIA_TIMEOUT_MS: "1000" }, async (server, fake, agent) => {
      fake.addMedia("slow-img", new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2]), "image/png");
      fake.delay("cgi-bin/media/get", 6000);
      const { xml, msgId } = mediaXml("oSlow", "image", { MediaId: "slow-img" });
      const took = await deliver(server, xml);
      assert.ok(took < 1000, `the webhook answered after ${took} ms`);
      const started = performance.now();
      const got = await agent.waitFor(byId(msgId), 5000);
      const waited = performance.now() - started;
      assert.equal(got.result.code, 1002);
      assert.equal(got.data.msg?.["media_path"], "");
      assert.match(String(got.data.msg?.["error"]), /1000 ms/);
      // The deadline, not WeChat's 6 s, decided when the agent heard of it.
      assert.ok(waited < 4000, `the agent waited ${waited} ms`);
    });
  });

  await t.step("a file over MEDIA_MAX_BYTES is refused with msg.error", async () => {
    await withMediaBridge({ MEDIA_MAX_BYTES: "1000" }, async (server, fake, agent) => {
      const big = new Uint8Array(5000);
      big.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      fake.addMedia("big-img", big, "image/png");
      const { xml, msgId } = mediaXml("oBig", "image", { MediaId: "big-img" });
      await deliver(server, xml);
      const got = await agent.waitFor(byId(msgId), 10_000);
      assert.equal(got.result.code, 1002);
      assert.equal(got.data.msg?.["media_path"], "");
      assert.match(String(got.data.msg?.["error"]), /5000 bytes is over 1000|over the limit/);
    });
  });
});

Deno.test("fields only the bridge writes cannot come from the follower's XML", async (t) => {
  // Tags WeChat never sends, named like what the pipeline reports: with a file that cannot be
  // fetched, or one that can, the agent must see the bridge's word, not the XML's.
  const forged = {
    ThumbPath: "https://evil.example/poster.jpg",
    OriginalPath: "https://evil.example/original.jpg",
    MediaUrl: "https://evil.example/clip.mp4",
    ContentType: "text/html",
    Size: "1",
    Error: "forged error",
  };
  await withMediaBridge({}, async (server, fake, agent) => {
    await t.step("a video WeChat cannot give: no forged URL stands in for it", async () => {
      const { xml, msgId } = mediaXml("oForged", "video", {
        MediaId: "no-such-video",
        ThumbMediaId: "no-such-thumb",
        ...forged,
      });
      await deliver(server, xml);
      const msg = (await agent.waitFor(byId(msgId), 10_000)).data.msg!;
      assert.equal(msg["media_path"], "");
      assert.match(String(msg["error"]), /40007/);
      for (const field of ["thumb_path", "original_path", "media_url", "content_type", "size"]) {
        assert.equal(msg[field], undefined, `${field}: ${msg[field]}`);
      }
    });
    await t.step("an image WeChat gives: no forged error or type beside it", async () => {
      const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
      fake.addMedia("forged-img", png, "image/png");
      const { xml, msgId } = mediaXml("oForged", "image", { MediaId: "forged-img", ...forged });
      await deliver(server, xml);
      const msg = (await agent.waitFor(byId(msgId), 10_000)).data.msg!;
      assert.equal(msg["error"], undefined, String(msg["error"]));
      assert.equal(msg["content_type"], "image/png");
      assert.equal(msg["size"], png.length);
      assert.equal(msg["thumb_path"], undefined);
      assert.equal(msg["media_url"], undefined);
      assert.match(String(msg["original_path"]), new RegExp(`^${server.base}/media/`));
    });
  });
});
