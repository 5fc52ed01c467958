// Every ffmpeg and ffprobe the bridge starts waits in its one limiter (2 at once): a video reply's
// cover, an MP3 voice upload's length and a follower's voice, all at the same time, through a real
// bridge. ffmpeg and ffprobe are wrappers that note each start and end in a log, so the count is
// of the processes themselves, whoever started them; a pause before the real tool makes runs
// that are not held back overlap.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { DEFAULT_MAX_TOOL_RUNS } from "../../src/media/tool_limiter.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import {
  amrFrames,
  amrOf,
  countingTool,
  makeFixtures,
  peakOf,
  skipWithoutFfmpeg,
  VOICE_AMR,
  voiceMp3,
} from "./_media_tools.ts";

const B = "/im_component/wx_official_account";
const APPID = "wxlimit";
const SECRET = "secret";

Deno.test({
  name: "every ffmpeg and ffprobe run waits in the one limiter: covers, uploads and voices at once",
  ignore: skipWithoutFfmpeg,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "tool-limit-" });
    const log = `${dir}/runs.log`;
    await Deno.writeTextFile(log, "");
    const { mp4 } = await makeFixtures(dir);
    const voice = amrOf(amrFrames(await Deno.readFile(VOICE_AMR)), 250);
    const mp3 = await voiceMp3(dir);
    const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
    const files = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response(new Uint8Array(mp4), { headers: { "content-type": "video/mp4" } }),
    );
    const server = await startBridge({
      env: {
        WECHAT_APPID: APPID,
        WECHAT_SECRET: SECRET,
        WECHAT_API_BASE: fake.url,
        MEDIA_ALLOWED_HOSTS: new URL(fake.url).host,
        MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}`,
      },
      ffmpeg: await countingTool(dir, "ffmpeg", log),
      ffprobe: await countingTool(dir, "ffprobe", log),
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
    try {
      const followers = ["oL1", "oL2", "oL3", "oL4"];
      for (const [i, follower] of followers.entries()) {
        const id = String(9_400_000 + i);
        const res = await post(`${server.base}${B}/send_xml`, textXml(follower, "A", "hi", id));
        assert.equal(res.text, "success");
        await agent.waitFor((e) => e.data["id"] === id);
      }
      fake.addMedia("limit-voice", voice, "audio/amr", "voice.amr");

      const videoReply = (follower: string) =>
        post(
          `${server.base}${B}/send?userid=A`,
          JSON.stringify({
            data: {
              msg_type: "video",
              contact_id: follower,
              msg: { media_url: `http://127.0.0.1:${files.addr.port}/clip.mp4` },
            },
          }),
          { "content-type": "application/json" },
        );
      // An MP3's length is ffprobe's; an AMR's is its frames', with no tool run.
      // By another agent: A's four video replies take every place an agent has for files.
      const voiceUpload = (body: Uint8Array, type: string) =>
        fetch(`${server.base}${B}/upload?userid=U`, {
          method: "POST",
          body: new Uint8Array(body),
          headers: { "content-type": type },
        }).then(async (res) => ({ status: res.status, text: await res.text() }));
      const followerVoice = async (n: number) => {
        const id = String(9_400_100 + n);
        const xml =
          `<xml><ToUserName><![CDATA[A]]></ToUserName><FromUserName><![CDATA[oV${n}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[limit-voice]]></MediaId><Format><![CDATA[amr]]></Format><MsgId>${id}</MsgId></xml>`;
        assert.equal((await post(`${server.base}${B}/send_xml`, xml)).text, "success");
        return (await agent.waitFor((e) => e.data["id"] === id, 60_000)).data.msg!;
      };

      const [replies, uploads, voices] = await Promise.all([
        Promise.all(followers.map(videoReply)),
        Promise.all([voiceUpload(mp3, "audio/mpeg"), voiceUpload(voice, "audio/amr")]),
        Promise.all([followerVoice(1), followerVoice(2)]),
      ]);
      for (const reply of replies) assert.equal(reply.status, 200, reply.text);
      for (const upload of uploads) assert.equal(upload.status, 201, upload.text);
      for (const msg of voices) {
        assert.equal(msg["content_type"], "audio/mpeg", String(msg["error"]));
      }
      // Every video went with a cover the bridge made.
      const thumbs = fake.calls.filter((c) =>
        c.path.endsWith("cgi-bin/media/upload") && c.query["type"] === "thumb"
      );
      assert.equal(thumbs.length, followers.length);

      const { peak, runs } = await peakOf(log);
      // 4 covers, the MP3 upload's probe, and a probe and a conversion for each voice.
      assert.ok(runs >= 9, `${runs} runs`);
      assert.ok(peak <= DEFAULT_MAX_TOOL_RUNS, `${peak} ffmpeg/ffprobe processes at once`);
    } finally {
      await agent.close();
      await server.close();
      await files.shutdown();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
