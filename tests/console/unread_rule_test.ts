// The page's rule for which 102s count unread on a follower (static/console/unread.js) against
// the bridge's own count: a real server, a real agent socket, and WeChat's callbacks of each kind.
// The page counted none of them, so its number jumped at the next contacts refresh.

import assert from "node:assert/strict";
import { countsUnread } from "../../static/console/unread.js";
import { connectAgent, type Received } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { B, followerXml } from "../browser/browser.ts";

const AGENT = "agentA";
const F = "oRule";

/** What a callback of each kind looks like (`event` is the 102's `msg.event`). */
const CALLBACKS: Array<[string, Record<string, string | number>]> = [
  ["CLICK", { MsgType: "event", Event: "CLICK", EventKey: "menu_invoice" }],
  ["VIEW", { MsgType: "event", Event: "VIEW", EventKey: "https://example.com/" }],
  ["SCAN", { MsgType: "event", Event: "SCAN", EventKey: "42", Ticket: "t" }],
  ["scancode_push", { MsgType: "event", Event: "scancode_push", EventKey: "scan" }],
  ["subscribe", { MsgType: "event", Event: "subscribe" }],
  ["LOCATION", { MsgType: "event", Event: "LOCATION", Latitude: 31.2, Longitude: 121.4 }],
  ["kf_create_session", { MsgType: "event", Event: "kf_create_session", KfAccount: "kf1" }],
  ["kf_close_session", { MsgType: "event", Event: "kf_close_session", KfAccount: "kf1" }],
  ["user_info_modified", {
    MsgType: "event",
    Event: "user_info_modified",
    FromUserName: "weixin",
    OpenID: F,
  }],
  ["unknown_type", { MsgType: "shortvideo_new", Content: "?" }],
  ["unsubscribe", { MsgType: "event", Event: "unsubscribe" }],
];

Deno.test("countsUnread() counts the 102s the bridge counts in a follower's unread", async (t) => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=${AGENT}`);
  try {
    const post = async (fields: Record<string, string | number>) => {
      const res = await fetch(`${server.base}${B}/send_xml`, {
        method: "POST",
        headers: { "content-type": "text/xml" },
        body: followerXml(F, fields),
      });
      assert.equal(res.status, 200, await res.text());
    };
    const unread = async () => {
      const res = await fetch(`${server.base}${B}/contacts?userid=${AGENT}`);
      const { contacts } = await res.json();
      return Number(contacts.find((c: { contact_id: string }) => c.contact_id === F)?.unread);
    };
    await post({ MsgType: "text", Content: "你好" });
    await agent.waitFor((e) => e.data.contact_id === F);
    for (const [event, fields] of CALLBACKS) {
      await t.step(event, async () => {
        const before = await unread();
        const from = agent.received.length;
        await post(fields);
        const is102 = (e: Received) =>
          agent.received.indexOf(e) >= from && e.result.code === 102 && e.data.msg?.event === event;
        const got = await agent.waitFor(is102);
        assert.equal(await unread() - before, countsUnread(got.data.msg) ? 1 : 0);
      });
    }
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("countsUnread() reads a 102's msg", async (t) => {
  await t.step("a follower's own act counts", () => {
    assert.equal(countsUnread({ event: "CLICK", follower_id: "oF" }), true);
    assert.equal(countsUnread({ event: "unknown_type", follower_id: "oF" }), true);
  });
  await t.step("the bridge's notices, reports and forgets do not", () => {
    for (const event of ["assigned", "closed", "window_closing", "waiting", "claimed"]) {
      assert.equal(countsUnread({ event, follower_id: "oF" }), false, event);
    }
    assert.equal(countsUnread({ event: "LOCATION", follower_id: "oF" }), false);
    assert.equal(countsUnread({ event: "kf_switch_session", follower_id: "oF" }), false);
    assert.equal(countsUnread({ event: "user_authorization_revoke", follower_id: "oF" }), false);
  });
  await t.step("nothing without a follower or an event", () => {
    assert.equal(countsUnread({ event: "MASSSENDJOBFINISH", from_user_name: "gh" }), false);
    assert.equal(countsUnread({ follower_id: "oF" }), false);
    assert.equal(countsUnread(null), false);
  });
});
