// An agent's file for a reply (issue #4, "the agent uploads a file"): POST B/upload, then a
// reply with the media_id, against the fake WeChat and in demo mode.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import {
  amrFrames,
  amrOf,
  countingTool,
  ffmpeg,
  noiseAmr,
  peakOf,
  skipWithoutFfmpeg,
  VOICE_AMR,
} from "../media/_media_tools.ts";

const B = "/im_component/wx_official_account";
// The smallest valid PNG: one transparent pixel.
const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);

const upload = (base: string, query: string, body: Uint8Array, type: string) =>
  fetch(`${base}${B}/upload?${query}`, {
    method: "POST",
    body: body as Uint8Array<ArrayBuffer>,
    headers: { "content-type": type },
  });

Deno.test("POST upload gives an agent's file a WeChat media_id for its reply", async (t) => {
  const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
  const server = await startBridge({
    env: { WECHAT_APPID: "wxtest", WECHAT_SECRET: "secret", WECHAT_API_BASE: fake.url },
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=up`);
  try {
    await post(`${server.base}${B}/send_xml`, textXml("oUp", "gh_account", "hi", "8100001"));
    await agent.waitFor((e) => e.data["id"] === "8100001");

    let mediaId = "";
    await t.step("the file goes to media/upload and its media_id comes back", async () => {
      const res = await upload(server.base, "userid=up&filename=receipt.png", PNG, "image/png");
      const body = await res.json();
      assert.equal(res.status, 201, JSON.stringify(body));
      assert.equal(body.type, "image");
      const call = fake.calls.find((c) => c.path.endsWith("cgi-bin/media/upload"));
      assert.ok(call, "media/upload was not called");
      mediaId = body.media_id;
      assert.ok(mediaId.length > 0);
      const copy = await fetch(body.media_url);
      assert.deepEqual(new Uint8Array(await copy.arrayBuffer()), PNG);
    });
    await t.step("a reply with that media_id reaches WeChat as an image", async () => {
      agent.send({
        data: {
          msg_type: "image",
          contact_id: "oUp",
          client_id: "img-1",
          msg: { media_id: mediaId },
        },
        result: { code: 1002, message: "common" },
      });
      await agent.waitFor((e) => e.result.code === 102 && e.data.msg?.["client_id"] === "img-1");
      const sent = fake.sent.at(-1) as { msgtype: string; image: { media_id: string } };
      assert.equal(sent.msgtype, "image");
      assert.equal(sent.image.media_id, mediaId);
    });
    await t.step("a type WeChat does not take is 415, an oversized voice 413", async () => {
      const text = await upload(
        server.base,
        "userid=up",
        new TextEncoder().encode("hi"),
        "text/plain",
      );
      assert.equal(text.status, 415);
      await text.body?.cancel();
      const big = await upload(
        server.base,
        "userid=up",
        new Uint8Array(2 * 1024 * 1024 + 1),
        "audio/amr",
      );
      assert.equal(big.status, 413);
      assert.equal(
        (await big.json()).error,
        "Cannot upload: WeChat takes a voice of at most 2097152 bytes (2 MB); the file is larger",
      );
    });
    await t.step("a text file declared as an image is 415", async () => {
      const res = await upload(
        server.base,
        "userid=up&filename=notes.png",
        new TextEncoder().encode("These are my notes\n"),
        "image/png",
      );
      assert.equal(res.status, 415);
      assert.match((await res.json()).error, /not image\/png/);
    });
    await t.step("an upload without an agent is refused", async () => {
      const res = await upload(server.base, "", PNG, "image/png");
      assert.equal(res.status, 400);
      await res.body?.cancel();
    });
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});

Deno.test("POST upload in demo mode keeps the file for the simulator", async () => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=demo`);
  try {
    await post(`${server.base}${B}/send_xml`, textXml("oDemo", "gh_demo", "hi", "8100002"));
    await agent.waitFor((e) => e.data["id"] === "8100002");
    const res = await upload(server.base, "userid=demo", PNG, "image/png");
    const body = await res.json();
    assert.equal(res.status, 201);
    assert.match(body.media_id, /^demo_/);
    agent.send({
      data: {
        msg_type: "image",
        contact_id: "oDemo",
        client_id: "d-1",
        msg: { media_id: body.media_id, media_url: body.media_url },
      },
      result: { code: 1002, message: "common" },
    });
    await agent.waitFor((e) => e.result.code === 102 && e.data.msg?.["client_id"] === "d-1");
    const replies = await (await fetch(`${server.base}${B}/demo/replies?contact_id=oDemo&since=0`))
      .json();
    assert.equal(replies.replies.at(-1).msg_type, "image");
    assert.equal(replies.replies.at(-1).msg.media_url, body.media_url);
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test({
  name: "POST upload measures a voice: over WeChat's 60 s is 415 before WeChat sees it",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const frames = amrFrames(await Deno.readFile(VOICE_AMR));
    const dir = await Deno.makeTempDir({ prefix: "upload-voice-" });
    const log = `${dir}/runs.log`;
    await Deno.writeTextFile(log, "");
    // The real voice three times over (73 s), as LAME encodes it.
    await ffmpeg(
      ...["-stream_loop", "2", "-i", VOICE_AMR, "-c:a", "libmp3lame", "-b:a", "16k"],
      ...["-y", `${dir}/long.mp3`],
    );
    const longMp3 = await Deno.readFile(`${dir}/long.mp3`);
    const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
    const server = await startBridge({
      env: { WECHAT_APPID: "wxtest", WECHAT_SECRET: "secret", WECHAT_API_BASE: fake.url },
      ffprobe: await countingTool(dir, "ffprobe", log),
    });
    const uploads = () => fake.calls.filter((c) => c.path.endsWith("cgi-bin/media/upload"));
    try {
      await t.step("a real 58 s voice goes to WeChat", async () => {
        const res = await upload(server.base, "userid=up", amrOf(frames, 2900), "audio/amr");
        const body = await res.json();
        assert.equal(res.status, 201, JSON.stringify(body));
        assert.equal(body.type, "voice");
        assert.equal(uploads().length, 1);
      });
      await t.step("a real 2-minute voice is refused, with its length", async () => {
        const res = await upload(server.base, "userid=up", amrOf(frames, 6000), "audio/amr");
        assert.equal(res.status, 415);
        assert.match(
          (await res.json()).error,
          /^Cannot upload: WeChat takes a voice of at most 60 s; the file lasts 120\.0 s$/,
        );
        assert.equal(uploads().length, 1);
      });
      await t.step("2 MB of the real voice's frames (21 minutes) too, at once", async () => {
        const res = await upload(server.base, "userid=up", amrOf(frames, 65_000), "audio/amr");
        assert.equal(res.status, 415);
        assert.match((await res.json()).error, /at most 60 s; the file lasts 1300\.0 s$/);
        assert.equal(uploads().length, 1);
      });
      await t.step(
        "the real 24 s voice with 1 MB of noise behind it: as long as ffmpeg reads it",
        async () => {
          // ffmpeg decodes the noise to sound too: 943 s of it.
          const voice = await Deno.readFile(VOICE_AMR);
          const noisy = new Uint8Array([...voice, ...noiseAmr(1_000_006).subarray(6)]);
          const res = await upload(server.base, "userid=up", noisy, "audio/amr");
          assert.equal(res.status, 415);
          const { error } = await res.json();
          const seconds = Number(/the file lasts (\d+\.\d) s$/.exec(error)?.[1]);
          assert.ok(seconds > 900, error);
          assert.equal(uploads().length, 1);
        },
      );
      await t.step("an AMR's length is its frames': no ffprobe ran for one", async () => {
        assert.equal((await peakOf(log)).runs, 0);
      });
      await t.step("an MP3's is ffprobe's, read to just past 60 s: 'or more'", async () => {
        const res = await upload(server.base, "userid=up", longMp3, "audio/mpeg");
        assert.equal(res.status, 415);
        assert.match((await res.json()).error, /at most 60 s; the file lasts 61\.\d s or more$/);
        assert.equal((await peakOf(log)).runs, 1);
        assert.equal(uploads().length, 1);
      });
      await t.step(
        "an AMR with no frame to play is refused, and WeChat never sees it",
        async () => {
          const magic = new TextEncoder().encode("#!AMR\n");
          const cut = amrOf(frames, 1).subarray(0, 20);
          const garbage = new TextEncoder().encode("#!AMR\nthis is not a voice, only text");
          for (
            const [file, reason] of [
              [magic, /no complete frame/],
              [cut, /no complete frame/],
              [garbage, /is not a frame header/],
            ] as const
          ) {
            const res = await upload(server.base, "userid=up", file, "audio/amr");
            assert.equal(res.status, 415);
            const { error } = await res.json();
            assert.match(
              error,
              /^Cannot upload: the file is not a playable voice: Cannot parse AMR/,
            );
            assert.match(error, reason);
          }
          assert.equal(uploads().length, 1);
        },
      );
      await t.step("an AMR of pauses alone (NO_DATA, SID) is refused: none is speech", async () => {
        // ffmpeg decodes these to no sound at all, the reference decoder to silence.
        const pauses = (frame: Uint8Array, count: number) => {
          const file = new Uint8Array(6 + frame.length * count);
          file.set(new TextEncoder().encode("#!AMR\n"));
          for (let i = 0; i < count; i++) file.set(frame, 6 + i * frame.length);
          return file;
        };
        for (
          const [file, said] of [
            [pauses(Uint8Array.of(0x7c), 150), "150 frames (3.00 s)"],
            [pauses(Uint8Array.of(0x44, 0, 0, 0, 0, 0), 150), "150 frames (3.00 s)"],
            // WeChat's 2 MB as NO_DATA: 11 hours by their count.
            [pauses(Uint8Array.of(0x7c), 2 * 1024 * 1024 - 6), "2097146 frames (41942.92 s)"],
          ] as const
        ) {
          const res = await upload(server.base, "userid=up", file, "audio/amr");
          assert.equal(res.status, 415);
          assert.equal(
            (await res.json()).error,
            `Cannot upload: the file is not a playable voice: Cannot play AMR: its ${said} are ` +
              "all pauses (NO_DATA or SID), none speech",
          );
        }
        // One speech frame among the pauses is a voice.
        const mixed = new Uint8Array([...pauses(Uint8Array.of(0x7c), 50), ...frames[0]!]);
        const res = await upload(server.base, "userid=up", mixed, "audio/amr");
        assert.equal(res.status, 201, await res.text());
        assert.equal(uploads().length, 2);
      });
      await t.step("an MP3 with no audio frame is refused, and WeChat never sees it", async () => {
        const tag = longMp3.subarray(
          0,
          10 + [6, 7, 8, 9].reduce((n, i) => n * 128 + longMp3[i]!, 0),
        );
        const text = new TextEncoder().encode("this is not audio, only text\n".repeat(50));
        await ffmpeg("-i", VOICE_AMR, "-c:a", "aac", "-f", "adts", "-y", `${dir}/voice.aac`);
        const aac = await Deno.readFile(`${dir}/voice.aac`);
        for (
          const [file, reason] of [
            [tag, /an ID3 tag and no audio after it/],
            [new Uint8Array([...tag, ...text]), /no two MPEG layer III frames in a row/],
            // AAC in ADTS begins 0xFFF1, as an MPEG audio frame does.
            [aac, /no two MPEG layer III frames in a row after byte 0$/],
          ] as const
        ) {
          const res = await upload(server.base, "userid=up", file, "audio/mpeg");
          assert.equal(res.status, 415);
          const { error } = await res.json();
          assert.match(error, /^Cannot upload: the file is not a playable voice: Cannot parse MP3/);
          assert.match(error, reason);
        }
        assert.equal(uploads().length, 2);
        assert.equal((await peakOf(log)).runs, 1);
      });
    } finally {
      await server.close();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
