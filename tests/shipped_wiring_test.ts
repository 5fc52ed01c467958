// Behaviour the docs promise that only the composition root (src/server.ts) connects: each test
// runs the server main.ts builds, swapping only side effects (clock, fetch, WeChat's base URL), so
// it fails if the wiring is cut. The WeChat API is the local fake; agents are real sockets.

import assert from "node:assert/strict";
import { startFakeWechat } from "../tools/fake_wechat.ts";
import { connectAgent, post, type Received, textXml } from "./helpers/agent.ts";
import { startBridge } from "./helpers/server.ts";

const B = "/im_component/wx_official_account";
const APPID = "wxtest";
const SECRET = "secret";

const wechatEnv = (apiBase: string) => ({
  WECHAT_APPID: APPID,
  WECHAT_SECRET: SECRET,
  WECHAT_API_BASE: apiBase,
});

function eventXml(follower: string, event: string, key: string, createTime: number): string {
  return `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[${follower}]]></FromUserName><CreateTime>${createTime}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[${event}]]></Event><EventKey><![CDATA[${key}]]></EventKey></xml>`;
}

Deno.test("GET /metrics counts WeChat API calls (bridge_wechat_api_calls_total)", async (t) => {
  const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
  const server = await startBridge({ env: wechatEnv(fake.url) });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    await t.step("before any reply the counter has no series", async () => {
      const text = await (await fetch(`${server.base}/metrics`)).text();
      assert.doesNotMatch(text, /^bridge_wechat_api_calls_total\{/m);
    });

    await t.step("a reply through WeChat shows up as custom/send with errcode 0", async () => {
      const res = await post(`${server.base}${B}/send_xml`, textXml("oMetrics", "gh", "hi", "901"));
      assert.equal(res.text, "success");
      await agent.waitFor((e) => e.data["id"] === "901");
      agent.send({
        data: { msg_type: "text", contact_id: "oMetrics", client_id: "m1", msg: { content: "ok" } },
        result: { code: 1001, message: "common" },
      });
      await agent.waitFor((e) =>
        e.result.code === 102 && e.data.msg?.["event"] === "reply_sent" &&
        e.data.msg?.["client_id"] === "m1"
      );
      assert.equal(fake.sent.length, 1);
      const text = await (await fetch(`${server.base}/metrics`)).text();
      const line = text.split("\n").find((l) =>
        l.startsWith("bridge_wechat_api_calls_total{") && l.includes('api="message/custom/send"')
      );
      assert.ok(line, `no custom/send series in:\n${text}`);
      assert.match(line, /errcode="0"/);
      assert.equal(Number(line.split(" ").at(-1)), 1);
    });
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});

Deno.test("GET contacts reports the reply window WeChat allows after each kind of inbound", async (t) => {
  // A clock that stands still, so the expected expiry is exact.
  const T = 1_800_000_000_000;
  const server = await startBridge({ now: () => T });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  const windowOf = async (follower: string): Promise<number> => {
    const res = await fetch(`${server.base}${B}/contacts?userid=A`);
    assert.equal(res.status, 200);
    const body = await res.json() as { contacts: Array<Record<string, unknown>> };
    const contact = body.contacts.find((c) => c["contact_id"] === follower);
    assert.ok(contact, `${follower} is not in A's contacts: ${JSON.stringify(body)}`);
    return contact["window_expires_at"] as number;
  };
  const isEventOf = (follower: string, event: string) => (e: Received) =>
    e.result.code === 102 && e.data.msg?.["event"] === event &&
    e.data.msg?.["follower_id"] === follower;
  try {
    await t.step("a follow (subscribe) opens one minute", async () => {
      const res = await post(
        `${server.base}${B}/send_xml`,
        eventXml("oFollow", "subscribe", "", 1),
      );
      assert.equal(res.text, "success");
      await agent.waitFor(isEventOf("oFollow", "subscribe"));
      assert.equal(await windowOf("oFollow"), (T + 60_000) / 1000);
    });

    await t.step("a menu tap (CLICK) opens one minute", async () => {
      const res = await post(`${server.base}${B}/send_xml`, eventXml("oClick", "CLICK", "K", 2));
      assert.equal(res.text, "success");
      await agent.waitFor(isEventOf("oClick", "CLICK"));
      assert.equal(await windowOf("oClick"), (T + 60_000) / 1000);
    });

    await t.step("a text message opens 48 hours", async () => {
      const res = await post(`${server.base}${B}/send_xml`, textXml("oText", "gh", "hi", "902"));
      assert.equal(res.text, "success");
      await agent.waitFor((e) => e.data["id"] === "902");
      assert.equal(await windowOf("oText"), (T + 48 * 3600_000) / 1000);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("a follower's video on WeChat's CDN (*.tc.qq.com) passes the default media hosts", async (t) => {
  const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
  // What WeChat's CDN would serve; the fake serves the same bytes at /fake-video/ID.
  const cdnUrl = "https://vweixinf.tc.qq.com/102/20202/snsvideodownload?filekey=vid1";
  const video = new Uint8Array([
    0,
    0,
    0,
    0x18,
    0x66,
    0x74,
    0x79,
    0x70,
    0x69,
    0x73,
    0x6f,
    0x6d,
    1,
    2,
  ]);
  const thumb = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46, 0x49, 0x46, 0, 1]);
  fake.addVideo("vid1", video, cdnUrl);
  fake.addMedia("thumb1", thumb, "image/jpeg");
  const cdnRequests: string[] = [];
  // The server's only outbound HTTP: the CDN host is answered here, everything else is real.
  const fetchEffect: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (url.hostname.endsWith(".tc.qq.com")) {
      cdnRequests.push(url.href);
      return fetch(`${fake.url}/fake-video/vid1`, { signal: init?.signal });
    }
    return fetch(input, init);
  };
  // No MEDIA_ALLOWED_HOSTS: the production default list is what is checked.
  const server = await startBridge({ env: wechatEnv(fake.url), fetch: fetchEffect });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    await t.step("the agent gets a bridge URL serving the CDN's bytes", async () => {
      const xml =
        `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oVideo]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[video]]></MsgType><MediaId><![CDATA[vid1]]></MediaId><ThumbMediaId><![CDATA[thumb1]]></ThumbMediaId><MsgId>903</MsgId></xml>`;
      const res = await post(`${server.base}${B}/send_xml`, xml);
      assert.equal(res.text, "success");
      const got = await agent.waitFor((e) => e.data["id"] === "903", 10_000);
      assert.equal(got.result.code, 1004);
      assert.equal(got.data.msg?.["error"], undefined, JSON.stringify(got.data.msg));
      assert.deepEqual(cdnRequests, [cdnUrl]);
      const path = String(got.data.msg?.["media_path"]);
      assert.ok(path.startsWith(`${server.base}/media/`), path);
      const served = await fetch(path);
      assert.equal(served.status, 200);
      assert.deepEqual(new Uint8Array(await served.arrayBuffer()), video);
    });
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});

Deno.test("GET /metrics shows bridge_queue_depth: messages waiting for an agent", async (t) => {
  const server = await startBridge();
  const depth = async () => {
    const text = await (await fetch(`${server.base}/metrics`)).text();
    return Number(/^bridge_queue_depth (\S+)/m.exec(text)?.[1]);
  };
  try {
    await t.step("two messages with nobody online: the gauge reaches 2", async () => {
      for (const id of ["904", "905"]) {
        const res = await post(`${server.base}${B}/send_xml`, textXml("oQueued", "gh", "?", id));
        assert.equal(res.text, "success");
      }
      // The server reads the store's depth every 5 s, so the gauge may lag behind.
      const deadline = Date.now() + 15_000;
      while (await depth() !== 2) {
        if (Date.now() > deadline) assert.fail(`bridge_queue_depth is ${await depth()}, not 2`);
        await new Promise((r) => setTimeout(r, 100));
      }
    });
  } finally {
    await server.close();
  }
});
