// The console's sentences for a follower's events (static/console/event_text.js) in both
// languages, from the envelope's fields; and the bridge's Chinese sentences (the list preview
// GET contacts gives) read back, checked against the bridge's own describeEvent so the two
// cannot drift apart.

import assert from "node:assert/strict";
import { describeEvent } from "../../src/wechat/event_text.ts";
import { eventText, noticePreview, parseBridgeSentence } from "../../static/console/event_text.js";
import { createTranslator } from "../../static/console/i18n.js";

const en = createTranslator("en");
const zh = createTranslator("zh-CN");

/** Events as the bridge's envelope has them (PROTOCOL.md: WeChat's fields in snake_case). */
const EVENTS: Array<[string, Record<string, unknown>, RegExp]> = [
  ["subscribe", {}, /^oE followed the account$/],
  ["subscribe", { event_key: "qrscene_123" }, /^oE followed .*QR code \(scene 123\)$/],
  ["unsubscribe", {}, /^oE unfollowed the account$/],
  ["SCAN", { event_key: "123" }, /^oE scanned a QR code .*\(scene 123\)$/],
  [
    "LOCATION",
    { latitude: "31.2304", longitude: "121.4737", precision: "30" },
    /latitude 31\.2304, longitude 121\.4737, precision 30 m$/,
  ],
  ["CLICK", { event_key: "MENU_ORDERS" }, /^oE tapped the menu \(MENU_ORDERS\)$/],
  ["VIEW", { event_key: "https://shop.example/a" }, /web page .*: https:\/\/shop\.example\/a$/],
  ["view_miniprogram", { event_key: "pages/index" }, /Mini Program page .*: pages\/index$/],
  [
    "scancode_push",
    { scan_code_info: { scan_type: "qrcode", scan_result: "R1" } },
    /scanned a code .*\(qrcode\): R1$/,
  ],
  [
    "scancode_waitmsg",
    { scan_code_info: { scan_type: "barcode", scan_result: "R2" } },
    /waiting for a reply \(barcode\): R2$/,
  ],
  ["pic_sysphoto", { send_pics_info: { count: "2" } }, /took photos .*\(2\)$/],
  ["pic_photo_or_album", { send_pics_info: { count: "1" } }, /camera or album .*\(1\)$/],
  ["pic_weixin", { send_pics_info: { count: "3" } }, /WeChat album .*\(3\)$/],
  [
    "location_select",
    { send_location_info: { label: "Shanghai Tower" } },
    /sent a location .*: Shanghai Tower$/,
  ],
  ["user_info_modified", {}, /cleaned oE's profile/],
  ["user_authorization_revoke", {}, /^oE revoked their authorization/],
  ["user_authorization_cancellation", {}, /^oE closed their WeChat account/],
  ["kf_create_session", { kf_account: "test1@test" }, /^test1@test took the conversation with oE/],
  ["kf_close_session", { kf_account: "test1@test" }, /^test1@test closed the conversation/],
  [
    "MASSSENDJOBFINISH",
    {
      msg_id: "1988",
      status: "sendsuccess",
      total_count: "100",
      filter_count: "80",
      sent_count: "75",
      error_count: "5",
    },
    /^Mass send 1988 finished \(sendsuccess\): 100 in all, 80 after filtering, 75 sent, 5 failed$/,
  ],
];

Deno.test("each event reads in English from its fields, none in Chinese", () => {
  for (const [event, fields, want] of EVENTS) {
    const m = { event, ...fields, follower_id: "oE", text: describeEvent("oE", event, fields) };
    const text = eventText(m, en, "en");
    assert.match(text, want, event);
    assert.doesNotMatch(text, /[\u3400-\u9fff]/, event);
  }
  const unknown = {
    event: "unknown_type",
    msg_type: "miniprogrampage",
    follower_id: "oE",
    text: "oE 发来一条暂不支持的 miniprogrampage 类型消息",
  };
  assert.equal(
    eventText(unknown, en, "en"),
    "oE sent a message of a type the console cannot show (miniprogrampage)",
  );
  const other = { event: "card_pass_check", follower_id: "oE", text: "卡券 c1 已通过审核" };
  assert.equal(eventText(other, en, "en"), "oE: WeChat event card_pass_check");
  assert.equal(eventText(other, zh, "zh-CN"), "卡券 c1 已通过审核", "Chinese: the bridge's own");
  const template = { event: "TEMPLATESENDJOBFINISH", follower_id: "oE", status: "success" };
  assert.equal(eventText(template, en, "en"), "A template message reached oE");
  const english = { event: "reply_failed_x", text: "WeChat refused the reply" };
  assert.equal(eventText(english, en, "en"), "WeChat refused the reply");
});

Deno.test("the Chinese console says what the bridge says, from the string table", () => {
  for (const [event, fields] of EVENTS) {
    if (event === "location_select" || event === "unsubscribe") continue;
    const m = { event, ...fields, follower_id: "oE" };
    assert.equal(eventText(m, zh, "zh-CN"), describeEvent("oE", event, fields), event);
  }
});

Deno.test("the bridge's sentences (GET contacts' preview) read back into English", () => {
  for (const [event, fields, want] of EVENTS) {
    const sentence = describeEvent("oE", event, fields);
    const m = parseBridgeSentence(sentence);
    assert.equal(m?.event, event, sentence);
    assert.match(noticePreview(sentence, en, "en"), want, sentence);
    assert.equal(noticePreview(sentence, zh, "zh-CN"), sentence, "Chinese: as it is");
  }
  assert.equal(
    noticePreview(describeEvent("o 1", "some_new_event", { event_key: "K" }), en, "en"),
    "o 1: WeChat event some_new_event",
  );
  assert.match(
    noticePreview("oE 发来一条暂不支持的 miniprogrampage 类型消息", en, "en"),
    /cannot show \(miniprogrampage\)$/,
  );
  // Cut at 80 characters, or a report of the account's: no Chinese left in English either.
  assert.equal(noticePreview("群发任务 1 已结束…", en, "en"), t("sys.someEvent"));
  assert.equal(noticePreview("hello", en, "en"), "hello");
});

function t(key: string) {
  return en(key);
}
