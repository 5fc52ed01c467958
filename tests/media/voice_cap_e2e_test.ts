// A follower's voice that is 20 MB of noise behind an AMR header, through a real bridge and the
// fake WeChat: its conversion stops at the cap instead of running into ffmpeg's 30 s deadline
// (and a 110 MB MP3), the agent gets the message with the reason, and the bridge keeps serving.

import assert from "node:assert/strict";
import { VOICE_CAP_SECONDS } from "../../src/media/transcode.ts";
import { post, textXml } from "../helpers/agent.ts";
import { withMediaBridge } from "../helpers/media_bridge.ts";
import { noiseAmr, skipWithoutFfmpeg } from "./_media_tools.ts";

const B = "/im_component/wx_official_account";

Deno.test({
  name: "a hostile voice stops at the conversion cap; the agent is told and the bridge serves on",
  ignore: skipWithoutFfmpeg,
  async fn() {
    const noise = noiseAmr(20_000_000);
    await withMediaBridge({}, async (server, fake, agent) => {
      fake.addMedia("noise-1", noise, "audio/amr", "voice.amr");
      const xml =
        `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oNoise]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[noise-1]]></MediaId><Format><![CDATA[amr]]></Format><MsgId>9100001</MsgId></xml>`;
      const res = await post(`${server.base}${B}/send_xml`, xml);
      assert.equal(res.text, "success");

      const got = await agent.waitFor(
        (e) => e.data["id"] === "9100001" && e.result.code === 1003,
        60_000,
      );
      const msg = got.data.msg!;
      // The cap ended the conversion, not ffmpeg's 30 s deadline ("took longer than").
      assert.match(
        String(msg["error"]),
        new RegExp(`Cannot transcode voice: it lasts longer than ${VOICE_CAP_SECONDS} s`),
      );
      // What the follower sent is still there for the agent, as it came; no MP3 was kept.
      const original = await fetch(String(msg["media_path"]));
      assert.equal(original.status, 200);
      assert.equal(original.headers.get("content-type"), "audio/amr");
      assert.equal((await original.arrayBuffer()).byteLength, noise.length);
      assert.equal(msg["media_path"], msg["original_path"]);

      // The bridge goes on: the same follower's next words arrive.
      const after = await post(
        `${server.base}${B}/send_xml`,
        textXml("oNoise", "gh_account", "还在吗", "9100002"),
      );
      assert.equal(after.text, "success");
      const text = await agent.waitFor((e) => e.data["id"] === "9100002", 10_000);
      assert.equal(text.data.msg?.["content"], "还在吗");
      assert.equal((await fetch(`${server.base}/healthz`)).status, 200);
    });
  },
});
