// The console's conversation cache and its side of the agent protocol, without a browser:
// what an envelope is, the frames sent, the socket URL with since=, reconnect delays, and
// how history, replays and echoes land on one message each.

import assert from "node:assert/strict";
import {
  createConversation,
  findByClientId,
  ordersBefore,
  pageOrders,
  pendingReplies,
  rekeyClientId,
  removeMessage,
  sortedMessages,
  upsertMessage,
} from "../../static/console/conversations.js";
import {
  commandFrame,
  envelopeKind,
  isQuietRefusal,
  reconnectDelay,
  replyFrame,
  socketUrl,
} from "../../static/console/protocol.js";

Deno.test("envelopeKind() tells the bridge's envelopes apart", () => {
  const env = (code: number, data: Record<string, unknown> = {}) => ({
    data,
    result: { code, message: "" },
  });
  assert.equal(envelopeKind(env(101)), "heartbeat");
  assert.equal(envelopeKind(env(-1, { client_id: "c1" })), "error");
  assert.equal(envelopeKind(env(0, { status: "sent" })), "ack");
  assert.equal(envelopeKind(env(102, { msg_type: "note" })), "note");
  assert.equal(envelopeKind(env(102, { msg_type: "system" })), "system");
  assert.equal(envelopeKind(env(1001, { contact_id: "system01" })), "system");
  assert.equal(envelopeKind(env(1001, { direction: "out" })), "echo");
  assert.equal(envelopeKind(env(1001, { contact_id: "oF" })), "incoming");
  assert.equal(envelopeKind({}), "incoming");
  // Another agent's message is never taken for the server's notice, whatever it claims.
  assert.equal(
    envelopeKind(env(102, { msg_type: "system", from: "a2", msg: { event: "assigned" } })),
    "incoming",
  );
  assert.equal(
    envelopeKind(env(102, { msg_type: "system", from: "me", direction: "out" })),
    "echo",
  );
});

Deno.test("frames: replies by type, commands with their client_id", () => {
  assert.deepEqual(
    replyFrame("oF", { msg_type: "text", client_id: "c-1", msg: { content: "hi" } }),
    {
      data: { msg_type: "text", contact_id: "oF", client_id: "c-1", msg: { content: "hi" } },
      result: { code: 1001, message: "common" },
    },
  );
  const image = replyFrame("oF", {
    msg_type: "image",
    client_id: "c-2",
    msg: { media_id: "m1", media_url: "https://x/1.png", extra: 1 },
  });
  assert.deepEqual(image.data.msg, { media_id: "m1", media_url: "https://x/1.png" });
  assert.equal(image.result.code, 1002);
  assert.deepEqual(commandFrame("claim", "cmd-claim-1", { contact_id: "oF" }).data, {
    msg_type: "claim",
    client_id: "cmd-claim-1",
    contact_id: "oF",
  });
  assert.equal(isQuietRefusal("cmd-typing-3"), true);
  assert.equal(isQuietRefusal("cmd-claim-3"), false);
});

Deno.test("socketUrl() asks for what was missed once a seq is known", () => {
  const base = { protocol: "https:", host: "cs.example.com", userid: "客服 1", account: "" };
  assert.equal(
    socketUrl({ ...base, since: null, token: "" }),
    "wss://cs.example.com/im_component/wx_official_account/msg?userid=%E5%AE%A2%E6%9C%8D%201",
  );
  assert.match(socketUrl({ ...base, since: 0, token: "a.b" }), /&since=0&token=a\.b$/);
  assert.match(
    socketUrl({ ...base, account: "gh_b", since: 3, token: "" }),
    /userid=[^&]+&account=gh_b&since=3$/,
  );
  assert.match(
    socketUrl({ ...base, protocol: "http:", since: 7, token: "" }),
    /^ws:\/\/.*&since=7$/,
  );
});

Deno.test("reconnectDelay() comes back fast after a restart and backs off otherwise", () => {
  assert.ok(reconnectDelay(1012, 9, 0.5) < 1000, "a restarting server");
  assert.equal(reconnectDelay(4008, 0, 0.5), 30_000, "too many consoles");
  const delays = [1, 2, 3, 4, 5, 6, 9].map((n) => reconnectDelay(1006, n, 1));
  assert.deepEqual(delays, [...delays].sort((a, b) => a - b), "growing");
  assert.ok(delays.at(-1)! <= 15_000, "capped");
  assert.ok(reconnectDelay(1006, 3, 0) >= reconnectDelay(1006, 3, 1) / 2, "jitter halves at most");
});

Deno.test("the conversation cache merges history, replays and echoes", async (t) => {
  const c = createConversation();
  await t.step("our reply, then its echo with the bridge's id: one message", () => {
    const mine = upsertMessage(c, {
      client_id: "c-1",
      direction: "out",
      status: "sending",
      local: true,
      msg: { content: "hi" },
    }, 100);
    assert.equal(mine.isNew, true);
    assert.equal(mine.msg.send_time, 100);
    const echo = upsertMessage(c, { client_id: "c-1", id: "r1", status: "sending" }, 101);
    assert.equal(echo.isNew, false);
    assert.equal(c.byId.get("r1"), mine.msg);
  });
  await t.step("a status never goes back", () => {
    upsertMessage(c, { id: "r1", status: "sent" }, 102);
    upsertMessage(c, { id: "r1", status: "sending" }, 103);
    assert.equal(c.byId.get("r1").status, "sent");
  });
  await t.step("kept in order, older history put before", () => {
    upsertMessage(c, { id: "m2", send_time: 200 }, 0);
    upsertMessage(c, { id: "m0", send_time: 50 }, 0);
    assert.deepEqual(sortedMessages(c).map((m: { id: string }) => m.id), ["m0", "r1", "m2"]);
    upsertMessage(c, { id: "m3", send_time: 300 }, 0);
    assert.equal(sortedMessages(c).at(-1).id, "m3", "appended without sorting again");
  });
  await t.step("an older page goes before messages of its second that came first", () => {
    const burst = createConversation();
    for (const id of ["b3", "b4"]) upsertMessage(burst, { id, send_time: 500 }, 0);
    const first = ordersBefore(burst, 3);
    ["b0", "b1", "b2"].forEach((id, i) =>
      upsertMessage(burst, { id, send_time: 500 }, 0, first + i)
    );
    assert.deepEqual(
      sortedMessages(burst).map((m: { id: string }) => m.id),
      ["b0", "b1", "b2", "b3", "b4"],
    );
  });
  await t.step("the newest page keeps its order among what came live, in one second", () => {
    const live = createConversation();
    // Live: a notice and the follower's words since; the page: what it said before, then those.
    upsertMessage(live, { id: "n1", direction: "system", send_time: 700 }, 0);
    upsertMessage(live, { id: "t2", send_time: 700 }, 0);
    upsertMessage(live, { id: "t4", send_time: 700 }, 0);
    const page = ["i0", "i1", "t2", "t3", "t4", "t5"].map((id) => ({ id, send_time: 700 }));
    const orders = pageOrders(live, page);
    assert.equal(orders[5], undefined, "after all it holds: as it comes");
    page.forEach((item, i) => upsertMessage(live, item, 0, orders[i]));
    assert.deepEqual(
      sortedMessages(live).map((m: { id: string }) => m.id),
      ["i0", "i1", "n1", "t2", "t3", "t4", "t5"],
    );
    assert.deepEqual(pageOrders(createConversation(), page), page.map(() => undefined));
  });
  await t.step("found by client_id anywhere; the outbox; retry and removal", () => {
    const other = createConversation();
    const pending = upsertMessage(other, {
      client_id: "c-9",
      direction: "out",
      status: "sending",
      local: true,
    }, 1).msg;
    const convs = new Map([["oA", c], ["oB", other]]);
    assert.equal(findByClientId(convs, "c-9", "oA")?.contactId, "oB");
    assert.deepEqual([...pendingReplies(convs)].map(([id]) => id), ["oB"]);
    rekeyClientId(other, pending, "c-10");
    assert.equal(findByClientId(convs, "c-9", undefined), null);
    assert.equal(findByClientId(convs, "c-10", undefined)?.msg, pending);
    removeMessage(other, pending);
    assert.deepEqual([...pendingReplies(convs)], []);
  });
});
