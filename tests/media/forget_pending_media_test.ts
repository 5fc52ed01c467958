// user_authorization_revoke reaching the bridge while the follower's picture is still being
// fetched (one instance, no Redis): the revoke found nothing stored yet, then the fetch finished
// and stored the picture, so the forgotten follower's conversation came back with it. Now the
// intake drops the follower's pending media before the store forgets it.

import assert from "node:assert/strict";
import { post, textXml } from "../helpers/agent.ts";
import { withMediaBridge } from "../helpers/media_bridge.ts";

const B = "/im_component/wx_official_account";

Deno.test("a follower forgotten while its picture is fetched: the picture is not stored afterwards", async () => {
  await withMediaBridge({}, async (server, fake, agent) => {
    const png = new Uint8Array(2_000);
    png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    fake.addMedia("revoked-img", png, "image/png", "photo.png");
    // media/get is slow: the picture is still downloading when the revoke comes.
    fake.delay("cgi-bin/media/get", 1500);
    const send = async (xml: string) => {
      const res = await post(`${server.base}${B}/send_xml`, xml);
      assert.deepEqual([res.status, res.text], [200, "success"]);
    };
    await send(
      "<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oRevoked]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://127.0.0.1:9/none.png]]></PicUrl><MediaId><![CDATA[revoked-img]]></MediaId><MsgId>85000001</MsgId></xml>",
    );
    // WeChat's push service names the user in <OpenID>.
    await send(
      "<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[owPushService]]></FromUserName><CreateTime>1700000001</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[oRevoked]]></OpenID><AppID><![CDATA[wxtest]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>",
    );
    // The follower authorizes again and writes: its text waits behind the pending picture, so
    // once it is here the picture's job is done.
    await send(textXml("oRevoked", "gh_account", "hello again", "85000002"));
    await agent.waitFor((e) => e.data["id"] === "85000002", 15_000);
    const ids = agent.messages().map((e) => e.data["id"]);
    assert.ok(!ids.includes("85000001"), `the forgotten picture was delivered: ${ids}`);
    const history = await fetch(`${server.base}${B}/history?userid=A&contact_id=oRevoked`);
    const items = (await history.json()).messages as Array<{ id: string }>;
    assert.deepEqual(items.map((m) => m.id), ["85000002"]);
  });
});

// The revoke and the follower's next text at once: the picture pending before the revoke was
// dropped while the revoke still deleted its journal files, the text behind it was stored, and
// the store's forget that followed deleted the text too, answered `success` and lost. Made
// certain here by holding the revoke's first file deletion until the text could be stored.
Deno.test("a text sent while a revoke drops the pending picture is kept, not forgotten with it", async () => {
  await withMediaBridge({ STORE: "" }, async (server, fake, agent) => {
    const png = new Uint8Array(2_000);
    png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    fake.addMedia("raced-img", png, "image/png", "photo.png");
    fake.delay("cgi-bin/media/get", 500);
    const send = async (xml: string) => {
      const res = await post(`${server.base}${B}/send_xml`, xml);
      assert.deepEqual([res.status, res.text], [200, "success"]);
    };
    const remove = Deno.remove;
    const removals: string[] = [];
    let release!: () => void;
    const held = new Promise<void>((resolve) => release = resolve);
    const until = async (done: () => boolean) => {
      while (!done()) await new Promise((r) => setTimeout(r, 10));
    };
    try {
      await send(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oRaced]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://127.0.0.1:9/none.png]]></PicUrl><MediaId><![CDATA[raced-img]]></MediaId><MsgId>86000001</MsgId></xml>",
      );
      Deno.remove = async (path, options) => {
        if (String(path).includes("/media-jobs/")) {
          removals.push(String(path));
          if (removals.length === 1) await held;
        }
        return await remove(path, options);
      };
      const revoked = send(
        "<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[owPushService]]></FromUserName><CreateTime>1700000001</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[oRaced]]></OpenID><AppID><![CDATA[wxtest]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>",
      );
      // The revoke is deleting the picture's journal file.
      await until(() => removals.length >= 1);
      await send(textXml("oRaced", "gh_account", "hello again", "86000002"));
      // The picture's download ended and its job, dropped, let its file go.
      await until(() => removals.length >= 2);
      // Time for the text to be stored, if nothing holds it back.
      await agent.waitFor((e) => e.data["id"] === "86000002", 2_000).catch(() => {});
      release();
      await revoked;
      await agent.waitFor((e) => e.data["id"] === "86000002", 10_000);
    } finally {
      release();
      Deno.remove = remove;
    }
    const history = await fetch(`${server.base}${B}/history?userid=A&contact_id=oRaced`);
    const body = await history.json();
    const ids = (body.messages as Array<{ id: string }> | undefined)?.map((m) => m.id);
    assert.deepEqual(
      ids,
      ["86000002"],
      `the text after the revoke is kept: ${JSON.stringify(body)}`,
    );
  });
});
