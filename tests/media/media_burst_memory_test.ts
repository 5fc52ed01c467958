// Many followers sending media at once (a campaign: "send us your photo"): each follower's media
// job held its whole download in memory, and every follower's ran at the same time. 60 pictures
// of 10 MB took a spawned main.ts from 90 MB to 860 MB resident, and as many more would kill it,
// then again at each start as it resumed them all from the journal. The jobs now run a few at
// once; the others wait, journaled, and every message still reaches the agent.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";

const B = "/im_component/wx_official_account";
const MB = 1024 * 1024;
const FOLLOWERS = 40;
/** 40 downloads of 10 MB at once grew it by 500 MB and more; a few at once, by far less. */
const MAX_GROWTH = 250 * MB;

Deno.test("40 followers' 10 MB pictures at once stay within bounded memory (spawned main.ts, VmHWM)", async () => {
  const fake = await startFakeWechat({ appId: "wxburst", secret: "s" });
  for (let i = 0; i < FOLLOWERS; i++) {
    const png = new Uint8Array(10 * MB);
    png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    png[100] = i; // a file of its own each
    fake.addMedia(`burst-${i}`, png, "image/png");
  }
  // WeChat answers each download in a while: they overlap, as a burst's do.
  fake.delay("cgi-bin/media/get", 300);
  const bridge = await startMain({
    WECHAT_APPID: "wxburst",
    WECHAT_SECRET: "s",
    WECHAT_API_BASE: fake.url,
  });
  const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=A`);
  try {
    await new Promise((r) => setTimeout(r, 500));
    const before = bridge.peakRss();
    const answers = await Promise.all(
      Array.from({ length: FOLLOWERS }, (_, i) =>
        post(
          `${bridge.base}${B}/send_xml`,
          `<xml><ToUserName><![CDATA[gh_burst]]></ToUserName><FromUserName><![CDATA[oBurst${i}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><MediaId><![CDATA[burst-${i}]]></MediaId><MsgId>${
            8600000 + i
          }</MsgId></xml>`,
        )),
    );
    assert.deepEqual(new Set(answers.map((a) => a.text)), new Set(["success"]));
    // Every picture still reaches the agent, as a URL.
    for (let i = 0; i < FOLLOWERS; i++) {
      const got = await agent.waitFor((e) => e.data["id"] === String(8600000 + i), 60_000);
      assert.match(String(got.data.msg?.["media_path"]), /\/media\/[0-9a-f]{64}\.png\?/);
    }
    const growth = bridge.peakRss() - before;
    assert.ok(growth < MAX_GROWTH, `peak resident memory grew by ${Math.round(growth / MB)} MB`);
  } finally {
    await agent.close();
    await bridge.stop();
    await fake.close();
  }
});
