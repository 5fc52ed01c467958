// The console's plain modules (static/console/*.js), run by `deno test` without a browser:
// drafts, reply limits, quick replies, triage, the message window, alerts, the string table,
// which system notices are reports, and the context two tabs share.

import assert from "node:assert/strict";
import { createDrafts, MAX_DRAFTS } from "../../static/console/drafts.js";
import {
  afterGivenBack,
  afterInbound,
  afterReply,
  quotaKeys,
  replyState,
  WINDOW_S,
} from "../../static/console/limits.js";
import {
  fillPlaceholders,
  followerName,
  insertQuickReply,
  searchQuickReplies,
  slashQuery,
} from "../../static/console/quick_replies.js";
import { matchesTriage, triageCounts } from "../../static/console/triage.js";
import {
  FOLLOW,
  grow,
  hiddenNewer,
  MAX,
  newer,
  newestWindow,
  older,
} from "../../static/console/message_window.js";
import {
  alertFor,
  DEFAULT_SETTINGS,
  faviconSvg,
  loadAlertSettings,
  saveAlertSettings,
} from "../../static/console/alerts.js";
import { createTranslator, pickLanguage, STRINGS } from "../../static/console/i18n.js";
import { AFTER, BEFORE, searchedText, snippetOf } from "../../static/console/search_snippet.js";
import { isReport } from "../../static/console/reports.js";
import {
  mergeNotices,
  mergeTransferred,
  parseContext,
  TRANSFERRED_KEPT,
  unreadNotices,
} from "../../static/console/context.js";

/** A Storage with what the modules use. */
function fakeStorage() {
  const map = new Map<string, string>();
  return {
    getItem: (k: string) => map.get(k) ?? null,
    setItem: (k: string, v: string) => void map.set(k, v),
    removeItem: (k: string) => void map.delete(k),
    keys: () => map.keys(),
    get size() {
      return map.size;
    },
  };
}

Deno.test("createDrafts() keeps one draft per agent and contact, bounded", () => {
  const storage = fakeStorage();
  const alice = createDrafts(storage, "alice");
  const bob = createDrafts(storage, "bob");
  alice.set("oA", "退款已经");
  alice.set("oB", "hello");
  bob.set("oA", "bob's");
  assert.equal(alice.get("oA"), "退款已经");
  assert.equal(createDrafts(storage, "alice").get("oB"), "hello", "a new page reads it back");
  assert.equal(bob.get("oA"), "bob's");
  alice.set("oA", "");
  assert.equal(alice.get("oA"), "");
  assert.deepEqual(alice.contacts(), ["oB"]);
  for (let i = 0; i < MAX_DRAFTS + 10; i++) alice.set(`o${i}`, `d${i}`);
  assert.equal(alice.contacts().length, MAX_DRAFTS);
  assert.equal(alice.get("o0"), "", "the oldest went first");
  assert.equal(alice.get(`o${MAX_DRAFTS + 9}`), `d${MAX_DRAFTS + 9}`);
});

Deno.test("createDrafts().contactOf() names the contact of this agent's draft keys only", () => {
  const storage = fakeStorage();
  const alice = createDrafts(storage, "alice");
  const own = "wxbridge.draft:alice:oA";
  alice.set("oA", "x");
  assert.equal(storage.getItem(own), "x", "the key a storage event names");
  assert.equal(alice.contactOf(own), "oA");
  assert.equal(createDrafts(storage, "bob").contactOf(own), null, "another agent's");
  assert.equal(alice.contactOf("wxbridge.draft:alice"), null, "the index");
  assert.equal(alice.contactOf(null), null, "storage cleared");
});

Deno.test("createDrafts() keeps an agent's drafts apart per account", () => {
  const storage = fakeStorage();
  const plain = createDrafts(storage, "carol");
  const brandA = createDrafts(storage, "carol", { account: "brand-a" });
  const brandB = createDrafts(storage, "carol", { account: "brand-b" });
  brandA.set("oSame", "for A");
  assert.equal(brandB.get("oSame"), "", "brand A's draft in brand B");
  assert.equal(plain.get("oSame"), "", "in a page without an account");
  const key = "wxbridge.draft:@brand-a/carol:oSame";
  assert.equal(storage.getItem(key), "for A");
  assert.equal(brandA.contactOf(key), "oSame");
  assert.equal(brandB.contactOf(key), null);
  assert.equal(plain.contactOf(key), null);
  plain.set("oOld", "kept");
  assert.equal(storage.getItem("wxbridge.draft:carol:oOld"), "kept", "the keys drafts always had");
});

Deno.test("createDrafts() keeps agents apart whose ids differ only where a ':' splits them", () => {
  // Agent "a:b"'s draft for "c" and agent "a"'s for "b:c" were one key, wxbridge.draft:a:b:c,
  // and agent "a:b"'s index was agent "a"'s draft for "b".
  const storage = fakeStorage();
  const ab = createDrafts(storage, "a:b");
  const a = createDrafts(storage, "a");
  ab.set("c", "from a:b");
  a.set("b:c", "from a");
  a.set("b", "a's draft for b");
  assert.equal(ab.get("c"), "from a:b");
  assert.equal(a.get("b:c"), "from a");
  assert.deepEqual(createDrafts(storage, "a:b").contacts(), ["c"]);
  assert.deepEqual(createDrafts(storage, "a").contacts(), ["b:c", "b"]);
  const abKey = [...storage.keys()].find((k) => storage.getItem(k) === "from a:b")!;
  assert.equal(ab.contactOf(abKey), "c");
  assert.equal(a.contactOf(abKey), null, "a storage event of a:b's is not a's");
  const aKey = [...storage.keys()].find((k) => storage.getItem(k) === "from a")!;
  assert.equal(a.contactOf(aKey), "b:c");
  assert.equal(ab.contactOf(aKey), null);
});

Deno.test("createDrafts() moves drafts kept under the keys before encoding, once", () => {
  const storage = fakeStorage();
  storage.setItem("wxbridge.draft:a:b", JSON.stringify(["c", "o1"]));
  storage.setItem("wxbridge.draft:a:b:c", "old of a:b");
  storage.setItem("wxbridge.draft:a:b:o1", "old for o1");
  storage.setItem("wxbridge.draft:alice", JSON.stringify(["x:y", "oPlain"]));
  storage.setItem("wxbridge.draft:alice:x:y", "alice's for x:y");
  storage.setItem("wxbridge.draft:alice:oPlain", "unchanged");
  const ab = createDrafts(storage, "a:b");
  assert.equal(ab.get("c"), "old of a:b");
  assert.equal(ab.get("o1"), "old for o1");
  assert.deepEqual(ab.contacts(), ["c", "o1"]);
  assert.equal(storage.getItem("wxbridge.draft:a:b"), null, "the old index is gone");
  assert.equal(storage.getItem("wxbridge.draft:a:b:c"), null, "and the old keys");
  const alice = createDrafts(storage, "alice");
  assert.equal(alice.get("x:y"), "alice's for x:y");
  assert.equal(alice.get("oPlain"), "unchanged");
  assert.equal(storage.getItem("wxbridge.draft:alice:oPlain"), "unchanged", "its key is the same");
  assert.equal(storage.getItem("wxbridge.draft:alice:x:y"), null);
  assert.deepEqual(alice.contacts(), ["x:y", "oPlain"]);
  // Agent "a"'s draft for "b" where a:b's old index was: not an index, left alone.
  storage.setItem("wxbridge.draft:a:b", "a's text for b");
  createDrafts(storage, "a:b");
  assert.equal(createDrafts(storage, "a").get("b"), "a's text for b");
  assert.equal(createDrafts(storage, "a:b").get("c"), "old of a:b", "moved once, kept");
  // Nor when a's text for b reads as a list of contacts: nothing of a:b's is under it to move.
  createDrafts(storage, "a").set("b", JSON.stringify(["c"]));
  createDrafts(storage, "a:b");
  assert.equal(createDrafts(storage, "a").get("b"), '["c"]', "a's draft is not taken for an index");
});

Deno.test("replyState() reads WeChat's window and quota", async (t) => {
  const now = 1_800_000_000;
  await t.step("open, with replies left", () => {
    const s = replyState({ last_inbound_time: now - 3600, replies_since_inbound: 2 }, now);
    assert.equal(s.state, "open");
    assert.equal(s.repliesLeft, 3);
    assert.equal(s.canReply, true);
  });
  await t.step("five replies used: no more until the follower writes", () => {
    let c = { last_inbound_time: now - 60, replies_since_inbound: 4 };
    c = afterReply(c);
    const s = replyState(c, now);
    assert.equal(s.canReply, false);
    assert.equal(s.reason, "quota");
    assert.equal(replyState(afterInbound(c, now), now).repliesLeft, 5);
  });
  await t.step("3 in the minute after a follow or menu tap, as GET contacts says", () => {
    const tapped = { last_inbound_time: now - 10, reply_quota: 3, replies_since_inbound: 1 };
    assert.equal(replyState(tapped, now).quota, 3);
    assert.equal(replyState(tapped, now).repliesLeft, 2);
    assert.equal(replyState(afterReply(afterReply(tapped)), now).reason, "quota");
    assert.equal(replyState(afterInbound(tapped, now), now).repliesLeft, 5, "a message: 5");
    assert.equal(replyState({ last_inbound_time: now }, now).quota, 5, "a bridge without it");
    // The console names the 3 it counts, not the 5 of a follower's message.
    const t = createTranslator("en");
    const keys = quotaKeys(replyState(afterReply(afterReply(tapped)), now));
    assert.match(t(keys.title), /3 replies in the minute/);
    assert.match(t(keys.used, { name: "Li" }), /3 replies after this follow/);
    assert.match(t(quotaKeys(replyState({ last_inbound_time: now }, now)).used), /5 replies/);
  });
  await t.step("a refused reply the bridge gave back is one more left", () => {
    const used = afterReply({ last_inbound_time: now - 60, replies_since_inbound: 4 });
    const back = afterGivenBack(used, 4);
    assert.equal(replyState(back, now).repliesLeft, 1);
    assert.equal(replyState(back, now).canReply, true);
  });
  await t.step("closing within two hours, then closed", () => {
    assert.equal(replyState({ last_inbound_time: now - WINDOW_S + 600 }, now).state, "soon");
    const closed = replyState({ last_inbound_time: now - WINDOW_S - 1 }, now);
    assert.equal(closed.state, "closed");
    assert.equal(closed.reason, "window");
  });
  await t.step("WeChat's own refusal closes the window until the follower writes", () => {
    const c = { last_inbound_time: now - 60, window_closed: true };
    assert.equal(replyState(c, now).reason, "window");
    assert.equal(replyState(afterInbound(c, now), now).canReply, true);
  });
  await t.step("unsubscribed followers get nothing", () => {
    const s = replyState({ last_inbound_time: now, subscribed: false }, now);
    assert.equal(s.reason, "unsubscribed");
  });
});

Deno.test("quick replies: the / query, search, placeholders, insertion", () => {
  assert.deepEqual(slashQuery("/退", 2), { query: "退", start: 0, end: 2 });
  assert.deepEqual(slashQuery("hi /gr", 6), { query: "gr", start: 3, end: 6 });
  assert.equal(slashQuery("http://x", 8), null, "a slash inside a word is not a command");
  assert.equal(slashQuery("/a b", 4), null);
  const list = [
    { id: "1", title: "Greeting", text: "Hi {name}" },
    { id: "2", title: "退款", text: "{name}，退款已受理" },
    { id: "3", title: "Bye", text: "Thanks, greetings from {agent}" },
  ];
  assert.deepEqual(searchQuickReplies(list, "gre").map((q) => q.id), ["1", "3"]);
  assert.deepEqual(searchQuickReplies(list, "退").map((q) => q.id), ["2"]);
  assert.equal(searchQuickReplies(list, "").length, 3);
  const filled = fillPlaceholders("{name}，我是 {agent}，{unknown}", {
    name: "王女士",
    agent: "7",
  });
  assert.equal(filled, "王女士，我是 7，{unknown}");
  // A teammate's quick reply naming an Object method sent "function Object() { [native
  // code] }" to the customer: only the five placeholders are filled.
  assert.equal(
    fillPlaceholders("{constructor} {toString} {__proto__} {hasOwnProperty}", { name: "王" }),
    "{constructor} {toString} {__proto__} {hasOwnProperty}",
  );
  // No name (WeChat gives none): the gap is closed, the OpenID the bridge lists never put in.
  const noName = (text: string) => fillPlaceholders(text, { name: "", agent: "7" });
  assert.equal(noName("您好{name}，我是客服{agent}。"), "您好，我是客服7。");
  assert.equal(noName("{name}，您好"), "您好");
  assert.equal(noName("{name}您好"), "您好");
  assert.equal(noName("Hello {name}, I am {agent}"), "Hello, I am 7");
  assert.equal(noName("Thanks, {name}!"), "Thanks!");
  assert.equal(noName("亲爱的{name}，感谢"), "亲爱的，感谢");
  assert.equal(followerName({ contact_id: "oF011", name: "oF011" }, "oF011"), "");
  assert.equal(followerName({ name: "" }, "oF011"), "");
  assert.equal(followerName({ name: "王女士" }, "oF011"), "王女士");
  assert.deepEqual(insertQuickReply("ok /gr", { start: 3, end: 6 }, "Hi 王"), {
    text: "ok Hi 王",
    caret: 7,
  });
});

Deno.test("matchesTriage() sorts conversations into the filters", () => {
  const now = 1_800_000_000;
  const contacts = [
    { contact_id: "a", agent_id: "me", status: "open", unread: 2, last_inbound_time: now - 60 },
    {
      contact_id: "b",
      agent_id: "me",
      status: "open",
      unread: 0,
      last_inbound_time: now - WINDOW_S + 600,
    },
    { contact_id: "c", agent_id: null, status: "closed", unread: 0, last_inbound_time: now },
  ];
  const ids = (f: string) =>
    contacts.filter((c) => matchesTriage(c, f, "me", now)).map((c) => c.contact_id);
  assert.deepEqual(ids("mine"), ["a", "b"]);
  assert.deepEqual(ids("unread"), ["a"]);
  assert.deepEqual(ids("closing"), ["b"]);
  assert.deepEqual(ids("closed"), ["c"]);
  assert.deepEqual(ids("all"), ["a", "b", "c"]);
  const counts = triageCounts(contacts, [{ contact_id: "w" }], "me", now);
  assert.equal(counts.waiting, 1);
  assert.equal(counts.open, 2);
});

Deno.test("the message window stays bounded and follows the newest", () => {
  let win = newestWindow(5000);
  assert.equal(win.end - win.start, FOLLOW);
  win = grow(win, 5001);
  assert.equal(win.end, 5001, "following: the newest shows");
  const up = older(win);
  assert.ok(up.win.end - up.win.start <= MAX);
  assert.equal(up.win.following, false);
  const away = grow(up.win, 5100);
  assert.equal(hiddenNewer(away, 5100), 5100 - away.end, "scrolled up: new ones wait below");
  let down = away;
  while (!down.following) down = newer(down, 5100);
  assert.equal(down.end, 5100);
  assert.ok(down.end - down.start <= MAX);
  let top = newestWindow(300);
  let atStart = false;
  while (!atStart) ({ win: top, atStart } = older(top));
  assert.equal(top.start, 0);
});

Deno.test("alerts: what fires, settings kept, the favicon badge", () => {
  const on = { ...DEFAULT_SETTINGS };
  assert.equal(alertFor({ kind: "message" }, { viewing: true, hidden: false }, on), null);
  assert.deepEqual(alertFor({ kind: "message" }, { viewing: false, hidden: false }, on), {
    sound: true,
    desktop: false,
  });
  assert.deepEqual(alertFor({ kind: "follower" }, { viewing: true, hidden: true }, on), {
    sound: true,
    desktop: true,
  });
  const quiet = { sound: false, desktop: false, badge: true };
  assert.equal(alertFor({ kind: "closing" }, { viewing: false, hidden: true }, quiet), null);
  const storage = fakeStorage();
  saveAlertSettings(storage, "a1", { sound: false, desktop: true, badge: false, junk: 1 });
  assert.deepEqual(loadAlertSettings(storage, "a1"), { sound: false, desktop: true, badge: false });
  assert.deepEqual(loadAlertSettings(storage, "a2"), DEFAULT_SETTINGS);
  assert.match(faviconSvg(3), />3</);
  assert.doesNotMatch(faviconSvg(0), /<text/);
  assert.match(faviconSvg(120), />99\+</);
});

Deno.test("the string table: both languages, every key, the language picked", () => {
  const en = Object.keys(STRINGS.en).sort();
  assert.deepEqual(Object.keys(STRINGS["zh-CN"]).sort(), en);
  for (const [lang, table] of Object.entries(STRINGS)) {
    for (const [key, text] of Object.entries(table as Record<string, string>)) {
      const want = [...(STRINGS.en as Record<string, string>)[key]!.matchAll(/\{(\w+)\}/g)]
        .map((m) => m[1]).sort();
      const got = [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
      assert.deepEqual(got, want, `${lang} ${key} has the same placeholders`);
    }
  }
  assert.equal(pickLanguage(null, ["zh-TW", "en"]), "zh-CN");
  assert.equal(pickLanguage(null, ["en-GB"]), "en");
  assert.equal(pickLanguage("en", ["zh-CN"]), "en", "the agent's choice wins");
  assert.equal(pickLanguage(null, ["fr"]), "en");
  const t = createTranslator("zh-CN");
  assert.equal(t("quota.left", { n: 3, total: 5 }), "还可回复 3/5 条");
  assert.equal(createTranslator("en")("quota.left", { n: 3, total: 5 }), "3 of 5 replies left");
});

Deno.test("snippetOf() shows a long text around the match, cut on either side", () => {
  const long = "颜色不一样，".repeat(50) + "订单号 TB123 麻烦查一下" + "谢谢".repeat(60);
  const s = snippetOf(long, "tb123");
  assert.equal(s.match, "TB123");
  assert.ok(s.before.startsWith("…"));
  assert.ok(s.after.endsWith("…"));
  assert.equal(s.before.length, BEFORE + 1);
  assert.equal(s.after.length, AFTER + 1);
  // A short text is whole, the match in it.
  assert.deepEqual(snippetOf("我要退款", "退款"), { before: "我要", match: "退款", after: "" });
});

Deno.test("snippetOf() cuts no emoji in two, and marks nothing it cannot place", () => {
  const s = snippetOf("😀".repeat(30) + "x", "x", { before: 5, after: 5 });
  assert.equal(s.match, "x");
  // An even number of code units after "…": whole emoji only.
  assert.equal((s.before.length - 1) % 2, 0);
  assert.match(s.before.slice(1), /^(😀)+$/);
  // Lowercased, İ is two code units: the indices no longer line up, so the start shows.
  const shifted = snippetOf("İstanbul sipariş", "sipariş");
  assert.equal(shifted.match, "");
  assert.equal(shifted.after, "İstanbul sipariş");
  assert.deepEqual(snippetOf("abc", "zzz"), { before: "", match: "", after: "abc" });
});

Deno.test("snippetOf() cuts no flag, family or skin tone in two", () => {
  // 🇨🇳 is two regional indicators: cut between them, the rest paired up as 🇳🇨.
  const flags = snippetOf("🇨🇳".repeat(30) + "x", "x", { before: 6, after: 5 });
  assert.equal(flags.match, "x");
  assert.match(flags.before, /^…(🇨🇳)+$/u);
  const family = "👨‍👩‍👧";
  const fam = snippetOf(`x${family.repeat(10)}`, "x", { before: 5, after: 10 });
  assert.match(fam.after, new RegExp(`^(${family})+…$`, "u"));
  const thumbs = snippetOf(`${"👍🏽".repeat(10)}x`, "x", { before: 5, after: 5 });
  assert.match(thumbs.before, /^…(👍🏽)+$/u);
});

Deno.test("searchedText() reads the field the bridge searched", () => {
  assert.equal(searchedText({ content: "在吗" }), "在吗");
  assert.equal(searchedText({ label: "上海市人民广场", title: undefined }), "上海市人民广场");
  assert.equal(searchedText({ recognition: "我要退款" }), "我要退款");
  assert.equal(searchedText({ title: "链接", description: "说明" }), "链接");
  assert.equal(searchedText(undefined), "");
});

Deno.test("isReport(): a follower's place, kf sessions and the account's own reports", () => {
  assert.equal(isReport({ event: "LOCATION", follower_id: "o1" }), true);
  assert.equal(isReport({ event: "kf_switch_session", follower_id: "o1" }), true);
  // The bridge sends the account's reports with WeChat's FromUserName and no follower.
  assert.equal(isReport({ event: "MASSSENDJOBFINISH", from_user_name: "oR5G" }), true);
  assert.equal(isReport({ event: "card_pass_check", from_user_name: "oR5G" }), true);
  // Notices to read: about a follower, or the bridge's own.
  assert.equal(isReport({ event: "assigned", follower_id: "o1" }), false);
  assert.equal(isReport({ event: "CLICK", follower_id: "o1", from_user_name: "o1" }), false);
  assert.equal(isReport({ event: "waiting_taken", agent_id: "a", follower_ids: ["o1"] }), false);
  assert.equal(isReport(undefined), false);
});

Deno.test("mergeNotices(): two tabs' system lists as one, read where either read it", async (t) => {
  const notice = (id: string, seq: number, read = false, event = "assigned") => ({
    id,
    seq,
    send_time: 1000 + seq,
    read,
    msg: { event, follower_id: `o${id}` },
  });
  await t.step("each once, in the order they came, read if read anywhere", () => {
    const own = [notice("a", 1, true), notice("c", 3)];
    const other = [notice("a", 1), notice("b", 2), notice("c", 3, true)];
    const merged = mergeNotices(own, other);
    assert.deepEqual(merged.map((n: { id?: string }) => n.id), ["a", "b", "c"]);
    assert.deepEqual(merged.map((n: { read?: boolean }) => n.read), [true, false, true]);
    assert.equal(unreadNotices(merged), 1);
  });
  await t.step("nothing new: the tab's own list, untouched", () => {
    const own = [notice("a", 1), notice("b", 2)];
    assert.equal(mergeNotices(own, [notice("a", 1)]), own);
    assert.equal(mergeNotices(own, undefined), own);
  });
  await t.step("bounded to the newest; no id, not taken in", () => {
    const other = [{ seq: 9, send_time: 1009, msg: {} }, notice("b", 2), notice("z", 8)];
    const merged = mergeNotices([notice("a", 1), notice("b", 2)], other, 2);
    assert.deepEqual(merged.map((n: { id?: string }) => n.id), ["b", "z"]);
  });
  await t.step("one missed goes after the one it came after, whatever its time", () => {
    // A follower's LOCATION carries WeChat's CreateTime, here ahead of the bridge's clock.
    const early = { ...notice("b", 2, false, "LOCATION"), send_time: 5000 };
    const merged = mergeNotices([notice("a", 1), notice("c", 3)], [notice("a", 1), early]);
    assert.deepEqual(merged.map((n: { id?: string }) => n.id), ["a", "b", "c"]);
  });
  await t.step("reports are never counted", () => {
    assert.equal(unreadNotices([notice("a", 1, false, "LOCATION"), notice("b", 2)]), 1);
  });
});

Deno.test("mergeTransferred(): the newest word per follower, its transfer or its return", () => {
  const moved = (id: string, at: number) => ({ contact_id: id, transferred_at: at });
  const own = {
    transferred: new Map([["oKept", moved("oKept", 100)], ["oBack", moved("oBack", 100)]]),
    returned: new Map(),
  };
  const other = {
    transferred: [moved("oThere", 120), moved("oKept", 90)],
    returned: [{ contact_id: "oBack", at: 150 }],
  };
  const merged = mergeTransferred(own, other);
  assert.deepEqual([...merged.transferred.keys()].sort(), ["oKept", "oThere"]);
  assert.equal(merged.transferred.get("oKept")?.transferred_at, 100);
  // Handed over again after it came back: listed.
  const again = mergeTransferred(
    { transferred: new Map([["oBack", moved("oBack", 200)]]), returned: new Map() },
    { transferred: [], returned: [{ contact_id: "oBack", at: 150 }] },
  );
  assert.deepEqual([...again.transferred.keys()], ["oBack"]);
  const many = Array.from({ length: TRANSFERRED_KEPT + 5 }, (_, i) => moved(`o${i}`, i));
  const bounded = mergeTransferred({ transferred: new Map(), returned: new Map() }, {
    transferred: many,
    returned: [],
  });
  assert.equal(bounded.transferred.size, TRANSFERRED_KEPT);
  assert.equal(bounded.transferred.has("o0"), false, "the oldest go first");
});

Deno.test("parseContext() reads a saved context, also one saved before notices had read", () => {
  assert.deepEqual(parseContext("{damaged"), {
    system: [],
    transferred: [],
    returned: [],
    lastSeq: 0,
  });
  const old = parseContext(JSON.stringify({
    system: [
      { id: "1", msg: { event: "assigned", follower_id: "oA" } },
      { id: "2", msg: { event: "assigned", follower_id: "oB" } },
      { id: "3", msg: { event: "LOCATION", follower_id: "oB" } },
    ],
    systemUnseen: 1,
    lastSeq: 7,
  }));
  // The last notice to read is the one counted; the report after it was never counted.
  assert.deepEqual(old.system.map((n) => n.read), [true, false, true]);
  assert.equal(unreadNotices(old.system), 1);
  assert.equal(old.lastSeq, 7);
});
