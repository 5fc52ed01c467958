import assert from "node:assert/strict";
import {
  checkReplyAllowed,
  EVENT_QUOTA,
  inboundKindOf,
  MESSAGE_QUOTA,
  noteInbound,
  noteReplySent,
  type ReplyWindowState,
  windowClosesAt,
} from "../../src/protocol/window.ts";

const HOUR = 3600_000;
const T0 = Date.UTC(2024, 4, 1, 8, 0, 0);

function sendReplies(state: ReplyWindowState, count: number): ReplyWindowState {
  let next = state;
  for (let i = 0; i < count; i++) next = noteReplySent(next);
  return next;
}

Deno.test("checkReplyAllowed() applies the 48-hour window and 5 replies", async (t) => {
  const state = noteInbound(null, "message", T0);

  await t.step("open right after the message and up to 48 hours later", () => {
    assert.deepEqual(checkReplyAllowed(state, T0), { ok: true });
    assert.deepEqual(checkReplyAllowed(state, T0 + 48 * HOUR - 1), { ok: true });
  });

  await t.step("closed at 48 hours, naming the window and how it reopens", () => {
    const check = checkReplyAllowed(state, T0 + 48 * HOUR);
    assert.equal(check.ok, false);
    if (check.ok) return;
    assert.equal(check.limit, "window");
    assert.equal(check.reopensAt, null);
    assert.match(check.message, /48-hour/);
    assert.match(check.message, /2024-05-03T08:00:00Z/);
    assert.match(check.message, /reopens when the follower next writes/);
  });

  await t.step("the sixth reply is refused as quota", () => {
    assert.deepEqual(checkReplyAllowed(sendReplies(state, MESSAGE_QUOTA - 1), T0 + HOUR), {
      ok: true,
    });
    const check = checkReplyAllowed(sendReplies(state, MESSAGE_QUOTA), T0 + HOUR);
    assert.equal(check.ok === false && check.limit, "quota");
    assert.match(check.ok ? "" : check.message, /5 replies per follower message/);
  });

  await t.step("a new message restarts the window and the count", () => {
    const used = sendReplies(state, MESSAGE_QUOTA);
    const again = noteInbound(used, "message", T0 + 47 * HOUR);
    assert.deepEqual(again, {
      lastInboundAt: T0 + 47 * HOUR,
      lastInboundKind: "message",
      repliesSinceInbound: 0,
    });
    assert.deepEqual(checkReplyAllowed(again, T0 + 90 * HOUR), { ok: true });
  });

  await t.step("no inbound on record refuses as window", () => {
    const check = checkReplyAllowed(null, T0);
    assert.equal(check.ok === false && check.limit, "window");
  });
});

Deno.test("checkReplyAllowed() applies 3 replies within a minute after an event", async (t) => {
  const state = noteInbound(null, "event", T0);

  await t.step("3 replies within the minute, the fourth refused as quota", () => {
    assert.deepEqual(checkReplyAllowed(sendReplies(state, EVENT_QUOTA - 1), T0 + 59_000), {
      ok: true,
    });
    const check = checkReplyAllowed(sendReplies(state, EVENT_QUOTA), T0 + 1000);
    assert.equal(check.ok === false && check.limit, "quota");
    assert.match(check.ok ? "" : check.message, /3 replies within a minute/);
  });

  await t.step("nothing after the minute, even with replies left", () => {
    const check = checkReplyAllowed(state, T0 + 60_000);
    assert.equal(check.ok === false && check.limit, "window");
    assert.match(check.ok ? "" : check.message, /1-minute/);
    assert.equal(windowClosesAt(state), T0 + 60_000);
  });

  await t.step("an event keeps an open message window that has replies left", () => {
    const message = sendReplies(noteInbound(null, "message", T0), 2);
    assert.equal(noteInbound(message, "event", T0 + HOUR), message);
    assert.equal(windowClosesAt(message), T0 + 48 * HOUR);
  });

  await t.step("an event after the message replies are used grants its own 3", () => {
    const used = sendReplies(noteInbound(null, "message", T0), MESSAGE_QUOTA);
    const event = noteInbound(used, "event", T0 + HOUR);
    assert.equal(event.lastInboundKind, "event");
    assert.deepEqual(checkReplyAllowed(event, T0 + HOUR + 1000), { ok: true });
  });

  await t.step("an older inbound delivered late changes nothing", () => {
    const recent = noteInbound(null, "message", T0 + HOUR);
    assert.equal(noteInbound(recent, "message", T0), recent);
  });

  await t.step("states are new objects; the old one is unchanged", () => {
    const before = noteInbound(null, "message", T0);
    const after = noteReplySent(before);
    assert.equal(before.repliesSinceInbound, 0);
    assert.equal(after.repliesSinceInbound, 1);
  });
});

Deno.test("inboundKindOf() tells which inbound grants replies", () => {
  assert.equal(inboundKindOf("text"), "message");
  assert.equal(inboundKindOf("voice"), "message");
  assert.equal(inboundKindOf("enim"), "message");
  for (const event of ["subscribe", "SCAN", "CLICK", "VIEW", "scancode_push"]) {
    assert.equal(inboundKindOf("event", event), "event", event);
  }
  for (const event of ["unsubscribe", "LOCATION", "TEMPLATESENDJOBFINISH"]) {
    assert.equal(inboundKindOf("event", event), null, event);
  }
});
