import assert from "node:assert/strict";
import {
  createMediaPipeline,
  DEFAULT_ALLOWED_HOSTS,
  type GetMedia,
  type GetMediaResult,
  isAllowedUrl,
  type MediaPipelineDeps,
} from "../../src/media/pipeline.ts";
import { createUrlSigner } from "../../src/media/signed_url.ts";
import { createToolLimiter } from "../../src/media/tool_limiter.ts";
import { createDiskStorage } from "../../src/media/storage.ts";
import { createWechatClient, WechatApiError } from "../../src/wechat/api_client.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import {
  amrDurationSeconds,
  ffprobe,
  makeFixtures,
  skipWithoutFfmpeg,
  startMediaServer,
  VOICE_AMR,
} from "./_media_tools.ts";

const MB = 1024 * 1024;

async function fetchBytes(url: string): Promise<{ res: Response; bytes: Uint8Array }> {
  const res = await fetch(url);
  return { res, bytes: new Uint8Array(await res.arrayBuffer()) };
}

/** A getMedia over a map of files, the way WeChat answers: 40007 for an unknown id. */
function mapGetMedia(files: Record<string, GetMediaResult>): GetMedia {
  return (mediaId) => {
    const found = files[mediaId];
    if (!found) return Promise.reject(new WechatApiError(40007, "invalid media_id"));
    return Promise.resolve(found);
  };
}

/** A stand-in for WeChat's CDN and an internal host the bridge must never reach. */
function startHosts(files: { jpeg: Uint8Array; mp4: Uint8Array }, maxBytes: number) {
  const internalHits: string[] = [];
  const internal = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    internalHits.push(new URL(req.url).pathname);
    return new Response("secret");
  });
  const internalUrl = `http://127.0.0.1:${internal.addr.port}`;
  let endlessCancelled = false;
  const cdn = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    switch (new URL(req.url).pathname) {
      case "/img.jpg":
        return new Response(files.jpeg.slice(), { headers: { "Content-Type": "image/jpeg" } });
      case "/video.mp4":
        return new Response(files.mp4.slice(), { headers: { "Content-Type": "video/mp4" } });
      case "/empty":
        return new Response(null, { headers: { "Content-Type": "video/mp4" } });
      case "/huge-declared":
        return new Response(new Uint8Array(maxBytes + 1), {
          headers: { "Content-Type": "video/mp4" },
        });
      case "/huge-stream":
        // No Content-Length: the limit must hold while reading.
        return new Response(
          new ReadableStream<Uint8Array>({
            pull(controller) {
              controller.enqueue(new Uint8Array(64 * 1024));
            },
            cancel() {
              endlessCancelled = true;
            },
          }),
          { headers: { "Content-Type": "video/mp4" } },
        );
      case "/stall": {
        // Headers at once, then the body never comes: the deadline covers the body too.
        let release = () => {};
        return new Response(
          new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(new Uint8Array(100));
            },
            pull() {
              return new Promise<void>((resolve) => (release = resolve));
            },
            cancel() {
              release();
            },
          }),
          { headers: { "Content-Type": "video/mp4" } },
        );
      }
      case "/redirect-internal":
        return Response.redirect(`${internalUrl}/latest/meta-data`, 302);
      case "/redirect-ok":
        return new Response(null, { status: 302, headers: { Location: "/img.jpg" } });
      default:
        return new Response("not found", { status: 404 });
    }
  });
  return {
    cdnHost: `127.0.0.1:${cdn.addr.port}`,
    cdnUrl: `http://127.0.0.1:${cdn.addr.port}`,
    internalUrl,
    internalHits,
    endlessCancelled: () => endlessCancelled,
    async close() {
      await cdn.shutdown();
      await internal.shutdown();
    },
  };
}

function setup(dir: string) {
  const storage = createDiskStorage(`${dir}/media`);
  const signer = createUrlSigner("pipeline test secret, long enough");
  const server = startMediaServer({ storage, signer });
  return { storage, signer, server };
}

Deno.test("isAllowedUrl() admits WeChat's hosts and nothing inside the network", () => {
  const ok = (url: string) => isAllowedUrl(url, DEFAULT_ALLOWED_HOSTS);
  assert.equal(ok("http://mmbiz.qpic.cn/mmbiz_jpg/abc/0"), true);
  assert.equal(ok("https://mmbiz.qlogo.cn/x"), true);
  assert.equal(ok("https://api.weixin.qq.com/cgi-bin/media/get"), true);
  assert.equal(ok("http://MMBIZ.QPIC.CN./x"), true);
  assert.equal(ok("http://mmbiz.qpic.cn.evil.example/x"), false);
  assert.equal(ok("http://evilqpic.cn/x"), false);
  assert.equal(ok("http://qpic.cn/x"), false);
  assert.equal(ok("http://169.254.169.254/latest/meta-data"), false);
  assert.equal(ok("http://127.0.0.1:6379/"), false);
  assert.equal(ok("http://localhost/"), false);
  assert.equal(ok("file:///etc/passwd"), false);
  assert.equal(ok("ftp://mmbiz.qpic.cn/x"), false);
  assert.equal(ok("http://user:pw@mmbiz.qpic.cn/x"), false);
  assert.equal(ok("this is a url"), false);
  assert.equal(isAllowedUrl("http://127.0.0.1:8080/x", ["127.0.0.1:8080"]), true);
  assert.equal(isAllowedUrl("http://127.0.0.1:8081/x", ["127.0.0.1:8080"]), false);
  assert.equal(isAllowedUrl("http://[::1]:8080/x", ["[::1]"]), true);
  assert.equal(isAllowedUrl("http://cdn.example.com/x", ["*.example.com"]), true);
});

Deno.test({
  name: "createMediaPipeline() stores follower media and serves it by signed URL",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "pipeline-test-" });
    const fixtures = await makeFixtures(dir);
    const amr = await Deno.readFile(VOICE_AMR);
    const thumbJpeg = fixtures.jpeg;
    const { storage, signer, server } = setup(dir);
    const hosts = startHosts(fixtures, 5 * MB);
    const getMedia = mapGetMedia({
      "voice-1": { kind: "file", bytes: amr, contentType: "audio/amr", filename: "v.amr" },
      "image-1": { kind: "file", bytes: fixtures.png, contentType: "image/jpeg" },
      "video-1": { kind: "video_url", url: `${hosts.cdnUrl}/video.mp4` },
      "short-1": { kind: "file", bytes: fixtures.mp4, contentType: "video/mp4" },
      "thumb-1": { kind: "file", bytes: thumbJpeg, contentType: "image/jpeg" },
    });
    const deps: MediaPipelineDeps = {
      storage,
      signer,
      getMedia,
      allowedHosts: [hosts.cdnHost],
      maxBytes: 5 * MB,
      limiter: createToolLimiter(),
      timeoutMs: 5_000,
    };
    const pipeline = createMediaPipeline(deps);

    await t.step("voice: an MP3 as long as the AMR, and the AMR itself", async () => {
      const result = await pipeline.process(
        { msgType: "voice", mediaId: "voice-1", format: "amr" },
        `${server.base}/`,
      );
      assert.equal(result.error, undefined);
      assert.match(
        result.media_path,
        /^http:\/\/127\.0\.0\.1:\d+\/media\/[0-9a-f]{64}\.mp3\?e=\d+&t=/,
      );
      assert.equal(result.content_type, "audio/mpeg");
      const { res, bytes } = await fetchBytes(result.media_path);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("Content-Type"), "audio/mpeg");
      assert.equal(result.size, bytes.length);
      await Deno.writeFile(`${dir}/served.mp3`, bytes);
      const probe = await ffprobe(`${dir}/served.mp3`);
      assert.equal(probe.codec, "mp3");
      const expected = amrDurationSeconds(amr);
      assert.ok(Math.abs(probe.duration - expected) < 0.2, `${probe.duration} vs ${expected}`);
      const original = await fetchBytes(result.original_path!);
      assert.equal(original.res.headers.get("Content-Type"), "audio/amr");
      assert.deepEqual(original.bytes, amr);
    });

    await t.step("image: the same bytes, typed by their content", async () => {
      const result = await pipeline.process({ msgType: "image", mediaId: "image-1" }, server.base);
      assert.equal(result.error, undefined);
      const { res, bytes } = await fetchBytes(result.media_path);
      assert.equal(res.headers.get("Content-Type"), "image/png");
      assert.deepEqual(bytes, fixtures.png);
      const again = await pipeline.process({ msgType: "image", mediaId: "image-1" }, server.base);
      assert.equal(again.media_path, result.media_path, "content-addressed: one file, one URL");
    });

    await t.step("a changed media URL is refused", async () => {
      const { media_path } = await pipeline.process(
        { msgType: "image", mediaId: "image-1" },
        server.base,
      );
      const genuine = await fetch(media_path);
      assert.equal(genuine.status, 200);
      await genuine.body?.cancel();
      const url = new URL(media_path);
      const token = url.searchParams.get("t")!;
      url.searchParams.set("t", (token[0] === "x" ? "y" : "x") + token.slice(1));
      const tampered = await fetch(url);
      assert.equal(tampered.status, 403);
      await tampered.body?.cancel();
      const otherKey = media_path.replace(
        /\/media\/[0-9a-f]/,
        (m) => m.endsWith("0") ? m.slice(0, -1) + "1" : m.slice(0, -1) + "0",
      );
      const moved = await fetch(otherKey);
      assert.equal(moved.status, 403);
      await moved.body?.cancel();
    });

    await t.step("image without credentials: PicUrl on an allowed host", async () => {
      const noApi = createMediaPipeline({ ...deps, getMedia: null });
      const result = await noApi.process(
        { msgType: "image", mediaId: "image-1", picUrl: `${hosts.cdnUrl}/redirect-ok` },
        server.base,
      );
      assert.equal(result.error, undefined);
      assert.deepEqual((await fetchBytes(result.media_path)).bytes, fixtures.jpeg);
    });

    await t.step("video: video_url downloaded as is, WeChat's thumb kept", async () => {
      const result = await pipeline.process(
        { msgType: "video", mediaId: "video-1", thumbMediaId: "thumb-1" },
        server.base,
      );
      assert.equal(result.error, undefined);
      assert.equal(result.content_type, "video/mp4");
      const video = await fetchBytes(result.media_path);
      assert.equal(video.res.headers.get("Content-Type"), "video/mp4");
      assert.deepEqual(video.bytes, fixtures.mp4);
      assert.deepEqual((await fetchBytes(result.thumb_path!)).bytes, thumbJpeg);
    });

    await t.step("shortvideo without a thumb: one is made from the first frame", async () => {
      const result = await pipeline.process(
        { msgType: "shortvideo", mediaId: "short-1" },
        server.base,
      );
      assert.equal(result.error, undefined);
      assert.deepEqual((await fetchBytes(result.media_path)).bytes, fixtures.mp4);
      const thumb = await fetchBytes(result.thumb_path!);
      assert.equal(thumb.res.headers.get("Content-Type"), "image/jpeg");
      assert.deepEqual([...thumb.bytes.subarray(0, 3)], [0xff, 0xd8, 0xff]);
      assert.notDeepEqual(thumb.bytes, thumbJpeg);
    });

    await hosts.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("createMediaPipeline() reports every failure in error and never throws", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "pipeline-fail-test-" });
  const jpeg = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4]);
  const mp4 = new Uint8Array([0, 0, 0, 0x20, ...new TextEncoder().encode("ftypisom"), 9, 9]);
  const { storage, signer, server } = setup(dir);
  const maxBytes = 256 * 1024;
  const hosts = startHosts({ jpeg, mp4 }, maxBytes);
  const base: MediaPipelineDeps = {
    storage,
    signer,
    getMedia: mapGetMedia({}),
    allowedHosts: [hosts.cdnHost],
    maxBytes,
    limiter: createToolLimiter(),
    timeoutMs: 400,
  };

  await t.step("an unknown media id (40007) gives an error and no URL", async () => {
    const result = await createMediaPipeline(base).process(
      { msgType: "voice", mediaId: "expired-id", format: "amr" },
      server.base,
    );
    assert.equal(result.media_path, "");
    assert.match(result.error!, /^Cannot fetch voice \(media_id expired-id\): .*errcode 40007/);
  });

  await t.step("a WeChat that answers after 6 s is abandoned at timeoutMs", async () => {
    let aborted = false;
    const slow: GetMedia = (_id, opts) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => resolve({ kind: "file", bytes: jpeg, contentType: "image/jpeg" }),
          6_000,
        );
        opts?.signal?.addEventListener("abort", () => {
          aborted = true;
          clearTimeout(timer);
          reject(opts.signal?.reason);
        });
      });
    const started = performance.now();
    const result = await createMediaPipeline({ ...base, getMedia: slow }).process(
      { msgType: "image", mediaId: "m" },
      server.base,
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 390 && elapsed < 2_000, `${elapsed} ms`);
    assert.equal(result.media_path, "");
    assert.match(result.error!, /no complete answer within 400 ms/);
    assert.equal(aborted, true, "the fetch was told to stop");
  });

  await t.step("a getMedia that ignores the signal is still not waited for", async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deaf: GetMedia = () =>
      new Promise((resolve) => {
        timer = setTimeout(
          () => resolve({ kind: "file", bytes: jpeg, contentType: "image/jpeg" }),
          6_000,
        );
      });
    const started = performance.now();
    const result = await createMediaPipeline({ ...base, getMedia: deaf }).process(
      { msgType: "image", mediaId: "m" },
      server.base,
    );
    clearTimeout(timer);
    assert.ok(performance.now() - started < 2_000);
    assert.match(result.error!, /within 400 ms/);
  });

  await t.step("a video body that stalls after the headers is abandoned too", async () => {
    const started = performance.now();
    const result = await createMediaPipeline({
      ...base,
      getMedia: mapGetMedia({ v: { kind: "video_url", url: `${hosts.cdnUrl}/stall` } }),
    }).process({ msgType: "video", mediaId: "v" }, server.base);
    assert.ok(performance.now() - started < 2_000);
    assert.match(result.error!, /within 400 ms/);
  });

  await t.step("files over maxBytes are refused, declared or streamed", async () => {
    const huge = new Uint8Array(maxBytes + 1);
    huge.set(jpeg);
    const pipeline = createMediaPipeline({
      ...base,
      getMedia: mapGetMedia({
        big: { kind: "file", bytes: huge, contentType: "image/jpeg" },
        declared: { kind: "video_url", url: `${hosts.cdnUrl}/huge-declared` },
        endless: { kind: "video_url", url: `${hosts.cdnUrl}/huge-stream` },
      }),
    });
    for (const mediaId of ["big", "declared", "endless"]) {
      const result = await pipeline.process({ msgType: "video", mediaId }, server.base);
      assert.equal(result.media_path, "", mediaId);
      assert.match(result.error!, new RegExp(`over the limit of ${maxBytes} bytes`), mediaId);
      if (mediaId === "endless") assert.match(result.error!, /stopped reading/);
    }
    // The server learns of the hang-up a moment after the client cancels.
    for (let i = 0; i < 100 && !hosts.endlessCancelled(); i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(hosts.endlessCancelled(), true, "the endless body was cancelled");
  });

  await t.step("an empty file (HTTP 200, no bytes) is an error, not a picture", async () => {
    const pipeline = createMediaPipeline({
      ...base,
      getMedia: mapGetMedia({
        empty: { kind: "file", bytes: new Uint8Array(0), contentType: "image/jpeg" },
        "empty-video": { kind: "video_url", url: `${hosts.cdnUrl}/empty` },
      }),
    });
    for (const mediaId of ["empty", "empty-video"]) {
      const result = await pipeline.process({ msgType: "video", mediaId }, server.base);
      assert.equal(result.media_path, "", mediaId);
      assert.match(result.error!, /sent an empty file/, mediaId);
    }
    // An image still has its PicUrl to fall back on.
    const image = await pipeline.process(
      { msgType: "image", mediaId: "empty", picUrl: `${hosts.cdnUrl}/img.jpg` },
      server.base,
    );
    assert.match(image.media_path, /\.jpg\?/);
    assert.equal(image.error, undefined);
  });

  await t.step("a forged PicUrl pointing inside the network is never fetched", async () => {
    const pipeline = createMediaPipeline({ ...base, getMedia: null });
    for (const picUrl of [`${hosts.internalUrl}/admin`, `${hosts.cdnUrl}/redirect-internal`]) {
      const result = await pipeline.process({ msgType: "image", picUrl }, server.base);
      assert.equal(result.media_path, "");
      assert.match(result.error!, /is not on the allowed list/);
    }
    assert.deepEqual(hosts.internalHits, []);
  });

  await t.step("an image whose media id and PicUrl both fail names both reasons", async () => {
    const result = await createMediaPipeline(base).process(
      { msgType: "image", mediaId: "gone", picUrl: "http://169.254.169.254/x" },
      server.base,
    );
    assert.equal(result.media_path, "");
    assert.match(result.error!, /errcode 40007.*PicUrl fallback failed: .*not on the allowed list/);
  });

  await t.step("no MediaId, or no WeChat credentials, is said plainly", async () => {
    const noId = await createMediaPipeline(base).process({ msgType: "voice" }, server.base);
    assert.equal(noId.error, "Cannot fetch voice: the message has no MediaId");
    const noApi = await createMediaPipeline({ ...base, getMedia: null }).process(
      { msgType: "video", mediaId: "x" },
      server.base,
    );
    assert.match(noApi.error!, /credentials .* are not configured/);
  });

  await t.step({
    name: "voice ffmpeg cannot decode: the original is still served, with the error",
    ignore: skipWithoutFfmpeg,
    fn: async () => {
      const garbage = new Uint8Array(3000);
      garbage.set(new TextEncoder().encode("#!AMR\n"));
      for (let i = 6; i < garbage.length; i++) garbage[i] = (i * 7919) & 0xff;
      const result = await createMediaPipeline({
        ...base,
        getMedia: mapGetMedia({ g: { kind: "file", bytes: garbage, contentType: "audio/amr" } }),
        transcodeTimeoutMs: 30_000,
      }).process({ msgType: "voice", mediaId: "g", format: "amr" }, server.base);
      assert.match(result.error!, /^Cannot transcode voice: ffmpeg/);
      assert.match(result.media_path, /\.amr\?e=\d+&t=/);
      assert.equal(result.content_type, "audio/amr");
      assert.deepEqual((await fetchBytes(result.media_path)).bytes, garbage);
    },
  });

  await t.step("a storage that fails is reported, not thrown", async () => {
    const result = await createMediaPipeline({
      ...base,
      storage: { ...storage, put: () => Promise.reject(new Error("disk full")) },
      getMedia: mapGetMedia({ i: { kind: "file", bytes: jpeg, contentType: "image/jpeg" } }),
    }).process({ msgType: "image", mediaId: "i" }, server.base);
    assert.deepEqual(result, { media_path: "", error: "Cannot store image: disk full" });
  });

  await hosts.close();
  await server.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test({
  name: "createMediaPipeline() end to end: fake WeChat, client, pipeline, served URL",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "pipeline-e2e-test-" });
    const fixtures = await makeFixtures(dir);
    const amr = await Deno.readFile(VOICE_AMR);
    const fake = await startFakeWechat();
    fake.addMedia("voice-1", amr, "audio/amr", "voice.amr");
    fake.addMedia("image-1", fixtures.jpeg, "image/jpeg");
    fake.addVideo("video-1", fixtures.mp4);
    fake.addMedia("thumb-1", fixtures.png, "image/png");
    const client = createWechatClient({
      apiBase: fake.url,
      appId: "wxfake0000000000",
      secret: "fake-secret",
      retries: 0,
    });
    const { storage, signer, server } = setup(dir);
    const pipeline = createMediaPipeline({
      storage,
      signer,
      getMedia: client.getMedia,
      allowedHosts: [new URL(fake.url).host],
      maxBytes: 2 * MB,
      limiter: createToolLimiter(),
      timeoutMs: 1_000,
    });

    await t.step("voice plays for as long as the AMR", async () => {
      const result = await pipeline.process({ msgType: "voice", mediaId: "voice-1" }, server.base);
      assert.equal(result.error, undefined);
      const { bytes } = await fetchBytes(result.media_path);
      await Deno.writeFile(`${dir}/e2e.mp3`, bytes);
      const seconds = (await ffprobe(`${dir}/e2e.mp3`)).duration;
      assert.ok(Math.abs(seconds - amrDurationSeconds(amr)) < 0.2, `${seconds} s`);
    });

    await t.step("image and video come back byte for byte, with the thumb", async () => {
      const image = await pipeline.process({ msgType: "image", mediaId: "image-1" }, server.base);
      assert.deepEqual((await fetchBytes(image.media_path)).bytes, fixtures.jpeg);
      const video = await pipeline.process(
        { msgType: "video", mediaId: "video-1", thumbMediaId: "thumb-1" },
        server.base,
      );
      assert.equal(video.error, undefined);
      assert.deepEqual((await fetchBytes(video.media_path)).bytes, fixtures.mp4);
      assert.deepEqual((await fetchBytes(video.thumb_path!)).bytes, fixtures.png);
    });

    await t.step("a missing media id is WeChat's 40007 in error", async () => {
      const result = await pipeline.process({ msgType: "image", mediaId: "nope" }, server.base);
      assert.equal(result.media_path, "");
      assert.match(result.error!, /errcode 40007/);
    });

    await t.step("a file over maxBytes is refused", async () => {
      const huge = new Uint8Array(3 * MB);
      huge.set(fixtures.jpeg);
      fake.addMedia("huge-1", huge, "image/jpeg");
      const result = await pipeline.process({ msgType: "image", mediaId: "huge-1" }, server.base);
      assert.equal(result.media_path, "");
      assert.match(result.error!, /^Cannot fetch image \(media_id huge-1\): .*over 2097152/);
    });

    await t.step("a WeChat that takes 6 s is abandoned at the deadline", async () => {
      fake.delay("cgi-bin/media/get", 6_000);
      const started = performance.now();
      const result = await pipeline.process({ msgType: "image", mediaId: "image-1" }, server.base);
      assert.ok(performance.now() - started < 3_000);
      assert.equal(result.media_path, "");
      assert.match(result.error!, /within 1000 ms/);
      fake.delay("cgi-bin/media/get", 0);
    });

    await server.close();
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  },
});
