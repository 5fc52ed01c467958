// Real WeChat traffic against the real server: callbacks published in wechatpy's tests and
// WeChat's documentation (tests/fixtures/wechat/), encrypted by node-webot's wechat-crypto
// (another library than ours), on the memory, Deno KV and Redis stores.

import assert from "node:assert/strict";
import WXBizMsgCrypt from "wechat-crypto";
import type { Store } from "../../src/core/store.ts";
import { openKvStore } from "../../src/store/kv_store.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import { createRedisStore } from "../../src/store/redis_store.ts";
import { computeSignature } from "../../src/wechat/signature.ts";
import { post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { connectRoutedAgent, startBridge, type TestBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "real-traffic-token";
const APPID = "wx2c2769f8efd9abc2";
const AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const REDIS_URL = await findTestRedis();

const fixture = (path: string) =>
  Deno.readTextFile(new URL(`../fixtures/wechat/${path}`, import.meta.url));

let nonce = 0;
function signed(extra: Record<string, string> = {}): string {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const n = `rt${++nonce}`;
  return new URLSearchParams({
    signature: computeSignature(TOKEN, timestamp, n),
    timestamp,
    nonce: n,
    ...extra,
  }).toString();
}

/** A body as WeChat posts it in safe or compatible mode, encrypted by wechat-crypto. */
function encrypted(plainXml: string, compatible = false): { body: string; query: string } {
  const cryptor = new WXBizMsgCrypt(TOKEN, AES_KEY, APPID);
  const encrypt = cryptor.encrypt(plainXml);
  const timestamp = String(Math.floor(Date.now() / 1000));
  const n = `enc${++nonce}`;
  const query = new URLSearchParams({
    signature: computeSignature(TOKEN, timestamp, n),
    timestamp,
    nonce: n,
    encrypt_type: "aes",
    msg_signature: cryptor.getSignature(timestamp, n, encrypt),
  }).toString();
  const inner = compatible ? plainXml.replace(/^<xml>/, "").replace(/<\/xml>\s*$/, "") : "";
  const to = /<ToUserName><!\[CDATA\[([^\]]*)\]\]>/.exec(plainXml)?.[1] ?? "";
  const body = compatible
    ? `<xml>${inner}<Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`
    : `<xml><ToUserName><![CDATA[${to}]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`;
  return { body, query };
}

async function postXml(server: TestBridge, xml: string, query = signed()) {
  const res = await post(`${server.base}${B}/send_xml?${query}`, xml);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
}

/** Posts a text marker and waits for it: whatever was posted before has been handled. */
async function marker(server: TestBridge, agent: TestAgent, id: string): Promise<void> {
  await postXml(server, textXml(`o-marker-${id}`, "gh_account", "marker", id));
  await agent.waitFor((e) => e.data["id"] === id);
}

const isEvent = (event: string) => (e: Received) =>
  e.result.code === 102 && e.data.msg?.["event"] === event;

// ---------------------------------------------------------------------------------------------
// Items 1 and 2 on every store: reports go to operators, OpenID events act on the OpenID.

type StoreMaker = (now: () => number) => Promise<{ store: Store; cleanup(): Promise<void> }>;

const modelOptions = (now: () => number) => ({
  companyId: "",
  now,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 3600_000,
});

const STORES: Array<[string, StoreMaker | null]> = [
  ["memory", (now) => {
    const store = createMemoryStore(modelOptions(now));
    return Promise.resolve({ store, cleanup: () => Promise.resolve() });
  }],
  ["Deno KV", async (now) => {
    const store = await openKvStore(":memory:", {
      ...modelOptions(now),
      retentionMs: 30 * 24 * 3600_000,
    });
    return { store, cleanup: () => Promise.resolve() };
  }],
  [
    "Redis",
    REDIS_URL === null ? null : async (now) => {
      const prefix = uniquePrefix("reports");
      const store = await createRedisStore({
        url: REDIS_URL,
        prefix,
        heartbeatMs: 60_000,
        ...modelOptions(now),
      });
      return { store, cleanup: () => flushPrefix(REDIS_URL, prefix) };
    },
  ],
];

for (const [name, make] of STORES) {
  Deno.test({
    name: `account reports and platform events on the ${name} store`,
    ignore: make === null,
    async fn(t) {
      const { store, cleanup } = await make!(Date.now);
      const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN }, store });
      const agent = await connectRoutedAgent(server, "ops-agent");
      const metric = async (event: string) => {
        const text = await (await fetch(`${server.base}/metrics`)).text();
        const line = text.split("\n").find((l) =>
          l.startsWith(`bridge_account_reports_total{event="${event}"}`)
        );
        return line === undefined ? 0 : Number(line.split(" ").at(-1));
      };
      try {
        await t.step("reports bind nobody, open no window, count once", async () => {
          const template = await fixture("wechatpy/template_send_job_finish.xml");
          const mass = await fixture("wechatpy/mass_send_job_finish.xml");
          const sent = await fixture("wechatpy/template_subscribe_msg_sent.xml");
          await postXml(server, template);
          await postXml(server, mass);
          await postXml(server, mass); // WeChat's retry
          await postXml(server, sent);
          await marker(server, agent, "5101");
          for (const id of ["oia2TjuEGTNoeX76QEjQNrcURxG8", "oV5CrjpxgaGXNHIQigzNlgLTnwic"]) {
            assert.equal(await server.store.getContact(id), null, id);
          }
          assert.equal(await server.store.getContact("otFpruAK8D-E6EfStSYonYSBZ8_4"), null);
          const contacts = await server.store.listContacts("ops-agent");
          assert.deepEqual(contacts.map((c) => c.follower_id), ["o-marker-5101"]);
          assert.equal((await server.store.getAgent("ops-agent"))!.load, 1);
          assert.equal(await metric("TEMPLATESENDJOBFINISH"), 1);
          assert.equal(await metric("MASSSENDJOBFINISH"), 1);
          assert.equal(await metric("subscribe_msg_sent_event"), 1);
        });
        await t.step("a mass-send result reaches online agents as a 102 about no contact", () => {
          const reports = agent.messages().filter(isEvent("MASSSENDJOBFINISH"));
          assert.equal(reports.length, 1, "one, though WeChat sent it twice");
          const e = reports[0]!;
          assert.equal(e.data["contact_id"], "system01");
          assert.equal(e.data.msg?.["follower_id"], undefined);
          assert.equal(e.data.msg?.["error_count"], 0);
          assert.match(
            e.data.msg?.["text"] as string,
            /群发任务 1000001625 已结束（err\(30003\)）/,
          );
          // Per-recipient reports are counted, not shown one by one.
          assert.equal(agent.messages().filter(isEvent("TEMPLATESENDJOBFINISH")).length, 0);
          assert.equal(agent.messages().filter(isEvent("subscribe_msg_sent_event")).length, 0);
        });

        const revoke = await fixture("docs/user_authorization_revoke.xml");
        const modified = await fixture("docs/user_info_modified.xml");
        const user = "owAqB1nqaOYYWl0Ng484G2z5NIwU";
        const pushService = "owAqB1v0ahK_Xlc7GshIDdf2yf7E";
        await t.step(
          "user_info_modified tells the OpenID's agent, not the push service's",
          async () => {
            await postXml(server, textXml(user, "gh_870882ca4b1", "你好", "5201"));
            await agent.waitFor((e) => e.data["id"] === "5201");
            await postXml(server, modified);
            const e = await agent.waitFor(isEvent("user_info_modified"));
            assert.equal(e.data.msg?.["follower_id"], user);
            assert.equal(e.data.msg?.["open_id"], user);
            assert.match(e.data.msg?.["text"] as string, /昵称和头像/);
            assert.equal(await server.store.getContact(pushService), null);
          },
        );
        await t.step("user_info_modified about a stranger binds nobody", async () => {
          await postXml(server, modified.replaceAll(user, "o-stranger"));
          await marker(server, agent, "5202");
          assert.equal(await server.store.getContact("o-stranger"), null);
        });
        await t.step("user_authorization_revoke forgets the OpenID's data", async () => {
          assert.ok((await server.store.readHistory(user, null, 10)).items.length >= 2);
          await postXml(server, revoke);
          const e = await agent.waitFor(isEvent("user_authorization_revoke"));
          assert.equal(e.data.msg?.["follower_id"], user);
          assert.match(e.data.msg?.["text"] as string, /撤回了授权/);
          assert.equal(await server.store.getContact(user), null);
          assert.deepEqual((await server.store.readHistory(user, null, 10)).items, []);
          assert.equal(await server.store.getContact(pushService), null);
          assert.ok(
            !(await server.store.listContacts("ops-agent")).some((c) => c.follower_id === user),
          );
        });
      } finally {
        await agent.close();
        await server.close();
        await cleanup();
      }
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Items 4 and 10: compatible mode before the key is set; a long message in safe mode.

Deno.test("safe and compatible mode as wechat-crypto encrypts them", async (t) => {
  await t.step("compatible mode without WECHAT_AES_KEY delivers the plaintext fields", async () => {
    const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN } });
    const agent = await connectRoutedAgent(server, "compat-agent");
    try {
      for (const id of ["5301", "5302"]) {
        const { body, query } = encrypted(textXml("o-compat", "gh_account", "兼容模式", id), true);
        await postXml(server, body, query);
        const e = await agent.waitFor((e) => e.data["id"] === id);
        assert.equal(e.result.code, 1001);
        assert.equal(e.data.msg?.["content"], "兼容模式");
        assert.equal(e.data.msg?.["encrypt"], undefined, "the ciphertext is not handed on");
      }
      // Still signed: a compatible-mode body with a bad signature is refused.
      const { body } = encrypted(textXml("o-compat", "gh_account", "x", "5303"), true);
      const bad = await post(`${server.base}${B}/send_xml?${signed({ signature: "0" })}`, body);
      assert.equal(bad.status, 401);
    } finally {
      await agent.close();
      await server.close();
    }
  });

  await t.step("a 6,000-character Chinese text in safe mode arrives whole", async () => {
    const server = await startBridge({
      env: { WECHAT_TOKEN: TOKEN, WECHAT_AES_KEY: AES_KEY, WECHAT_APPID: APPID },
    });
    const agent = await connectRoutedAgent(server, "long-agent");
    try {
      const content = "长".repeat(3100) + "消息".repeat(1500);
      for (const compatible of [false, true]) {
        const id = compatible ? "5402" : "5401";
        const { body, query } = encrypted(textXml("o-long", "gh_account", content, id), compatible);
        assert.ok(body.length > 24 * 1024, `the body is ${body.length} bytes`);
        await postXml(server, body, query);
        const e = await agent.waitFor((e) => e.data["id"] === id);
        assert.equal(e.data.msg?.["content"], content);
      }
      // More than the bridge stores, once decrypted, is 413 (not a 500 at the store).
      const huge = encrypted(textXml("o-long", "gh_account", "长".repeat(9000), "5403"));
      const res = await post(`${server.base}${B}/send_xml?${huge.query}`, huge.body);
      assert.equal(res.status, 413, res.text);
    } finally {
      await agent.close();
      await server.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Items 6, 7, 8 and the account: every sample's fields, typed, with a sentence of its own.

/** Posts each sample to a fresh bridge (samples share ids) and returns what the agent got;
 * `bound`: its follower writes first (a kf session or location report reaches only the
 * follower's agent). */
async function deliverSample(xml: string, bound = false): Promise<Received> {
  const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN } });
  const agent = await connectRoutedAgent(server, "sample-agent");
  try {
    if (bound) {
      const from = /<FromUserName>\s*<!\[CDATA\[([^\]]*)/.exec(xml)![1]!;
      await postXml(server, textXml(from, "gh_account", "hi", "5900"));
      await agent.waitFor((e) => e.data["id"] === "5900");
    }
    await postXml(server, xml);
    return await agent.waitFor((e) =>
      e.result.code !== 101 && e.data.msg?.["event"] !== "assigned" && e.data["id"] !== "5900"
    );
  } finally {
    await agent.close();
    await server.close();
  }
}

const FOLLOWER_EVENTS = [
  "subscribe",
  "unsubscribe",
  "subscribe_scan",
  "scan",
  "location_event",
  "click",
  "view",
  "scan_code_push",
  "scan_code_waitmsg",
  "pic_sysphoto",
  "pic_photo_or_album",
  "pic_wechat",
  "location_select",
  "merchant_order",
  "kf_create_session",
  "kf_close_session",
  "kf_switch_session",
  "template_subscribe_msg_popup",
  "template_subscribe_msg_change",
  "shakearound_user_shake",
  "wifi_connected",
];

Deno.test("every wechatpy event sample reaches its agent typed, with its own sentence", async (t) => {
  const got = new Map<string, Received>();
  for (const name of FOLLOWER_EVENTS) {
    await t.step(`${name}.xml has a sentence of its own and the account`, async () => {
      const xml = await fixture(`wechatpy/${name}.xml`);
      const e = await deliverSample(xml, name.startsWith("kf_") || name === "location_event");
      got.set(name, e);
      assert.equal(e.result.code, 102);
      const text = e.data.msg?.["text"] as string;
      assert.doesNotMatch(text, /触发了事件/, text);
      const to = /<ToUserName>\s*(?:<!\[CDATA\[)?([^\]<]*)/.exec(xml)![1];
      assert.equal(e.data["account"], to);
    });
  }
  await t.step("LOCATION: coordinates are numbers, as in the location message", () => {
    const msg = got.get("location_event")!.data.msg!;
    assert.equal(msg["latitude"], 23.137466);
    assert.equal(msg["longitude"], 113.352425);
    assert.equal(msg["precision"], 119.38504);
    assert.match(msg["text"] as string, /23\.137466.*113\.352425/);
  });
  await t.step("SendPicsInfo: the picture list is a list, even of one", () => {
    const info = got.get("pic_sysphoto")!.data.msg!["send_pics_info"] as Record<string, unknown>;
    assert.deepEqual(info, {
      count: 1,
      pic_list: [{ pic_md5_sum: "1b5f7c23b5bf75682a53e7b6d163e185" }],
    });
    assert.match(got.get("pic_sysphoto")!.data.msg!["text"] as string, /1 张/);
  });
  await t.step("subscribe_msg_popup_event: the templates are a list", () => {
    const msg = got.get("template_subscribe_msg_popup")!.data.msg!;
    const list = msg["subscribe_msg_popup_event"] as Array<Record<string, unknown>>;
    assert.equal(list.length, 2);
    assert.deepEqual(list[1], {
      template_id: "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI",
      subscribe_status_string: "reject",
      popup_scene: 2,
    });
    assert.match(msg["text"] as string, /同意 1 个，拒绝 1 个/);
    const change = got.get("template_subscribe_msg_change")!.data.msg!;
    assert.ok(Array.isArray(change["subscribe_msg_change_event"]));
  });
  await t.step("scan results and location labels are in the sentence", () => {
    assert.match(got.get("scan_code_push")!.data.msg!["text"] as string, /qrcode.*结果：1/);
    assert.match(
      got.get("location_select")!.data.msg!["text"] as string,
      /广州市海珠区客村艺苑路 106号/,
    );
    const place = got.get("location_select")!.data.msg!["send_location_info"] as Record<
      string,
      unknown
    >;
    assert.equal(place["location_x"], 23);
    assert.equal(place["scale"], 15);
  });
  await t.step("subscribe with a scene, and the kf session events name the kf account", () => {
    assert.match(got.get("subscribe_scan")!.data.msg!["text"] as string, /扫码关注.*123123/);
    assert.match(
      got.get("kf_switch_session")!.data.msg!["text"] as string,
      /test1@test.*test2@test/,
    );
  });
});

Deno.test("every field WeChat sends is kept in msg, in snake_case", async (t) => {
  await t.step("a voice message keeps MsgDataId, Idx and MediaId16K", async () => {
    const xml = (await fixture("docs/voice_16k.xml")).replace("<Idx>xxxx</Idx>", "<Idx>2</Idx>");
    const e = await deliverSample(xml);
    assert.equal(e.result.code, 1003);
    assert.equal(e.data.msg?.["media_id_16k"], "media_id_16k");
    assert.equal(e.data.msg?.["msg_data_id"], "xxxx");
    assert.equal(e.data.msg?.["idx"], 2);
    assert.equal(e.data.msg?.["msg_id"], "1234567890123456");
    assert.equal(e.data["account"], "toUser");
  });
  await t.step("a tap in a msgmenu keeps bizmsgmenuid", async () => {
    const e = await deliverSample(await fixture("docs/text_msgmenu.xml"));
    assert.equal(e.result.code, 1001);
    assert.equal(e.data.msg?.["content"], "满意");
    assert.equal(e.data.msg?.["bizmsgmenuid"], "101");
  });
  await t.step("the seed's form (ToUserName names an agent) carries no account", async () => {
    const e = await deliverSample(textXml("o-seed", "sample-agent", "hi", "5501"));
    assert.equal(e.data["account"], undefined);
  });
});
