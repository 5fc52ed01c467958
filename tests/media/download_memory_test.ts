// Issue 14.3: downloads stop at their size limit while reading. A spawned main.ts is offered a
// 300 MB stream, as an agent's media_url and as WeChat's media/get, and its peak resident memory
// (VmHWM, from /proc) must not grow by anything like the stream: the body is counted and cut.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";

const B = "/im_component/wx_official_account";
const MB = 1024 * 1024;
const OFFERED = 300 * MB;
/** Far under the 300 MB offered, far over the 10-20 MB the limits allow plus the runtime's own. */
const MAX_GROWTH = 100 * MB;

/** 300 MB in 1 MB chunks, starting with `magic`; counts what was actually handed to the socket. */
function hugeStream(magic: number[], sent: { bytes: number }): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent.bytes >= OFFERED) return controller.close();
      const chunk = new Uint8Array(MB);
      if (sent.bytes === 0) chunk.set(magic);
      sent.bytes += chunk.byteLength;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 1 });
}

Deno.test("a 300 MB download is cut at the limit while reading (spawned main.ts, VmHWM)", async (t) => {
  const mediaUrlSent = { bytes: 0 };
  const mediaGetSent = { bytes: 0 };
  // WeChat's API and a file host in one: only the two huge answers matter.
  const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    const json = (body: unknown) => Response.json(body);
    switch (path) {
      case "/cgi-bin/stable_token":
        return json({ access_token: "token", expires_in: 7200 });
      case "/cgi-bin/media/get":
        return new Response(hugeStream([0xff, 0xd8, 0xff, 0xe0], mediaGetSent), {
          headers: { "content-type": "image/jpeg" },
        });
      case "/big.png":
        return new Response(hugeStream([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10], mediaUrlSent), {
          headers: { "content-type": "image/png" },
        });
      default:
        return json({ errcode: 0, errmsg: "ok", media_id: "m" });
    }
  });
  const up = `http://127.0.0.1:${upstream.addr.port}`;
  const bridge = await startMain({
    WECHAT_APPID: "wxmem",
    WECHAT_SECRET: "s",
    WECHAT_API_BASE: up,
    MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${upstream.addr.port}`,
    MEDIA_MAX_BYTES: String(20 * MB),
  });
  const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=A`);
  try {
    const res = await post(`${bridge.base}${B}/send_xml`, textXml("oMem", "A", "hi", "1"));
    assert.equal(res.text, "success");
    await agent.waitFor((e) => e.data["contact_id"] === "oMem" && e.result.code === 1001);
    // Settle the runtime's own growth (JIT, first requests) before the baseline.
    await new Promise((r) => setTimeout(r, 500));

    await t.step("an agent's media_url of 300 MB", async () => {
      const before = bridge.peakRss();
      const answer = await post(
        `${bridge.base}${B}/send?userid=A`,
        JSON.stringify({
          data: {
            msg_type: "image",
            contact_id: "oMem",
            client_id: "big",
            msg: { media_url: `${up}/big.png` },
          },
          result: { code: 1001, message: "common" },
        }),
        { "content-type": "application/json" },
      );
      const growth = bridge.peakRss() - before;
      // The figure the issue asks for, in the test's output.
      // deno-lint-ignore no-console
      console.log(
        `media_url: peak RSS +${(growth / MB).toFixed(1)} MB; upstream sent ${
          (mediaUrlSent.bytes / MB).toFixed(0)
        } MB of 300`,
      );
      assert.equal(answer.status, 413, answer.text);
      assert.match(JSON.parse(answer.text).result.message, /larger than \d+ bytes/);
      assert.ok(growth < MAX_GROWTH, `peak RSS grew by ${(growth / MB).toFixed(1)} MB`);
      assert.ok(mediaUrlSent.bytes < OFFERED, "the bridge read the whole stream");
    });

    await t.step("WeChat's media/get of 300 MB for a follower's image", async () => {
      const before = bridge.peakRss();
      const xml =
        `<xml><ToUserName><![CDATA[A]]></ToUserName><FromUserName><![CDATA[oMem]]></FromUserName><CreateTime>1700000001</CreateTime><MsgType><![CDATA[image]]></MsgType><MediaId><![CDATA[huge]]></MediaId><MsgId>2</MsgId></xml>`;
      const res = await post(`${bridge.base}${B}/send_xml`, xml);
      assert.equal(res.text, "success");
      const image = await agent.waitFor(
        (e) => e.result.code === 1002 && e.data["id"] === "2",
        60_000,
      );
      const growth = bridge.peakRss() - before;
      // The figure the issue asks for, in the test's output.
      // deno-lint-ignore no-console
      console.log(
        `media/get: peak RSS +${(growth / MB).toFixed(1)} MB; upstream sent ${
          (mediaGetSent.bytes / MB).toFixed(0)
        } MB of 300`,
      );
      assert.equal(image.data.msg?.["media_path"], "");
      assert.match(String(image.data.msg?.["error"]), /more than \d+ bytes|over the limit/);
      assert.ok(growth < MAX_GROWTH, `peak RSS grew by ${(growth / MB).toFixed(1)} MB`);
      assert.ok(mediaGetSent.bytes < OFFERED, "the bridge read the whole stream");
    });
  } finally {
    await agent.close();
    await bridge.stop();
    await upstream.shutdown();
  }
});
