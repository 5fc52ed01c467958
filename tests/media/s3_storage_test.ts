// Media in an S3-compatible bucket (MEDIA_STORE), against a real S3-protocol server (npm's
// s3rver in its own process): the storage itself, then a bridge whose follower media lands in
// the bucket and is served from it, streamed with ranges or by the store's presigned URLs.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { loadConfig } from "../../src/config.ts";
import { parseMediaStore, type S3StoreConfig } from "../../src/media/media_store_url.ts";
import { createS3Client } from "../../src/media/s3_client.ts";
import { createS3Storage } from "../../src/media/s3_storage.ts";
import { createServer } from "../../src/server.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received } from "../helpers/agent.ts";
import { startS3Server } from "../helpers/s3_server.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** A PNG's first bytes and then `n` random ones: what the bridge sniffs as .png. */
function pngLike(n: number): Uint8Array {
  const bytes = new Uint8Array(randomBytes(n + PNG_MAGIC.length));
  bytes.set(PNG_MAGIC);
  return bytes;
}

async function readAll(stream: ReadableStream<Uint8Array> | null): Promise<Uint8Array> {
  assert.ok(stream, "expected a stream");
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function s3Config(url: string): S3StoreConfig {
  const config = parseMediaStore(url);
  assert.equal(config.kind, "s3");
  return config as S3StoreConfig;
}

Deno.test("createS3Storage() keeps media in a bucket of a real S3 server", async (t) => {
  const s3 = await startS3Server(["media"]);
  try {
    const storage = createS3Storage({
      client: createS3Client(
        s3Config(`${s3.mediaStore("media")}`.replace("/media?", "/media/bridge?")),
      ),
      prefix: "bridge/",
      presign: false,
    });
    const bytes = pngLike(300_000);
    const sha = createHash("sha256").update(bytes).digest("hex");
    let key = "";

    await t.step("check() passes for a bucket that answers", async () => {
      await storage.check();
    });

    await t.step("put() returns sha256hex.ext and the object is in the bucket", async () => {
      key = await storage.put(bytes, "png");
      assert.equal(key, `${sha}.png`);
      assert.deepEqual(await s3.objects("media"), [`bridge/${key}`]);
      assert.equal(await storage.put(bytes, "png"), key);
      assert.deepEqual(await s3.objects("media"), [`bridge/${key}`]);
    });

    await t.step("stat() and open() read it whole and by range (a ranged GET)", async () => {
      assert.deepEqual(await storage.stat(key), { size: bytes.length });
      assert.deepEqual(await readAll(await storage.open(key)), bytes);
      const part = await readAll(await storage.open(key, { start: 1000, end: 1999 }));
      assert.deepEqual(part, bytes.subarray(1000, 2000));
    });

    await t.step("an unknown or malformed key is null, never a request for it", async () => {
      const unknown = `${"0".repeat(64)}.png`;
      assert.equal(await storage.stat(unknown), null);
      assert.equal(await storage.open(unknown), null);
      assert.equal(await storage.stat("../../etc/passwd"), null);
      assert.equal(await storage.open("../x.png"), null);
    });

    await t.step("remove() deletes the object", async () => {
      await storage.remove!(key);
      assert.deepEqual(await s3.objects("media"), []);
      assert.equal(await storage.stat(key), null);
      assert.equal(await storage.open(key), null);
    });

    await t.step("a presigned URL opens the object without credentials, ranges too", async () => {
      const presigning = createS3Storage({
        client: createS3Client(s3Config(s3.mediaStore("media"))),
        prefix: "",
        presign: true,
      });
      const k = await presigning.put(bytes, "png");
      const url = await presigning.presignedUrl!(k, 300);
      assert.ok(url.includes("X-Amz-Signature="), url);
      const whole = await fetch(url);
      assert.equal(whole.status, 200);
      assert.equal(whole.headers.get("content-type"), "image/png");
      assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), bytes);
      const part = await fetch(url, { headers: { range: "bytes=0-7" } });
      assert.equal(part.status, 206);
      assert.deepEqual(new Uint8Array(await part.arrayBuffer()), new Uint8Array(PNG_MAGIC));
    });

    await t.step("check() names a missing bucket and a key the store does not know", async () => {
      const missing = createS3Storage({
        client: createS3Client(s3Config(s3.mediaStore("nobucket"))),
        prefix: "",
        presign: false,
      });
      await assert.rejects(missing.check(), /MEDIA_STORE.*no such bucket/);
      const stranger = createS3Storage({
        client: createS3Client(s3Config(s3.mediaStore("media").replace("S3RVER:", "STRANGER:"))),
        prefix: "",
        presign: false,
      });
      await assert.rejects(stranger.check(), /MEDIA_STORE.*access denied/);
      await assert.rejects(stranger.put(pngLike(10), "png"), /the object store answered HTTP 403/);
      const nowhere = createS3Storage({
        client: createS3Client(s3Config("http://K:S@127.0.0.1:1/media?path_style=true")),
        prefix: "",
        presign: false,
      });
      await assert.rejects(
        nowhere.check(),
        /Cannot use MEDIA_STORE: cannot reach http:\/\/127\.0\.0\.1:1\/media\//,
      );
    });
  } finally {
    await s3.close();
  }
});

Deno.test("MEDIA_STORE: a bridge keeps follower media in the bucket and serves it", async (t) => {
  const s3 = await startS3Server(["media"]);
  const fake = await startFakeWechat({ appId: "wxs3", secret: "secret" });
  const env = {
    WECHAT_APPID: "wxs3",
    WECHAT_SECRET: "secret",
    WECHAT_API_BASE: fake.url,
  };
  let msgId = 9_100_000;
  /** Posts an image message and returns the agent's media_path for it. */
  const sendImage = async (base: string, agent: Awaited<ReturnType<typeof connectAgent>>) => {
    const id = String(++msgId);
    const mediaId = `img-${id}`;
    const bytes = pngLike(50_000);
    fake.addMedia(mediaId, bytes, "image/png", "photo.png");
    const xml =
      `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oS3]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[${mediaId}]]></MediaId><MsgId>${id}</MsgId></xml>`;
    const res = await post(`${base}${B}/send_xml`, xml);
    assert.equal(res.text, "success");
    const got = await agent.waitFor((e: Received) => e.data["id"] === id, 20_000);
    assert.equal(got.data.msg!["error"], undefined, String(got.data.msg!["error"]));
    return { url: got.data.msg!["media_path"] as string, bytes };
  };
  try {
    await t.step(
      "streamed: the bytes come from the bucket through the bridge, ranges kept",
      async () => {
        const server = await startBridge({ env: { ...env, MEDIA_STORE: s3.mediaStore("media") } });
        const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
        try {
          const { url, bytes } = await sendImage(server.base, agent);
          assert.ok(url.startsWith(`${server.base}/media/`), url);
          const key = new URL(url).pathname.slice("/media/".length);
          assert.ok((await s3.objects("media")).includes(key), "the object is in the bucket");
          const whole = await fetch(url);
          assert.equal(whole.status, 200);
          assert.deepEqual(new Uint8Array(await whole.arrayBuffer()), bytes);
          const part = await fetch(url, { headers: { range: "bytes=100-199" } });
          assert.equal(part.status, 206);
          assert.equal(part.headers.get("content-range"), `bytes 100-199/${bytes.length}`);
          assert.deepEqual(new Uint8Array(await part.arrayBuffer()), bytes.subarray(100, 200));
          const forged = await fetch(url.replace(/t=[^&]+/, "t=forged"));
          await forged.body?.cancel();
          assert.equal(forged.status, 403);
        } finally {
          await agent.close();
          await server.close();
        }
      },
    );

    await t.step(
      "presign=true: the bridge checks its URL, then redirects to the store",
      async () => {
        const server = await startBridge({
          env: { ...env, MEDIA_STORE: s3.mediaStore("media", { presign: "true" }) },
        });
        const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
        try {
          const { url, bytes } = await sendImage(server.base, agent);
          const redirect = await fetch(url, { redirect: "manual" });
          await redirect.body?.cancel();
          assert.equal(redirect.status, 302);
          const location = redirect.headers.get("location") ?? "";
          assert.ok(location.startsWith(`${s3.endpoint}/media/`), location);
          assert.ok(location.includes("X-Amz-Signature="), location);
          const followed = await fetch(url, { headers: { range: "bytes=0-9" } });
          assert.equal(followed.status, 206);
          assert.deepEqual(new Uint8Array(await followed.arrayBuffer()), bytes.subarray(0, 10));
          const forged = await fetch(url.replace(/t=[^&]+/, "t=forged"), { redirect: "manual" });
          await forged.body?.cancel();
          assert.equal(forged.status, 403, "no redirect without the bridge's signature");
        } finally {
          await agent.close();
          await server.close();
        }
      },
    );

    await t.step("a bucket that does not answer stops start-up with one clear line", async () => {
      const config = loadConfig({
        STORE: "memory",
        DATA_DIR: await Deno.makeTempDir(),
        MEDIA_STORE: s3.mediaStore("absent"),
      });
      await assert.rejects(
        createServer(config),
        /Cannot use MEDIA_STORE: the bucket answered no such bucket/,
      );
    });
  } finally {
    await fake.close();
    await s3.close();
  }
});
