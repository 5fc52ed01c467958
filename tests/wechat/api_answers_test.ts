// WeChat's API answering what no SDK's happy path expects (an HTML page with HTTP 200, from a
// gateway in front of it), through the running bridge and the fake WeChat: what the agent gets.

import assert from "node:assert/strict";
import { post } from "../helpers/agent.ts";
import { withMediaBridge } from "../helpers/media_bridge.ts";

const B = "/im_component/wx_official_account";
// A 1×1 PNG: what the follower sent.
const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);

function imageXml(follower: string, mediaId: string, picUrl: string, msgId: string): string {
  return `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[${follower}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[${picUrl}]]></PicUrl><MediaId><![CDATA[${mediaId}]]></MediaId><MsgId>${msgId}</MsgId></xml>`;
}

Deno.test("media/get answering an HTML page with HTTP 200 does not become the follower's image", async (t) => {
  await withMediaBridge({}, async (server, fake, agent) => {
    await t.step("one HTML answer: tried again, and the agent gets the picture", async () => {
      fake.addMedia("img-1", PNG, "image/png");
      fake.failHttpNext("cgi-bin/media/get", 200, 1);
      const res = await post(
        `${server.base}${B}/send_xml`,
        imageXml("oImg1", "img-1", `${fake.url}/missing.png`, "7701"),
      );
      assert.equal(res.text, "success");
      const got = await agent.waitFor((e) => e.data["id"] === "7701", 10_000);
      const msg = got.data.msg!;
      assert.equal(msg["error"], undefined, String(msg["error"]));
      const file = await fetch(msg["media_path"] as string);
      assert.equal(file.headers.get("content-type"), "image/png");
      assert.deepEqual(new Uint8Array(await file.arrayBuffer()), PNG);
    });
    await t.step(
      "HTML every time: the agent is told, with no page stored as the image",
      async () => {
        fake.addMedia("img-2", PNG, "image/png");
        fake.failHttpNext("cgi-bin/media/get", 200, 10);
        await post(
          `${server.base}${B}/send_xml`,
          // A PicUrl the bridge may not fetch: media/get is the only way to the picture.
          imageXml("oImg2", "img-2", "http://198.51.100.1/picture.png", "7702"),
        );
        const got = await agent.waitFor((e) => e.data["id"] === "7702", 20_000);
        const msg = got.data.msg!;
        assert.equal(msg["media_path"], "");
        assert.match(String(msg["error"]), /HTML/);
      },
    );
  });
});
