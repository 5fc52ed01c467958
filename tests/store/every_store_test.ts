// Behaviour every store must share, run on each: memory, SQLite, Deno KV and Redis.

import assert from "node:assert/strict";
import { createSystemEnvelope } from "../../src/protocol/envelope.ts";
import { noticeText } from "../../src/protocol/notices.ts";
import { checkReplyAllowed, windowStateOf } from "../../src/protocol/window.ts";
import { openKvStore } from "../../src/store/kv_store.ts";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import { createRedisStore } from "../../src/store/redis_store.ts";
import {
  type LogEntry,
  type Presence,
  ReplyRefusedError,
  ServedByOtherError,
  type Store,
} from "../../src/core/store.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "./_redis_test_env.ts";
import { message, replyItem } from "./_store_items.ts";

const HOUR = 3600_000;
const REDIS_URL = await findTestRedis();

const presence: Presence = { isOnline: (id) => id === "agentW", onlineAgents: () => ["agentW"] };
const events = (entries: LogEntry[]) => entries.map((e) => String(e.envelope.data.msg["event"]));

async function scenario(store: Store, clock: { t: number }) {
  await store.agentOnline("agentW", presence);
  await store.acceptInbound([message("oW", "w1", clock.t)], presence);
  clock.t += 40 * HOUR;
  assert.deepEqual(events((await store.sweepWindows!(clock.t)).deliveries), []);
  clock.t += 7.5 * HOUR;
  const closing = await store.sweepWindows!(clock.t);
  assert.equal(closing.value, 1);
  assert.deepEqual(events(closing.deliveries), ["window_closing"]);
  assert.equal(closing.deliveries[0]!.envelope.data.msg["follower_id"], "oW");
  assert.equal((await store.sweepWindows!(clock.t)).value, 0, "once");
  clock.t += HOUR;
  assert.deepEqual(events((await store.sweepWindows!(clock.t)).deliveries), ["window_expired"]);
  assert.equal((await store.sweepWindows!(clock.t)).value, 0, "once");
  // A menu tap does not open a message window: no new notices.
  await store.acceptInbound([message("oW", "w2", clock.t, "event")], presence);
  clock.t += 47.5 * HOUR;
  assert.equal((await store.sweepWindows!(clock.t)).value, 0);
  // A message does, and its notices start again.
  await store.acceptInbound([message("oW", "w3", clock.t)], presence);
  clock.t += 47.5 * HOUR;
  assert.deepEqual(events((await store.sweepWindows!(clock.t)).deliveries), ["window_closing"]);
}

async function renaming(store: Store, clock: { t: number }) {
  await store.acceptInbound([message("oR", "r1", clock.t)], presence);
  await store.renameContact("agentW", "oR", "王女士");
  assert.equal((await store.getContact("oR"))?.name, "王女士");
  await assert.rejects(() => store.renameContact("someoneElse", "oR", "x"), /not served by/);
  await assert.rejects(() => store.renameContact("agentW", "oNobody", "x"), /unknown contact/);
}

const to = (agentId: string, entries: LogEntry[]) =>
  entries.filter((e) => e.agentId === agentId).map((e) => e.envelope);

/** SPEC "Routing": a reply to a follower nobody serves claims it; one served by another is
 * refused. The team hears of waiting followers and of claims. */
async function claiming(store: Store, clock: { t: number }) {
  // Known agents with no room (agentW and agentX are online on Redis, which reads presence
  // itself): the
  // follower waits.
  await store.setCapacity("agentW", 0);
  await store.setCapacity("agentX", 0);
  await store.setCapacity("aA", 0);
  await store.setCapacity("aB", 0);
  const full: Presence = {
    isOnline: (id) => ["agentW", "aA", "aB"].includes(id),
    onlineAgents: () => ["agentW", "aA", "aB"],
  };
  await store.agentOnline("aA", full);
  await store.agentOnline("aB", full);
  const waited = await store.acceptInbound(
    [{ ...message("oClaim", "claim1", clock.t), to: "" }],
    full,
  );
  assert.deepEqual(waited.value, ["waiting"]);
  for (const agent of ["aA", "aB"]) {
    const notice = to(agent, waited.deliveries).find((e) => e.data.msg["event"] === "waiting");
    assert.ok(notice, `${agent} is told a follower waits`);
    assert.equal(notice.data.msg["follower_id"], "oClaim");
    assert.equal(notice.data.msg["preview"], "claim1", "with what it asked");
  }
  assert.deepEqual((await store.listWaiting()).map((c) => c.follower_id), ["oClaim"]);

  const claimed = await store.recordReply("aA", "oClaim", replyItem("aA", "oClaim", "r1"));
  const contact = await store.getContact("oClaim");
  assert.equal(contact?.agent_id, "aA", "the reply bound the follower to its author");
  assert.equal(contact?.status, "open");
  assert.deepEqual(await store.listWaiting(), [], "and took it off the waiting list");
  const mine = to("aA", claimed.deliveries);
  assert.ok(mine.some((e) => e.data.msg["content"] === "claim1"), "the queued message came along");
  const told = to("aB", claimed.deliveries).find((e) => e.data.msg["event"] === "claimed");
  assert.equal(told?.result.code, 102, "the other agent is told");
  assert.equal(told?.data.msg["agent_id"], "aA");

  // Refused, naming who serves the follower, so the agent's 409 can say so (PROTOCOL.md).
  const servedByAA = (error: unknown) => {
    assert.ok(error instanceof ServedByOtherError, String(error));
    assert.match(error.message, /served by aA/);
    assert.equal(error.followerId, "oClaim");
    assert.equal(error.servedBy, "aA");
    return true;
  };
  await assert.rejects(
    () => store.recordReply("aB", "oClaim", replyItem("aB", "oClaim", "r2")),
    servedByAA,
    "a reply to another agent's follower is refused",
  );
  await assert.rejects(() => store.claim("oClaim", "aB"), servedByAA);
  await store.claim("oClaim", "aA");
  assert.equal((await store.getContact("oClaim"))?.agent_id, "aA", "claiming one's own: no change");

  // Closed by its agent, the follower is anyone's to claim.
  await store.closeConversation("oClaim", "aA");
  const taken = await store.claim("oClaim", "aB");
  assert.equal((await store.getContact("oClaim"))?.agent_id, "aB");
  assert.ok(to("aA", taken.deliveries).some((e) => e.data.msg["event"] === "claimed"));

  // Notes stay in the conversation and never count as replies; a handover note reaches the
  // next agent.
  const before = (await store.getContact("oClaim"))!.replies_since_inbound;
  await store.addNote("aB", "oClaim", "VIP, asked for a refund");
  await assert.rejects(() => store.addNote("aZ", "oClaim", "x"), /not served by/);
  const moved = await store.transfer("oClaim", "aB", "aA", "refund approved, send the form");
  const handover = to("aA", moved.deliveries).find((e) => e.data.msg_type === "note");
  assert.equal(handover?.data.msg["content"], "refund approved, send the form");
  assert.equal(handover?.data["agent_id"], "aB");
  const history = await store.readHistory("oClaim", null, 50);
  assert.deepEqual(
    history.items.filter((i) => i.direction === "note").map((i) => i.msg["content"]),
    ["VIP, asked for a refund", "refund approved, send the form"],
  );
  assert.equal((await store.getContact("oClaim"))!.replies_since_inbound, before);

  await store.setLabels("aA", "oClaim", ["VIP", "退款"]);
  assert.deepEqual((await store.getContact("oClaim"))?.labels, ["VIP", "退款"]);
  await assert.rejects(() => store.setLabels("aZ", "oClaim", ["x"]), /not served by/);
  await store.setLabels("aA", "oClaim", []);
  assert.deepEqual((await store.getContact("oClaim"))?.labels ?? [], []);

  // An agent coming online takes the backlog; the others online hear it in one notice.
  await store.setCapacity("aA", 0);
  await store.setCapacity("aB", 0);
  await store.acceptInbound([{ ...message("oBacklog", "backlog1", clock.t), to: "" }], full);
  await store.setCapacity("aB", null);
  const online = await store.agentOnline("aB", full);
  assert.equal((await store.getContact("oBacklog"))?.agent_id, "aB");
  const backlog = to("aA", online.deliveries).find((e) => e.data.msg["event"] === "waiting_taken");
  assert.deepEqual(backlog?.data.msg["follower_ids"], ["oBacklog"]);
  assert.equal(backlog?.data.msg["agent_id"], "aB");
  assert.ok(!to("aB", online.deliveries).some((e) => e.data.msg["event"] === "waiting_taken"));
  await store.setCapacity("aB", 0);

  const agents = new Map((await store.listAgents()).map((a) => [a.agent_id, a]));
  assert.equal(agents.get("aA")?.load, 1);
  assert.equal(agents.get("aB")?.load, 1, "the backlog");
  assert.equal(agents.get("aA")?.capacity, 0);
}

/** Quick replies are the team's: stored, listed by title, replaced and removed by id. */
async function quickReplies(store: Store) {
  const at = Date.UTC(2026, 10, 1);
  await store.putQuickReply({
    id: "q2",
    title: "退款",
    text: "{name}，退款已受理",
    updated_at: at,
    updated_by: "aA",
  });
  await store.putQuickReply({
    id: "q1",
    title: "Hello",
    text: "Hi {name}",
    updated_at: at,
    updated_by: "aA",
  });
  await store.putQuickReply({
    id: "q1",
    title: "Greeting",
    text: "Hi {name}!",
    updated_at: at,
    updated_by: "aB",
  });
  const list = await store.listQuickReplies();
  assert.deepEqual(list.map((q) => [q.id, q.title, q.text, q.updated_by]), [
    ["q1", "Greeting", "Hi {name}!", "aB"],
    ["q2", "退款", "{name}，退款已受理", "aA"],
  ]);
  assert.equal(await store.deleteQuickReply("q2"), true);
  assert.equal(await store.deleteQuickReply("q2"), false);
  assert.deepEqual((await store.listQuickReplies()).map((q) => q.id), ["q1"]);
}

const nobody: Presence = { isOnline: () => false, onlineAgents: () => [] };
const forgottenNotice = (followerId: string) =>
  createSystemEnvelope({ event: "user_authorization_revoke", follower_id: followerId, text: "-" }, {
    id: `revoke-${followerId}`,
    companyId: "",
    sendTime: 0,
  });

/** user_authorization_revoke: the follower's contact, history and queue are forgotten. */
async function forgetting(store: Store, clock: { t: number }) {
  await store.acceptInbound([message("oF", "f1", clock.t), message("oF", "f2", clock.t)], presence);
  const load = (await store.getAgent("agentW"))!.load;
  const applied = await store.forgetFollower("oF", forgottenNotice("oF"));
  assert.equal(applied.value, true);
  assert.deepEqual(events(applied.deliveries), ["user_authorization_revoke"]);
  assert.equal(applied.deliveries[0]!.agentId, "agentW");
  assert.equal(await store.getContact("oF"), null);
  assert.deepEqual((await store.readHistory("oF", null, 10)).items, []);
  assert.ok(!(await store.listContacts("agentW")).some((c) => c.follower_id === "oF"));
  assert.equal((await store.getAgent("agentW"))!.load, load - 1);
  assert.equal((await store.forgetFollower("oF", forgottenNotice("oF"))).value, false);
  // Writing again starts a new conversation, with nothing of the old one.
  await store.acceptInbound([message("oF", "f3", clock.t)], presence);
  const history = await store.readHistory("oF", null, 10);
  assert.deepEqual(history.items.map((i) => i.msg["content"]), ["f3"]);

  // A follower still waiting for an agent leaves the queue too.
  const waiting = { ...message("oQ", "q1", clock.t), to: "gh_account" };
  const depth = await store.queueDepth();
  // Redis reads presence from Redis: the agent leaves there too.
  await store.agentOffline?.("agentW");
  await store.agentOffline?.("agentX");
  await store.acceptInbound([waiting], nobody);
  assert.equal(await store.queueDepth(), depth + 1);
  const gone = await store.forgetFollower("oQ", forgottenNotice("oQ"));
  assert.deepEqual(gone.deliveries, [], "nobody served it: nobody is told");
  assert.equal(await store.queueDepth(), depth);
  assert.ok(!(await store.listWaiting()).some((c) => c.follower_id === "oQ"));
  await store.agentOnline("agentW", presence);
}

/** WeChat answered 45015/45047: closed until the follower acts again, on every store. */
async function closedByWechat(store: Store, clock: { t: number }) {
  await store.acceptInbound([message("oC", "c1", clock.t)], presence);
  await store.closeWindow("oC", 45015, clock.t);
  const closed = (await store.getContact("oC"))!;
  assert.equal(closed.window_closed_by, 45015);
  assert.equal(checkReplyAllowed(windowStateOf(closed), clock.t + 1000).ok, false);
  // The step that counts a reply refuses it too, as it refuses one over the quota: a reply
  // recorded in a race with the refusal that closed the window would go to WeChat for nothing.
  const owner = closed.agent_id!;
  await assert.rejects(
    () => store.recordReply(owner, "oC", replyItem(owner, "oC", "c-closed")),
    ReplyRefusedError,
  );
  // A menu tap opens its minute (it would have kept an open message window).
  await store.acceptInbound([message("oC", "c2", clock.t + 2000, "event")], presence);
  const tapped = (await store.getContact("oC"))!;
  assert.ok(!tapped.window_closed_by);
  assert.equal(tapped.last_inbound_kind, "event");
  assert.deepEqual(checkReplyAllowed(windowStateOf(tapped), clock.t + 3000), { ok: true });
  await store.closeWindow("oC", 45047, clock.t + 2000);
  await store.acceptInbound([message("oC", "c3", clock.t + 4000)], presence);
  const wrote = (await store.getContact("oC"))!;
  assert.ok(!wrote.window_closed_by);
  assert.deepEqual(checkReplyAllowed(windowStateOf(wrote), clock.t + 5000), { ok: true });
  // WeChat's late 45015 to a reply counted in the tap's minute: the window opened since stays.
  await store.closeWindow("oC", 45015, clock.t + 2000);
  assert.ok(!(await store.getContact("oC"))!.window_closed_by, "an earlier window's answer");
}

/** A reply WeChat refused is given back to the window it was counted in, on every store. */
async function givenBack(store: Store, clock: { t: number }) {
  const count = async () => (await store.getContact("oG"))!.replies_since_inbound;
  const replyOf = async (id: string) =>
    (await store.recordReply("agentW", "oG", replyItem("agentW", "oG", id))).value.n;
  const openedAt = async () => (await store.getContact("oG"))!.last_inbound_at;
  await store.acceptInbound([message("oG", "g1", clock.t)], presence);
  const first = await openedAt();
  const [r1, r2, r3] = [await replyOf("gr1"), await replyOf("gr2"), await replyOf("gr3")];
  assert.equal(await count(), 3);
  assert.equal(await store.returnReply("oG", r2!, first), 2);
  // Told twice (a Redis script resent after a reconnection), it is given back once.
  assert.equal(await store.returnReply("oG", r2!, first), null, "reply 2 was given back already");
  assert.equal(await count(), 2);
  // An event that keeps the open message window keeps what was counted in it.
  await store.acceptInbound([message("oG", "g2", clock.t + 1000, "event")], presence);
  assert.equal(await store.returnReply("oG", r3!, first), 1);
  // The follower writes: a new window, whose count a reply of the last one does not touch.
  await store.acceptInbound([message("oG", "g3", clock.t + 2000)], presence);
  const second = await openedAt();
  const r4 = await replyOf("gr4");
  assert.equal(await store.returnReply("oG", r1!, first), null);
  assert.equal(await count(), 1);
  assert.equal(await store.returnReply("oG", r4, second), 0);
  assert.equal(await store.returnReply("oG", r4, second), null, "never below 0");
  assert.equal(await store.returnReply("oUnknown", 1, first), null);

  // Forgotten, then writing again: a new contact whose history numbers start over, so a
  // refusal of a reply to the one forgotten (its send was still out) gives nothing back.
  clock.t += 1000;
  const replyTo = async (id: string) =>
    (await store.recordReply("agentW", "oH", replyItem("agentW", "oH", id))).value.n;
  await store.acceptInbound([message("oH", "h1", clock.t)], presence);
  const before = (await store.getContact("oH"))!.last_inbound_at;
  const old = [await replyTo("hr1"), await replyTo("hr2"), await replyTo("hr3")];
  await store.forgetFollower("oH", forgottenNotice("oH"));
  clock.t += 1000;
  await store.acceptInbound([message("oH", "h2", clock.t)], presence);
  const after = (await store.getContact("oH"))!.last_inbound_at;
  const fresh = [await replyTo("hr4"), await replyTo("hr5"), await replyTo("hr6")];
  assert.deepEqual(fresh, old, "the new contact's history numbers start over");
  assert.equal(await store.returnReply("oH", old[2]!, before), null);
  assert.equal((await store.getContact("oH"))!.replies_since_inbound, 3);
  assert.equal(await store.returnReply("oH", fresh[2]!, after), 2);
}

const texts = (entries: LogEntry[]) => entries.map((e) => String(e.envelope.data.msg["text"]));

/** The notice texts are the protocol's, filled the same way, whichever store runs the rules. */
async function notices(store: Store, clock: { t: number }) {
  const both: Presence = {
    isOnline: (id) => id === "agentW" || id === "agentX",
    onlineAgents: () => ["agentW", "agentX"],
  };
  await store.agentOnline("agentX", both);
  const start = Date.UTC(2026, 10, 2, 1, 30); // 09:30 in China
  clock.t = start;
  const item = { ...message("oN", "n1", clock.t), name: "李雷" };
  const bound = await store.acceptInbound([item], both);
  assert.deepEqual(texts(bound.deliveries.filter((e) => e.envelope.data.msg_type === "system")), [
    noticeText("assigned", { name: "李雷" }),
  ]);
  const moved = await store.transfer("oN", "agentW", "agentX");
  assert.deepEqual(
    texts(moved.deliveries).sort(),
    [
      noticeText("transferredIn", { name: "李雷", from: "agentW" }),
      noticeText("transferredOut", { name: "李雷", to: "agentX" }),
    ].sort(),
  );
  clock.t = start + 47.5 * HOUR;
  const closing = await store.sweepWindows!(clock.t);
  assert.deepEqual(texts(closing.deliveries), [
    noticeText("windowClosing", { name: "李雷", time: "09:30" }),
  ]);
  assert.match(texts(closing.deliveries)[0]!, /李雷 的 48 小时回复窗口将在 09:30（北京时间）关闭/);
  clock.t = start + 48 * HOUR;
  assert.deepEqual(texts((await store.sweepWindows!(clock.t)).deliveries), [
    noticeText("windowExpired", { name: "李雷" }),
  ]);
  const ended = await store.closeConversation("oN", "agentX");
  assert.deepEqual(texts(ended.deliveries), [noticeText("closed", { name: "李雷" })]);
}

/** A forget's media scan reads every history, past its first page (2,000 rows on SQLite, 200
 * contacts a step on Redis), and finds a key however far in. */
async function mediaScan(store: Store, clock: { t: number }) {
  const key = `${"ab".repeat(32)}.jpg`;
  const absent = `${"cd".repeat(32)}.jpg`;
  const count = 2_100;
  for (let i = 0; i < count; i += 300) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + 300); j++) {
      const item = message(`oScan${j}`, `scan${j}`, clock.t);
      if (j === count - 1) {
        item.envelope.data.msg = { media_url: `https://bridge.example/media/${key}` };
      }
      batch.push(item);
    }
    await store.acceptInbound(batch, presence);
  }
  assert.deepEqual([...await store.mediaInHistory([key, absent])], [key]);
  assert.deepEqual([...await store.mediaInHistory([absent])], []);
}

/** A forgotten follower who writes again: its old log entries stay below the forget's cut, and
 * a reply's late outcome does not land on the new conversation's item with the same number. */
async function forgottenWritesAgain(store: Store, clock: { t: number }) {
  await store.acceptInbound([message("oAgain", "old1", clock.t)], presence);
  const reply = await store.recordReply("agentW", "oAgain", replyItem("agentW", "oAgain", "rOld"));
  assert.equal(reply.value.n, 2);
  const old = await store.readLog("agentW", 0, 100_000);
  const oldSeqs = old.filter((e) => e.envelope.data.contact_id === "oAgain").map((e) => e.seq);
  assert.equal(oldSeqs.length, 2, "the message and the reply's echo");
  assert.deepEqual(await store.forgetCuts("agentW", ["oAgain"]), new Map(), "none before");
  await store.forgetFollower("oAgain", forgottenNotice("oAgain"));
  // Its CreateTime an hour before: WeChat's clock decides nothing.
  const back = await store.acceptInbound([
    message("oAgain", "new1", clock.t - HOUR),
    message("oAgain", "new2", clock.t),
  ], presence);
  assert.deepEqual(back.value, ["delivered", "delivered"]);
  const cuts = await store.forgetCuts("agentW", ["oAgain", "oNeverForgotten"]);
  assert.deepEqual([...cuts.keys()], ["oAgain"]);
  const cut = cuts.get("oAgain")!;
  assert.ok(oldSeqs.every((seq) => seq <= cut), `old entries ${oldSeqs} at or below ${cut}`);
  assert.ok(back.deliveries.every((e) => e.seq > cut), "the new ones above it");

  // WeChat answers the old reply (number 2) after "new2" took that number.
  await store.updateReply("oAgain", { n: 2, id: "rOld" }, "failed", "late answer");
  const history = (await store.readHistory("oAgain", null, 10)).items;
  assert.deepEqual(history.map((i) => [i.msg["content"], i.status ?? null]), [
    ["new1", null],
    ["new2", null],
  ]);
  // Its own reply still takes its outcome.
  const fresh = await store.recordReply("agentW", "oAgain", replyItem("agentW", "oAgain", "rNew"));
  await store.updateReply("oAgain", { n: fresh.value.n, id: "rNew" }, "sent");
  const last = (await store.readHistory("oAgain", null, 1)).items[0];
  assert.equal(last?.status, "sent");
}

/** A reply sent with no clear answer is recorded as one that may have arrived; others are not. */
async function unconfirmedReplies(store: Store, clock: { t: number }) {
  await store.acceptInbound([message("oUnsure", "hello", clock.t)], presence);
  const ids = ["rLost", "rRefused", "rSent"];
  const ns: number[] = [];
  for (const id of ids) {
    ns.push(
      (await store.recordReply("agentW", "oUnsure", replyItem("agentW", "oUnsure", id))).value.n,
    );
  }
  await store.updateReply("oUnsure", { n: ns[0]!, id: "rLost" }, "failed", "timeout", {
    unconfirmed: true,
  });
  await store.updateReply("oUnsure", { n: ns[1]!, id: "rRefused" }, "failed", "invalid openid");
  // "sent" is never unconfirmed, whatever the caller says.
  await store.updateReply("oUnsure", { n: ns[2]!, id: "rSent" }, "sent", undefined, {
    unconfirmed: true,
  });
  const items = (await store.readHistory("oUnsure", null, 10)).items.slice(1);
  assert.deepEqual(items.map((i) => [i.id, i.status, i.error ?? null, i.unconfirmed ?? null]), [
    ["rLost", "failed", "timeout", true],
    ["rRefused", "failed", "invalid openid", null],
    ["rSent", "sent", null, null],
  ]);
}

/** Replies recorded "sending" and never answered (a bridge stopped between the two) are found
 * by their time, answered or forgotten ones not, each once. */
async function unanswered(store: Store, clock: { t: number }) {
  const item = (id: string) => ({
    ...replyItem("agentW", "oLeft", id),
    send_time: Math.floor(clock.t / 1000),
    client_id: `c-${id}`,
  });
  const found = async (before: number) =>
    (await store.unansweredReplies(before, 100)).filter((r) => r.followerId === "oLeft");
  const ids = async (before: number) => (await found(before)).map((r) => r.item.id);
  await store.acceptInbound([message("oLeft", "hi", clock.t)], presence);
  const a = await store.recordReply("agentW", "oLeft", item("rLeftA"));
  clock.t += 1000;
  const b = await store.recordReply("agentW", "oLeft", item("rLeftB"));
  clock.t += 1000;
  await store.recordReply("agentW", "oLeft", item("rLeftC"));
  await store.updateReply("oLeft", { n: b.value.n, id: "rLeftB" }, "sent");
  assert.deepEqual(await ids(clock.t + 1), ["rLeftA", "rLeftC"]);
  assert.deepEqual(await ids(clock.t - 1000), ["rLeftA"], "by the time each was recorded");
  const [first] = await found(clock.t + 1);
  assert.equal(first?.n, a.value.n);
  assert.equal(first?.item["client_id"], "c-rLeftA");
  const settle = (n: number, id: string) =>
    store.updateReply("oLeft", { n, id }, "failed", "lost", {
      unconfirmed: true,
      onlySending: true,
    });
  assert.equal(await settle(a.value.n, "rLeftA"), true);
  assert.deepEqual(await ids(clock.t + 1), ["rLeftC"]);
  // Settled already (another instance's sweep), or answered: written by the first only.
  assert.equal(await settle(a.value.n, "rLeftA"), false, "settled once");
  assert.equal(await settle(b.value.n, "rLeftB"), false, "its outcome stands");
  const [settled, sent] = (await store.readHistory("oLeft", null, 10)).items.filter((i) =>
    i.id === "rLeftA" || i.id === "rLeftB"
  );
  assert.deepEqual([settled?.status, sent?.status], ["failed", "sent"]);
  // Forgotten: none of its replies is listed, nor twice when its numbers are given out again.
  await store.forgetFollower(
    "oLeft",
    createSystemEnvelope({
      event: "user_authorization_revoke",
      follower_id: "oLeft",
      text: "-",
    }, { id: "revoke-oLeft", companyId: "", sendTime: 0 }),
  );
  assert.deepEqual(await ids(clock.t + 1), []);
  clock.t += 1000;
  await store.acceptInbound([message("oLeft", "again", clock.t)], presence);
  for (const id of ["rLeftD", "rLeftE", "rLeftF"]) {
    await store.recordReply("agentW", "oLeft", item(id));
  }
  assert.deepEqual(await ids(clock.t + 1), ["rLeftD", "rLeftE", "rLeftF"]);
}

async function scenarios(store: Store, clock: { t: number }) {
  await scenario(store, clock);
  await unanswered(store, clock);
  await unconfirmedReplies(store, clock);
  await renaming(store, clock);
  await notices(store, clock);
  await forgetting(store, clock);
  await forgottenWritesAgain(store, clock);
  await closedByWechat(store, clock);
  await givenBack(store, clock);
  await claiming(store, clock);
  await quickReplies(store);
  // Last: its 2,100 followers would be in the others' sweeps and lists.
  await mediaScan(store, clock);
}

const options = (clock: { t: number }) => ({
  companyId: "",
  now: () => clock.t,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 3600_000,
});

Deno.test("the memory store: window notices, renaming, notice texts, forgetting (and writing again), windows WeChat closed, refused replies given back, claiming, notes, labels, quick replies", async () => {
  const clock = { t: Date.UTC(2026, 10, 1) };
  const store = createMemoryStore(options(clock));
  try {
    await scenarios(store, clock);
  } finally {
    await store.close();
  }
});

Deno.test("the SQLite store: window notices, renaming, notice texts, forgetting (and writing again), windows WeChat closed, refused replies given back, claiming, notes, labels, quick replies", async () => {
  const clock = { t: Date.UTC(2026, 10, 1) };
  const store = await openSqliteStore(":memory:", {
    ...options(clock),
    retentionMs: 30 * 24 * HOUR,
  });
  try {
    await scenarios(store, clock);
  } finally {
    await store.close();
  }
});

Deno.test("the Deno KV store: window notices, renaming, notice texts, forgetting (and writing again), windows WeChat closed, refused replies given back, claiming, notes, labels, quick replies", async () => {
  const clock = { t: Date.UTC(2026, 10, 1) };
  const store = await openKvStore(":memory:", { ...options(clock), retentionMs: 30 * 24 * HOUR });
  try {
    await scenarios(store, clock);
  } finally {
    await store.close();
  }
});

Deno.test({
  name:
    "the Redis store: window notices, renaming, notice texts, forgetting (and writing again), windows WeChat closed, refused replies given back, claiming, notes, labels, quick replies",
  ignore: REDIS_URL === null,
  async fn() {
    const clock = { t: Date.UTC(2026, 10, 1) };
    const prefix = uniquePrefix("windows");
    const store = await createRedisStore({
      url: REDIS_URL!,
      prefix,
      heartbeatMs: 60_000,
      ...options(clock),
    });
    try {
      await scenarios(store, clock);
    } finally {
      await store.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
