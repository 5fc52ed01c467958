// Behaviour every store must share, run on each: memory, SQLite, Deno KV and Redis.

import assert from "node:assert/strict";
import { createSystemEnvelope, type Envelope } from "../../src/protocol/envelope.ts";
import { noticeText } from "../../src/protocol/notices.ts";
import { checkReplyAllowed, windowStateOf } from "../../src/protocol/window.ts";
import { openKvStore } from "../../src/store/kv_store.ts";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import { createRedisStore } from "../../src/store/redis_store.ts";
import type { InboundItem, LogEntry, Presence, Store } from "../../src/core/store.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "./_redis_test_env.ts";

const HOUR = 3600_000;
const REDIS_URL = await findTestRedis();

function message(
  followerId: string,
  id: string,
  at: number,
  kind: InboundItem["kind"] = "message",
): InboundItem {
  const envelope: Envelope = {
    data: {
      id,
      name: followerId,
      avatar: "",
      msg_type: "text",
      contact_id: followerId,
      company_id: "",
      send_time: Math.floor(at / 1000),
      msg: { content: id },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId,
    name: null,
    to: "agentW",
    envelope,
    kind,
    receivedAt: at,
    dedupKey: `m|${id}`,
  };
}

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
  await store.closeWindow("oC", 45015);
  const closed = (await store.getContact("oC"))!;
  assert.equal(closed.window_closed_by, 45015);
  assert.equal(checkReplyAllowed(windowStateOf(closed), clock.t + 1000).ok, false);
  // A menu tap opens its minute (it would have kept an open message window).
  await store.acceptInbound([message("oC", "c2", clock.t + 2000, "event")], presence);
  const tapped = (await store.getContact("oC"))!;
  assert.ok(!tapped.window_closed_by);
  assert.equal(tapped.last_inbound_kind, "event");
  assert.deepEqual(checkReplyAllowed(windowStateOf(tapped), clock.t + 3000), { ok: true });
  await store.closeWindow("oC", 45047);
  await store.acceptInbound([message("oC", "c3", clock.t + 4000)], presence);
  const wrote = (await store.getContact("oC"))!;
  assert.ok(!wrote.window_closed_by);
  assert.deepEqual(checkReplyAllowed(windowStateOf(wrote), clock.t + 5000), { ok: true });
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

async function scenarios(store: Store, clock: { t: number }) {
  await scenario(store, clock);
  await renaming(store, clock);
  await notices(store, clock);
  await forgetting(store, clock);
  await closedByWechat(store, clock);
}

const options = (clock: { t: number }) => ({
  companyId: "",
  now: () => clock.t,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 3600_000,
});

Deno.test("the memory store: window notices, renaming, notice texts, forgetting, windows WeChat closed", async () => {
  const clock = { t: Date.UTC(2026, 10, 1) };
  const store = createMemoryStore(options(clock));
  try {
    await scenarios(store, clock);
  } finally {
    await store.close();
  }
});

Deno.test("the SQLite store: window notices, renaming, notice texts, forgetting, windows WeChat closed", async () => {
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

Deno.test("the Deno KV store: window notices, renaming, notice texts, forgetting, windows WeChat closed", async () => {
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
    "the Redis store: window notices, renaming, notice texts, forgetting, windows WeChat closed",
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
