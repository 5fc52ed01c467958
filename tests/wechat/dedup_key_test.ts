// The key WeChat's retries share (dedupKeyOf) stays short whatever a body holds: a report with
// a 24,000-digit MsgID, or an EventKey as long as a body, is kept as its hash, still one key
// per report and the same key for its retry.

import assert from "node:assert/strict";
import { dedupKeyOf, readFollowerMessage } from "../../src/wechat/message.ts";
import { createXmlReader } from "../../src/wechat/xml.ts";

const reader = createXmlReader();

function report(msgId: string): string {
  return `<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[oR]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>${msgId}</MsgID><Status><![CDATA[send success]]></Status></xml>`;
}

const keyOf = (xml: string) => dedupKeyOf(readFollowerMessage(reader.parse(xml)));

Deno.test("dedupKeyOf() is at most 256 characters, one per report, the same for a retry", () => {
  const long = "9".repeat(24_000);
  const other = "9".repeat(23_999) + "8";
  const key = keyOf(report(long));
  assert.ok(key.length <= 256, `a key of ${key.length} characters`);
  assert.equal(keyOf(report(long)), key, "a retry has the same key");
  assert.notEqual(keyOf(report(other)), key, "another report has another key");
  // Short keys are as they were: keys already in stores still match their retries.
  assert.equal(keyOf(report("1000001")), "e|oR|1700000000|MASSSENDJOBFINISH||1000001");
});
