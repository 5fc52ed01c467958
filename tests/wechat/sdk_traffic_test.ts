// Callbacks other SDKs publish in their test suites (tests/fixtures/wechat/chanxuehong/ and
// senparc/, sources in tests/fixtures/README.md) posted to the running bridge as WeChat posts
// them: signed, and in safe mode encrypted by node-webot's wechat-crypto; then what agents get
// (SPEC.md "Routing" and "Envelope"), and what WeChat gets back.

import assert from "node:assert/strict";
import WXBizMsgCrypt from "wechat-crypto";
import { computeSignature } from "../../src/wechat/signature.ts";
import { post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { connectRoutedAgent, startBridge, type TestBridge } from "../helpers/server.ts";
import { vectors } from "./_vectors.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "sdk-traffic-token";
const APPID = "wx2c2769f8efd9abc2";
const AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";

const fixture = (path: string) =>
  Deno.readTextFile(new URL(`../fixtures/wechat/${path}`, import.meta.url));

/** The samples name WeChat's CDN in PicUrl: nothing leaves the machine, every try is seen. */
const offline = (tried: string[]): typeof fetch => (input) => {
  tried.push(input instanceof Request ? input.url : String(input));
  return Promise.resolve(new Response("not here", { status: 404 }));
};

let nonce = 0;

/** The query WeChat signs a plain callback with (it also names the follower in `openid`). */
function signedQuery(openid: string): string {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const n = `sdk${++nonce}`;
  return new URLSearchParams({
    signature: computeSignature(TOKEN, timestamp, n),
    timestamp,
    nonce: n,
    openid,
  }).toString();
}

const fromOf = (xml: string) => /<FromUserName>\s*<!\[CDATA\[([^\]]*)\]\]>/.exec(xml)![1]!;

async function postSigned(server: TestBridge, xml: string): Promise<void> {
  const res = await post(`${server.base}${B}/send_xml?${signedQuery(fromOf(xml))}`, xml);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
}

/** Posts a text marker and waits for it: whatever was posted before has been handled. */
async function marker(server: TestBridge, agent: TestAgent, id: string): Promise<void> {
  await postSigned(server, textXml(`o-marker-${id}`, "gh_account", "marker", id));
  await agent.waitFor((e) => e.data["id"] === id);
}

const aboutFollower = (follower: string) => (e: Received) =>
  e.result.code !== 101 &&
  (e.data["contact_id"] === follower ||
    (e.data.msg?.["follower_id"] === follower && e.data.msg?.["event"] !== "assigned"));

// ---------------------------------------------------------------------------------------------
// chanxuehong/wechat: one follower of gh_21ee2dc92d7d, every callback as WeChat sent it.

const FOLLOWER = "os-IKuHd9pJ6xsn4mS7GyL4HxqI4";
const ACCOUNT = "gh_21ee2dc92d7d";

/** The samples in the order of their CreateTime: the order WeChat sent them in. */
const CONVERSATION = [
  "text",
  "image",
  "voice_recognition",
  "shortvideo",
  "location",
  "link",
  "unsubscribe",
  "subscribe",
  "scan",
  "subscribe_qrscene",
  "location_event",
];

Deno.test("a real follower's callbacks (chanxuehong/wechat), signed, reach one agent", async (t) => {
  const tried: string[] = [];
  const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN }, fetch: offline(tried) });
  const agent = await connectRoutedAgent(server, "cx-agent");
  const got = new Map<string, Received>();
  const about = () => agent.messages().filter(aboutFollower(FOLLOWER));
  try {
    await t.step("every callback is answered success and reaches the agent once", async () => {
      for (const name of CONVERSATION) {
        const xml = await fixture(`chanxuehong/${name}.xml`);
        const before = about().length;
        await postSigned(server, xml);
        await agent.waitFor(() => about().length > before);
        const all = about();
        got.set(name, all.at(-1)!);
        assert.equal(all.length, before + 1, name);
      }
    });
    await t.step("messages: code and msg_type by type, id from MsgId, CreateTime", () => {
      const expected: Array<[string, number, string, string, number]> = [
        ["text", 1001, "text", "6260957665266699303", 1457742803],
        ["image", 1002, "image", "6260957742576110634", 1457742821],
        ["voice_recognition", 1003, "voice", "6260957780828487680", 1457742830],
        ["shortvideo", 1005, "shortvideo", "6260957892899965999", 1457742856],
        ["location", 1006, "location", "6260958056108723257", 1457742894],
        ["link", 1007, "link", "6260958142008069179", 1457742914],
      ];
      for (const [name, code, type, id, sendTime] of expected) {
        const e = got.get(name)!;
        assert.equal(e.result.code, code, name);
        assert.equal(e.result.message, "common", name);
        assert.equal(e.data["msg_type"], type, name);
        assert.equal(e.data["id"], id, name);
        assert.equal(e.data["send_time"], sendTime, name);
        assert.equal(e.data["contact_id"], FOLLOWER, name);
        assert.equal(e.data["name"], FOLLOWER, name);
        assert.equal(e.data["account"], ACCOUNT, name);
        assert.equal(e.data.msg?.["msg_id"], id, name);
      }
    });
    await t.step("each message's fields as SPEC names them", () => {
      assert.equal(got.get("text")!.data.msg?.["content"], "hhhhhjjjjjjjjj");
      const voice = got.get("voice_recognition")!.data.msg!;
      assert.equal(voice["recognition"], "傻逼！");
      assert.equal(voice["format"], "amr");
      assert.equal(
        voice["media_id"],
        "NUjTR19l2n7kxNmmol1K3unuUrk-b2LRMri_SkEoFADjnVYeV8tFjx8EQB7trHJk",
      );
      const video = got.get("shortvideo")!.data.msg!;
      assert.equal(
        video["thumb_media_id"],
        "5Sykx9I2TiVMmU0EAYTiSVZ7rdU0q7zHw8NEBL_COo_hedMcd9RFuz0-zv_Hqplk",
      );
      const place = got.get("location")!.data.msg!;
      assert.deepEqual(
        [place["latitude"], place["longitude"], place["scale"], place["label"]],
        [30.19536, 109.32305, 10, "湖北省恩施土家族苗族自治州恩施市"],
      );
      const link = got.get("link")!.data.msg!;
      assert.equal(link["title"], "当日本的“变态”遇上德国的严谨，结果房子疯了！");
      assert.match(link["url"] as string, /&from=timeline&isappinstalled=0#rd$/);
      // No media credentials: the picture was looked for at its PicUrl, and the agent is told.
      const image = got.get("image")!.data.msg!;
      assert.match(image["pic_url"] as string, /^http:\/\/mmbiz\.qpic\.cn\/mmbiz\//);
      assert.equal(image["media_path"], "");
      assert.match(image["error"] as string, /PicUrl fallback failed/);
      assert.deepEqual(tried, [image["pic_url"]]);
    });
    await t.step("events: 102 system messages about the follower, its fields typed", () => {
      for (const name of ["unsubscribe", "subscribe", "scan", "subscribe_qrscene"]) {
        const e = got.get(name)!;
        assert.equal(e.result.code, 102, name);
        assert.equal(e.data["msg_type"], "system", name);
        assert.equal(e.data["contact_id"], "system01", name);
        assert.equal(e.data.msg?.["follower_id"], FOLLOWER, name);
        assert.equal(e.data["account"], ACCOUNT, name);
      }
      assert.equal(got.get("subscribe")!.data["send_time"], 1457752147);
      const scan = got.get("scan")!.data.msg!;
      assert.equal(scan["event"], "SCAN");
      assert.equal(scan["event_key"], "1000000");
      assert.match(scan["ticket"] as string, /^gQHr8ToAAAAAAAAAASxodHRw/);
      const qr = got.get("subscribe_qrscene")!.data.msg!;
      assert.equal(qr["event_key"], "qrscene_1000000");
      assert.match(qr["text"] as string, /扫码关注.*场景 1000000/);
      const location = got.get("location_event")!.data.msg!;
      assert.deepEqual(
        [location["event"], location["latitude"], location["longitude"], location["precision"]],
        ["LOCATION", 30.443105, 116.654735, 2703],
      );
    });
    await t.step("one follower, bound once, to this agent; everything in its history", async () => {
      const assigned = agent.messages().filter((e) =>
        e.data.msg?.["event"] === "assigned" && e.data.msg?.["follower_id"] === FOLLOWER
      );
      assert.equal(assigned.length, 1);
      const contact = (await server.store.getContact(FOLLOWER))!;
      assert.equal(contact.agent_id, "cx-agent");
      assert.equal(contact.subscribed, true, "subscribed again after the unsubscribe");
      const history = await server.store.readHistory(FOLLOWER, null, 50);
      assert.deepEqual(
        history.items.map((i) => i["id"]),
        CONVERSATION.map((name) => got.get(name)!.data["id"]),
      );
    });
    await t.step("WeChat's retries of every callback are answered and not delivered", async () => {
      const before = agent.messages().length;
      for (const name of CONVERSATION) {
        await postSigned(server, await fixture(`chanxuehong/${name}.xml`));
      }
      await marker(server, agent, "7001");
      assert.equal(agent.messages().filter(aboutFollower(FOLLOWER)).length, CONVERSATION.length);
      // The marker and its assignment only.
      assert.equal(agent.messages().length, before + 2);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("WeChat gets success before the follower's picture is fetched", async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  const asked: string[] = [];
  // WeChat's CDN answers only once the webhook has answered: a webhook that waited for the
  // picture would never answer, and the test would time out.
  const slowCdn: typeof fetch = async (input) => {
    asked.push(input instanceof Request ? input.url : String(input));
    await held;
    return new Response("not here", { status: 404 });
  };
  const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN }, fetch: slowCdn });
  const agent = await connectRoutedAgent(server, "slow-agent");
  try {
    const xml = await fixture("chanxuehong/image.xml");
    // Bounded, so that a webhook waiting for the picture fails the test rather than hangs it.
    const res = await fetch(`${server.base}${B}/send_xml?${signedQuery(FOLLOWER)}`, {
      method: "POST",
      body: xml,
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(await res.text(), "success");
    release();
    const e = await agent.waitFor((e) => e.data["id"] === "6260957742576110634");
    assert.match(e.data.msg?.["error"] as string, /PicUrl fallback failed/);
    assert.equal(asked.length, 1);
  } finally {
    release();
    await agent.close();
    await server.close();
  }
});

Deno.test("the reply window: a LOCATION report opens none, a QR follow opens the event one", async (t) => {
  const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN }, fetch: offline([]) });
  const agent = await connectRoutedAgent(server, "window-agent");
  try {
    await t.step("LOCATION from a follower who never wrote: kept, unbound, no window", async () => {
      await postSigned(server, await fixture("chanxuehong/location_event.xml"));
      await marker(server, agent, "7201");
      const contact = (await server.store.getContact(FOLLOWER))!;
      assert.equal(contact.agent_id, null);
      assert.equal(contact.location?.latitude, 30.443105);
      assert.equal(contact.last_inbound_at, 0);
    });
    await t.step("a follow from a QR code: WeChat's 3-reply allowance", async () => {
      await postSigned(server, await fixture("chanxuehong/subscribe_qrscene.xml"));
      await agent.waitFor((e) => e.data.msg?.["event_key"] === "qrscene_1000000");
      const contact = (await server.store.getContact(FOLLOWER))!;
      assert.ok(contact.last_inbound_at > 0);
      assert.equal(contact.last_inbound_kind, "event");
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Senparc's samples: card events, menu-to-mini-program, reports, layouts WeChat's docs print.

/** Posts each sample to a fresh bridge (the samples share followers) with an agent online. */
async function deliver(name: string): Promise<{ got: Received | null; server: TestBridge }> {
  const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN }, fetch: offline([]) });
  const agent = await connectRoutedAgent(server, "sp-agent");
  try {
    const xml = await fixture(`senparc/${name}.xml`);
    await postSigned(server, xml);
    await marker(server, agent, "7101");
    const got = agent.messages().find((e) =>
      e.data["id"] !== "7101" && e.data.msg?.["event"] !== "assigned"
    ) ?? null;
    return { got, server };
  } finally {
    await agent.close();
  }
}

/** Follower events: for the follower's agent, the follower bound, no reply window opened. */
const FOLLOWER_EVENTS: Array<[string, RegExp]> = [
  ["user_get_card", /FromUser 领取了卡券 cardid/],
  ["user_del_card", /FromUser 删除了卡券 cardid/],
  ["user_consume_card", /FromUser 核销了卡券 cardid/],
  ["user_view_card", /FromUser 查看了会员卡 cardid/],
  ["user_enter_session_from_card", /FromUser 从卡券 cardid 进入了公众号会话/],
  ["view_miniprogram", /FromUser 点击菜单打开了小程序页面 pages\/index\/index/],
  ["wifi_connected", /FromUser 连接了门店 Wi-Fi/],
  ["shakearound_user_shake", /fromUser 摇了摇周边设备/],
  ["submit_membercard_user_info", /submit_membercard_user_info/],
  ["giftcard_pay_done", /giftcard_pay_done/],
  ["enter", /触发了事件 ENTER/],
];

Deno.test("Senparc's follower events: 102 to the follower's agent, no window opened", async (t) => {
  for (const [name, text] of FOLLOWER_EVENTS) {
    await t.step(name, async () => {
      const xml = await fixture(`senparc/${name}.xml`);
      const { got, server } = await deliver(name);
      try {
        assert.ok(got, `${name} reached no agent`);
        assert.equal(got.result.code, 102);
        assert.equal(got.data["contact_id"], "system01");
        const follower = fromOf(xml);
        assert.equal(got.data.msg?.["follower_id"], follower);
        assert.match(got.data.msg?.["text"] as string, text);
        const createTime = /<CreateTime>(\d+)/.exec(xml)![1];
        assert.equal(got.data["send_time"], Number(createTime));
        // submit_membercard_user_info has a space before its CDATA: the account is trimmed.
        const account = /<ToUserName>\s*<!\[CDATA\[([^\]]*)/.exec(xml)![1];
        assert.equal(got.data["account"], account);
        const contact = (await server.store.getContact(follower))!;
        assert.equal(contact.agent_id, "sp-agent");
        assert.equal(contact.last_inbound_at, 0, "WeChat opens no reply window for it");
      } finally {
        await server.close();
      }
    });
  }
  await t.step("a card's fields are kept in msg, in snake_case", async () => {
    const { got, server } = await deliver("user_get_card");
    await server.close();
    assert.equal(got!.data.msg?.["card_id"], "cardid");
    assert.equal(got!.data.msg?.["user_card_code"], "12312312");
    assert.equal(got!.data.msg?.["friend_user_name"], "FriendUser");
    assert.equal(got!.data.msg?.["is_give_by_friend"], "1");
  });
  await t.step("WifiConnected names the shop WeChat sends it in, PlaceId", async () => {
    // wechatpy reads the same tag as the shop (WiFiConnectedEvent.shop_id = PlaceId).
    for (const name of ["senparc/wifi_connected", "wechatpy/wifi_connected"]) {
      const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN } });
      const agent = await connectRoutedAgent(server, "wifi-agent");
      try {
        await postSigned(server, await fixture(`${name}.xml`));
        const e = await agent.waitFor((e) => e.data.msg?.["event"] === "WifiConnected");
        const shop = name.startsWith("senparc") ? "PlaceId" : "1234";
        assert.equal(e.data.msg?.["text"], `FromUser 连接了门店 Wi-Fi（门店 ${shop}）`, name);
      } finally {
        await agent.close();
        await server.close();
      }
    }
  });
  await t.step(
    "ShakearoundUserShake: the beacons around are a list, of two or of one",
    async () => {
      const two = await fixture("senparc/shakearound_user_shake.xml");
      // The same shake with one beacon around (WeChat repeats <AroundBeacon> once per beacon).
      const one = two.replace(/<AroundBeacon>[\s\S]*?<\/AroundBeacon>\s*/, "");
      for (const [xml, distances] of [[two, ["166.816", "15.013"]], [one, ["15.013"]]] as const) {
        const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN } });
        const agent = await connectRoutedAgent(server, "shake-agent");
        try {
          await postSigned(server, xml);
          const e = await agent.waitFor((e) => e.data.msg?.["event"] === "ShakearoundUserShake");
          const around = e.data.msg?.["around_beacons"] as Array<Record<string, unknown>>;
          assert.ok(Array.isArray(around), JSON.stringify(around));
          assert.deepEqual(around.map((b) => b["distance"]), distances);
        } finally {
          await agent.close();
          await server.close();
        }
      }
    },
  );
  await t.step("view_miniprogram keeps its page and menu", async () => {
    const { got, server } = await deliver("view_miniprogram");
    await server.close();
    assert.equal(got!.data.msg?.["event_key"], "pages/index/index");
    assert.equal(got!.data.msg?.["menu_id"], "MENUID");
  });
});

/** Reports on the account's cards, stores and sends: no follower, to every agent online. */
const REPORTS: Array<[string, string, RegExp]> = [
  ["card_pass_check", "FromUser", /卡券 cardid 已通过审核/],
  ["card_not_pass_check", "FromUser", /卡券 cardid 未通过审核/],
  ["poi_check_notify", "fromUser", /门店 123123 审核结果：fail xxxxxx/],
  ["mass_send_job_finish", "oR5Gjjl_eiZoUpGozMo7dbBJ362A", /群发任务 1988 已结束/],
];

Deno.test("Senparc's reports bind nobody and reach the agents as notices", async (t) => {
  for (const [name, from, text] of REPORTS) {
    await t.step(name, async () => {
      const { got, server } = await deliver(name);
      try {
        assert.ok(got, `${name} reached no agent`);
        assert.equal(got.result.code, 102);
        assert.equal(got.data["contact_id"], "system01");
        assert.equal(got.data.msg?.["follower_id"], undefined);
        assert.equal(got.data.msg?.["from_user_name"], from);
        assert.match(got.data.msg?.["text"] as string, text);
        assert.equal(await server.store.getContact(from), null);
      } finally {
        await server.close();
      }
    });
  }
  await t.step(
    "card_not_pass_check: the reason when WeChat gives one, no dangling colon",
    async () => {
      const { got, server } = await deliver("card_not_pass_check");
      await server.close();
      assert.equal(got!.data.msg?.["text"], "卡券 cardid 未通过审核");
      // WeChat's current card doc adds <RefuseReason>: the same sample with it.
      const withReason = (await fixture("senparc/card_not_pass_check.xml")).replace(
        "</xml>",
        "<RefuseReason><![CDATA[非法代制]]></RefuseReason></xml>",
      );
      const again = await startBridge({ env: { WECHAT_TOKEN: TOKEN } });
      const agent = await connectRoutedAgent(again, "card-agent");
      try {
        await postSigned(again, withReason);
        const e = await agent.waitFor((e) => e.data.msg?.["event"] === "card_not_pass_check");
        assert.equal(e.data.msg?.["text"], "卡券 cardid 未通过审核：非法代制");
      } finally {
        await agent.close();
        await again.close();
      }
    },
  );
  await t.step("the mass-send counts are numbers", async () => {
    const { got, server } = await deliver("mass_send_job_finish");
    await server.close();
    const msg = got!.data.msg!;
    assert.deepEqual(
      [msg["total_count"], msg["filter_count"], msg["sent_count"], msg["error_count"]],
      [100, 80, 75, 5],
    );
    assert.equal(msg["msg_id"], "1988");
  });
});

Deno.test("Senparc's messages of a real account, behind an <?xml?> declaration", async (t) => {
  await t.step("text: 1001 with its MsgId", async () => {
    const { got, server } = await deliver("text_declaration");
    await server.close();
    assert.equal(got!.result.code, 1001);
    assert.equal(got!.data["id"], "5832509444155992350");
    assert.equal(got!.data.msg?.["content"], "TNT2");
    assert.equal(got!.data["account"], "gh_a96a4a619366");
  });
  await t.step("an image without MediaId: 1002, its PicUrl kept, the agent told", async () => {
    const { got, server } = await deliver("image_without_media_id");
    await server.close();
    assert.equal(got!.result.code, 1002);
    assert.equal(got!.data["id"], "5832830407062023950");
    assert.match(got!.data.msg?.["pic_url"] as string, /^http:\/\/mmsns\.qpic\.cn\//);
    assert.match(got!.data.msg?.["error"] as string, /no MediaId/);
  });
  await t.step("a video without MsgId: 1004 under an id of the bridge's", async () => {
    const { got, server } = await deliver("video_without_msgid");
    await server.close();
    assert.equal(got!.result.code, 1004);
    assert.equal(typeof got!.data["id"], "string");
    assert.notEqual(got!.data["id"], "");
    assert.equal(got!.data.msg?.["media_id"], "mediaId");
    assert.equal(got!.data.msg?.["thumb_media_id"], "thumbMediaId");
  });
});

// ---------------------------------------------------------------------------------------------
// Safe mode: the same samples encrypted by wechat-crypto; easywechat's vectors as posted.

/** A safe-mode POST as WeChat makes it, encrypted and signed by wechat-crypto. */
function safeModePost(server: TestBridge, plainXml: string) {
  const cryptor = new WXBizMsgCrypt(TOKEN, AES_KEY, APPID);
  const encrypt = cryptor.encrypt(plainXml);
  const timestamp = String(Math.floor(Date.now() / 1000));
  const n = `safe${++nonce}`;
  const query = new URLSearchParams({
    signature: computeSignature(TOKEN, timestamp, n),
    timestamp,
    nonce: n,
    openid: fromOf(plainXml),
    encrypt_type: "aes",
    msg_signature: cryptor.getSignature(timestamp, n, encrypt),
  });
  const to = /<ToUserName>\s*<!\[CDATA\[([^\]]*)/.exec(plainXml)?.[1] ?? "";
  return post(
    `${server.base}${B}/send_xml?${query}`,
    `<xml><ToUserName><![CDATA[${to}]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`,
  );
}

Deno.test("in safe mode every sample arrives as in plain mode, WeChat answered success", async () => {
  const server = await startBridge({
    env: { WECHAT_TOKEN: TOKEN, WECHAT_AES_KEY: AES_KEY, WECHAT_APPID: APPID },
    fetch: offline([]),
  });
  const agent = await connectRoutedAgent(server, "safe-agent");
  try {
    for (const name of CONVERSATION) {
      const xml = await fixture(`chanxuehong/${name}.xml`);
      const before = agent.messages().filter(aboutFollower(FOLLOWER)).length;
      const res = await safeModePost(server, xml);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, "success", name);
      await agent.waitFor(() => agent.messages().filter(aboutFollower(FOLLOWER)).length > before);
    }
    const history = await server.store.readHistory(FOLLOWER, null, 50);
    assert.equal(history.items.length, CONVERSATION.length);
    const voice = history.items.find((i) => i["msg_type"] === "voice")!;
    assert.equal((voice["msg"] as Record<string, unknown>)["recognition"], "傻逼！");
    for (const name of ["user_get_card", "view_miniprogram", "card_pass_check"]) {
      const res = await safeModePost(server, await fixture(`senparc/${name}.xml`));
      assert.equal(res.text, "success", name);
    }
    await agent.waitFor((e) => e.data.msg?.["event"] === "card_pass_check");
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("safe mode with an auto-reply: a message gets it encrypted, an event success", async () => {
  const server = await startBridge({
    env: {
      WECHAT_TOKEN: TOKEN,
      WECHAT_AES_KEY: AES_KEY,
      WECHAT_APPID: APPID,
      AUTO_REPLY_TEXT: "客服不在线",
    },
    fetch: offline([]),
  });
  try {
    const res = await safeModePost(server, await fixture("chanxuehong/voice_recognition.xml"));
    assert.equal(res.status, 200, res.text);
    const field = (tag: string) =>
      new RegExp(`<${tag}>(?:<!\\[CDATA\\[)?([^<\\]]*)`).exec(res.text)?.[1] ?? "";
    const cryptor = new WXBizMsgCrypt(TOKEN, AES_KEY, APPID);
    assert.equal(
      field("MsgSignature"),
      cryptor.getSignature(field("TimeStamp"), field("Nonce"), field("Encrypt")),
    );
    const opened = cryptor.decrypt(field("Encrypt"));
    assert.equal(opened.id, APPID);
    assert.match(opened.message, new RegExp(`<ToUserName><!\\[CDATA\\[${FOLLOWER}\\]\\]>`));
    assert.match(opened.message, new RegExp(`<FromUserName><!\\[CDATA\\[${ACCOUNT}\\]\\]>`));
    assert.match(opened.message, /<Content><!\[CDATA\[客服不在线\]\]><\/Content>/);
    for (const name of ["subscribe_qrscene", "location_event"]) {
      const event = await safeModePost(server, await fixture(`chanxuehong/${name}.xml`));
      assert.equal(event.text, "success", name);
    }
  } finally {
    await server.close();
  }
});

Deno.test("easywechat's signed safe-mode samples, posted with their own signatures", async (t) => {
  for (const id of ["V-E1", "V-E2"]) {
    await t.step(id, async () => {
      const v = vectors.encrypt.find((e) => e.id === id)!;
      const server = await startBridge({
        env: { WECHAT_TOKEN: v.token!, WECHAT_AES_KEY: v.aes_key, WECHAT_APPID: v.appid },
      });
      const agent = await connectRoutedAgent(server, "ew-agent");
      try {
        const query = new URLSearchParams({
          signature: computeSignature(v.token!, v.timestamp!, v.nonce!),
          timestamp: v.timestamp!,
          nonce: v.nonce!,
          encrypt_type: "aes",
          msg_signature: v.msg_signature!,
        });
        const to = /<ToUserName><!\[CDATA\[([^\]]*)/.exec(v.plaintext)![1];
        const body = `<xml>\n    <ToUserName><![CDATA[${to}]]></ToUserName>\n` +
          `    <Encrypt><![CDATA[${v.encrypt}]]></Encrypt>\n</xml>\n`;
        const res = await post(`${server.base}${B}/send_xml?${query}`, body);
        assert.equal(res.text, "success");
        const msgId = /<MsgId>(\d+)/.exec(v.plaintext)![1];
        const e = await agent.waitFor((e) => e.data["id"] === msgId);
        assert.equal(e.result.code, 1001);
        assert.equal(e.data["contact_id"], fromOf(v.plaintext));
        assert.equal(e.data.msg?.["content"], "hello");
        assert.equal(e.data["send_time"], Number(/<CreateTime>(\d+)/.exec(v.plaintext)![1]));
        // The signature covers this Encrypt only: another token's is refused.
        const forged = new URLSearchParams(query);
        forged.set("msg_signature", computeSignature("other", v.timestamp!, v.nonce!, v.encrypt));
        const refused = await post(`${server.base}${B}/send_xml?${forged}`, body);
        assert.equal(refused.status, 401);
      } finally {
        await agent.close();
        await server.close();
      }
    });
  }
});

Deno.test("wechat-crypto (node-webot) opens every public vector and signs it the same", async (t) => {
  for (const v of [...vectors.encrypt, ...vectors.decrypt]) {
    await t.step(v.id, () => {
      // Its constructor wants a token even where the vector signs nothing.
      const cryptor = new WXBizMsgCrypt(v.token ?? "unused", v.aes_key, v.appid);
      const opened = cryptor.decrypt(v.encrypt);
      assert.deepEqual([opened.message, opened.id], [v.plaintext, v.appid]);
      if (v.msg_signature !== undefined) {
        assert.equal(cryptor.getSignature(v.timestamp!, v.nonce!, v.encrypt), v.msg_signature);
      }
    });
  }
});
