// A follower's voice that makes ffmpeg complain about every frame: 2 MB of AMR frames marked
// NO_DATA (one byte each, what ffmpeg calls a corrupt bitstream) make it write 236 MB of error
// lines in 14 s and still exit 0. The bridge keeps only the tail of that stderr, so a spawned
// main.ts does not grow by it (VmHWM, from /proc), and the voice still reaches the agent. Such a
// voice (11 hours by its frames) is now refused by the length cap before ffmpeg runs; the test
// stays as the bound on the whole path.

import assert from "node:assert/strict";
import { connectAgent, post } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";
import { skipWithoutFfmpeg } from "./_media_tools.ts";

const B = "/im_component/wx_official_account";
const MB = 1024 * 1024;
/** Far under the 236 MB of stderr, far over the runtime's own growth for one voice. */
const MAX_GROWTH = 100 * MB;

/** `#!AMR\n` and then `frames` one-byte NO_DATA frames (frame type 15). */
function noDataAmr(frames: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(6 + frames).fill(0x7c);
  bytes.set(new TextEncoder().encode("#!AMR\n"));
  return bytes;
}

Deno.test({
  name: "ffmpeg's stderr for a hostile voice is not held in memory (spawned main.ts, VmHWM)",
  ignore: skipWithoutFfmpeg,
  async fn() {
    const voice = noDataAmr(2 * MB);
    const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/cgi-bin/stable_token") {
        return Response.json({ access_token: "token", expires_in: 7200 });
      }
      if (path === "/cgi-bin/media/get") {
        return new Response(voice, { headers: { "content-type": "audio/amr" } });
      }
      return Response.json({ errcode: 0, errmsg: "ok" });
    });
    const bridge = await startMain({
      WECHAT_APPID: "wxstderr",
      WECHAT_SECRET: "s",
      WECHAT_API_BASE: `http://127.0.0.1:${upstream.addr.port}`,
    });
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=A`);
    try {
      // Settle the runtime's own growth (JIT, first requests) before the baseline.
      await new Promise((r) => setTimeout(r, 500));
      const before = bridge.peakRss();
      const xml =
        `<xml><ToUserName><![CDATA[A]]></ToUserName><FromUserName><![CDATA[oErr]]></FromUserName><CreateTime>1700000001</CreateTime><MsgType><![CDATA[voice]]></MsgType><MediaId><![CDATA[noisy]]></MediaId><Format><![CDATA[amr]]></Format><MsgId>7</MsgId></xml>`;
      const res = await post(`${bridge.base}${B}/send_xml`, xml);
      assert.equal(res.text, "success");
      const got = await agent.waitFor(
        (e) => e.result.code === 1003 && e.data["id"] === "7",
        60_000,
      );
      const growth = bridge.peakRss() - before;
      assert.match(String(got.data.msg?.["media_path"]), /\/media\/[0-9a-f]{64}\./);
      assert.ok(growth < MAX_GROWTH, `peak RSS grew by ${(growth / MB).toFixed(1)} MB`);
    } finally {
      await agent.close();
      await bridge.stop();
      await upstream.shutdown();
    }
  },
});
