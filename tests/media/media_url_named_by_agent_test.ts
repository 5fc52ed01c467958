// History signs a reply's `media_url` anew whichever key signed it (a changed AGENT_SECRET), but
// what an agent's reply says as its media_url is the agent's own text: with a media_id it is
// stored as given, and a URL shaped like the bridge's (`…/media/<sha256>.png?t=<43 characters>`)
// came back from history signed for real. An agent named a file it was never given (another
// agent's follower's picture, its key seen in a revoked URL) and history handed it a URL that
// opened it. A real bridge, a real agent's socket, the fake WeChat.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const APPID = "wxnamedurl";
const SECRET = "secret";
const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);

Deno.test("a media_url an agent makes up never comes back from history signed", async () => {
  const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
  const server = await startBridge({
    env: { WECHAT_APPID: APPID, WECHAT_SECRET: SECRET, WECHAT_API_BASE: fake.url },
  });
  const other = await connectAgent(`${server.wsBase}${B}/msg?userid=B`);
  let agent: Awaited<ReturnType<typeof connectAgent>> | null = null;
  try {
    // Agent B's follower sends a picture; only B is online, so it is B's.
    fake.addMedia("img-victim", PNG, "image/png", "photo.png");
    const res = await post(
      `${server.base}${B}/send_xml`,
      `<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oVictim]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><MediaId><![CDATA[img-victim]]></MediaId><MsgId>8400001</MsgId></xml>`,
    );
    assert.equal(res.text, "success");
    const got: Received = await other.waitFor((e) => e.data["id"] === "8400001", 10_000);
    const victimUrl = new URL(got.data.msg!["media_path"] as string);
    const key = victimUrl.pathname.split("/").at(-1)!;
    await other.close();

    // Agent A, alone online now, gets a follower of its own.
    agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
    await post(`${server.base}${B}/send_xml`, textXml("oMine", "gh_x", "hi", "8400002"));
    await agent.waitFor((e) => e.data["id"] === "8400002");
    const refused = await fetch(`${server.base}${B}/history?userid=A&contact_id=oVictim`);
    assert.equal(refused.status, 403, "A may not read B's follower");
    await refused.body?.cancel();

    // A's own file (not B's follower's: other bytes), so WeChat takes the reply; its
    // media_url names B's follower's file.
    const own = Uint8Array.from([...PNG, 0x41]);
    const up = await fetch(`${server.base}${B}/upload?userid=A`, {
      method: "POST",
      body: own,
      headers: { "content-type": "image/png" },
    });
    const uploaded = await up.json();
    assert.equal(up.status, 201, JSON.stringify(uploaded));
    assert.ok(!String(uploaded.media_url).includes(key));
    const madeUp = `https://attacker.example/media/${key}?t=${"A".repeat(43)}`;
    const answer = await fetch(`${server.base}${B}/send?userid=A`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        data: {
          msg_type: "image",
          contact_id: "oMine",
          msg: { media_id: uploaded.media_id, media_url: madeUp },
        },
      }),
    });
    const said = await answer.json();
    assert.equal(answer.status, 400, JSON.stringify(said));
    assert.match(said.result.message, /without the bridge's signature/);

    const history = await fetch(`${server.base}${B}/history?userid=A&contact_id=oMine`);
    const body = await history.json();
    assert.equal(history.status, 200, JSON.stringify(body));
    for (const item of body.messages as Array<{ msg: Record<string, unknown> }>) {
      const url = item.msg["media_url"];
      if (typeof url !== "string" || !url.includes(key)) continue;
      const asked = new URL(url);
      const served = await fetch(new URL(asked.pathname + asked.search, server.base));
      await served.body?.cancel();
      assert.notEqual(served.status, 200, `history signed ${url} for a file A was never given`);
    }
  } finally {
    await agent?.close();
    await other.close().catch(() => {});
    await server.close();
    await fake.close();
  }
});

// A follower's `media_path`, `original_path` and `thumb_path` are signed anew by history too,
// as the pipeline wrote them; but every other tag of WeChat's XML is passed on by its snake_case
// name, and a text message (no media, so no pipeline) kept an <OriginalPath> as the follower's
// `original_path`. Whoever posts a callback (the token's holder, or anyone on a bridge without
// WECHAT_TOKEN) named a file by its key, and history signed it for the follower's agent.
Deno.test("a media field in WeChat's XML is never taken for the bridge's own", async () => {
  const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
  const server = await startBridge({
    env: { WECHAT_APPID: APPID, WECHAT_SECRET: SECRET, WECHAT_API_BASE: fake.url },
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    fake.addMedia("img-other", PNG, "image/png", "photo.png");
    await post(
      `${server.base}${B}/send_xml`,
      `<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oOther]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><MediaId><![CDATA[img-other]]></MediaId><MsgId>8400011</MsgId></xml>`,
    );
    const got: Received = await agent.waitFor((e) => e.data["id"] === "8400011", 10_000);
    const key = new URL(got.data.msg!["media_path"] as string).pathname.split("/").at(-1)!;

    const named = `https://attacker.example/media/${key}?t=${"A".repeat(43)}`;
    const res = await post(
      `${server.base}${B}/send_xml`,
      `<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oText]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hi]]></Content><OriginalPath><![CDATA[${named}]]></OriginalPath><ThumbPath><![CDATA[${named}]]></ThumbPath><MediaPath><![CDATA[${named}]]></MediaPath><MsgId>8400012</MsgId></xml>`,
    );
    assert.equal(res.text, "success");
    await agent.waitFor((e) => e.data["id"] === "8400012");

    const history = await fetch(`${server.base}${B}/history?userid=A&contact_id=oText`);
    const body = await history.json();
    assert.equal(history.status, 200, JSON.stringify(body));
    const item = (body.messages as Array<{ id: string; msg: Record<string, unknown> }>)
      .find((m) => m.id === "8400012")!;
    for (const field of ["original_path", "thumb_path", "media_path"]) {
      const url = item.msg[field];
      if (typeof url !== "string") continue;
      const asked = new URL(url);
      const served = await fetch(new URL(asked.pathname + asked.search, server.base));
      await served.body?.cancel();
      assert.notEqual(served.status, 200, `history signed ${field} ${url} from WeChat's XML`);
    }
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});
