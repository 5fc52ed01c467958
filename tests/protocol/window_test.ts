import assert from "node:assert/strict";
import {
  checkReplyAllowed,
  checkTypingAllowed,
  closesWindow,
  EVENT_QUOTA,
  inboundKindOf,
  MESSAGE_QUOTA,
  noteInbound,
  noteReplyRefused,
  noteReplySent,
  noteWindowClosed,
  type ReplyWindowState,
  returnsReply,
  TYPING_AFTER_EXCHANGE_MS,
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
  const state = noteInbound(null, { kind: "message", at: T0, n: 1 });

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
    const again = noteInbound(used, { kind: "message", at: T0 + 47 * HOUR, n: 7 });
    assert.deepEqual(again, {
      lastInboundAt: T0 + 47 * HOUR,
      lastInboundKind: "message",
      repliesSinceInbound: 0,
      openedBy: 7,
    });
    assert.deepEqual(checkReplyAllowed(again, T0 + 90 * HOUR), { ok: true });
  });

  await t.step("no inbound on record refuses as window", () => {
    const check = checkReplyAllowed(null, T0);
    assert.equal(check.ok === false && check.limit, "window");
  });
});

Deno.test("checkReplyAllowed() applies 3 replies within a minute after an event", async (t) => {
  const state = noteInbound(null, { kind: "event", at: T0, n: 1 });

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
    const message = sendReplies(noteInbound(null, { kind: "message", at: T0, n: 1 }), 2);
    assert.equal(noteInbound(message, { kind: "event", at: T0 + HOUR, n: 1 }), message);
    assert.equal(windowClosesAt(message), T0 + 48 * HOUR);
  });

  await t.step("an event after the message replies are used grants its own 3", () => {
    const used = sendReplies(noteInbound(null, { kind: "message", at: T0, n: 1 }), MESSAGE_QUOTA);
    const event = noteInbound(used, { kind: "event", at: T0 + HOUR, n: 1 });
    assert.equal(event.lastInboundKind, "event");
    assert.deepEqual(checkReplyAllowed(event, T0 + HOUR + 1000), { ok: true });
  });

  await t.step("an older inbound delivered late changes nothing", () => {
    const recent = noteInbound(null, { kind: "message", at: T0 + HOUR, n: 1 });
    assert.equal(noteInbound(recent, { kind: "message", at: T0, n: 1 }), recent);
  });

  await t.step("states are new objects; the old one is unchanged", () => {
    const before = noteInbound(null, { kind: "message", at: T0, n: 1 });
    const after = noteReplySent(before);
    assert.equal(before.repliesSinceInbound, 0);
    assert.equal(after.repliesSinceInbound, 1);
  });
});

Deno.test("inboundKindOf() tells which inbound grants replies", () => {
  assert.equal(inboundKindOf("text"), "message");
  assert.equal(inboundKindOf("voice"), "message");
  assert.equal(inboundKindOf("enim"), "message");
  for (const event of ["subscribe", "SCAN", "CLICK", "scancode_push", "scancode_waitmsg"]) {
    assert.equal(inboundKindOf("event", event), "event", event);
  }
  // 2023 rules: of the menu taps only click and the two scan-code menus open the allowance.
  for (
    const event of [
      "VIEW",
      "view_miniprogram",
      "pic_sysphoto",
      "location_select",
      "unsubscribe",
      "LOCATION",
      "TEMPLATESENDJOBFINISH",
    ]
  ) {
    assert.equal(inboundKindOf("event", event), null, event);
  }
});

Deno.test("after WeChat's 45015 or 45047 the window is closed until the follower acts", async (t) => {
  await t.step("closesWindow() knows the two errcodes", () => {
    assert.equal(closesWindow(45015), true);
    assert.equal(closesWindow(45047), true);
    assert.equal(closesWindow(40003), false);
    assert.equal(closesWindow(-1), false);
  });
  for (const [errcode, limit] of [[45015, "window"], [45047, "quota"]] as const) {
    await t.step(`${errcode}: refused as ${limit}, though the bridge's count had room`, () => {
      const open = noteInbound(null, { kind: "message", at: T0, n: 1 });
      assert.deepEqual(checkReplyAllowed(open, T0 + 1000), { ok: true });
      const closed = noteWindowClosed(open, errcode, T0);
      const check = checkReplyAllowed(closed, T0 + 1000);
      assert.equal(check.ok, false);
      assert.equal(!check.ok && check.limit, limit);
      assert.match(!check.ok ? check.message : "", new RegExp(String(errcode)));
    });
  }
  await t.step("the follower's next message opens it again", () => {
    const opened = noteInbound(null, { kind: "message", at: T0, n: 1 });
    const closed = noteWindowClosed(opened, 45015, T0);
    const reopened = noteInbound(closed, { kind: "message", at: T0 + 5000, n: 1 });
    assert.equal(reopened.closedBy, undefined);
    assert.deepEqual(checkReplyAllowed(reopened, T0 + 6000), { ok: true });
  });
  await t.step("a menu tap opens its own minute instead of keeping the closed window", () => {
    const opened = noteInbound(null, { kind: "message", at: T0, n: 1 });
    const closed = noteWindowClosed(opened, 45047, T0);
    const tapped = noteInbound(closed, { kind: "event", at: T0 + 5000, n: 1 });
    assert.equal(tapped.lastInboundKind, "event");
    assert.deepEqual(checkReplyAllowed(tapped, T0 + 6000), { ok: true });
  });
  await t.step("a 45015 to a reply counted in an earlier window leaves the open one open", () => {
    // WeChat answers seconds later: the follower wrote meanwhile (or was forgotten and wrote
    // again), and the window that reply counted in is not this one.
    const earlier = noteInbound(null, { kind: "message", at: T0, n: 1 });
    const open = noteInbound(earlier, { kind: "message", at: T0 + 5000, n: 3 });
    assert.equal(noteWindowClosed(open, 45015, T0), open);
    assert.deepEqual(checkReplyAllowed(open, T0 + 6000), { ok: true });
  });
});

Deno.test("checkTypingAllowed() relays typing only within 30 s of an exchange", async (t) => {
  const open = noteInbound(null, { kind: "message", at: T0, n: 1 });
  await t.step("inside the window and 30 s of the last message", () => {
    assert.deepEqual(checkTypingAllowed(open, T0, T0 + TYPING_AFTER_EXCHANGE_MS), { ok: true });
  });
  await t.step("later than 30 s: refused as typing", () => {
    const check = checkTypingAllowed(open, T0, T0 + TYPING_AFTER_EXCHANGE_MS + 1);
    assert.equal(!check.ok && check.limit, "typing");
  });
  await t.step("quota used up does not stop typing, a closed window does", () => {
    let used = open;
    for (let i = 0; i < 5; i++) used = noteReplySent(used);
    assert.deepEqual(checkTypingAllowed(used, T0 + 1000, T0 + 2000), { ok: true });
    const check = checkTypingAllowed(noteWindowClosed(open, 45015, T0), T0, T0 + 1000);
    assert.equal(!check.ok && check.limit, "window");
  });
});

Deno.test("a reply WeChat refused is given back to the window it was counted in", async (t) => {
  // History: 1 the follower's message, 2..6 five replies.
  const used = sendReplies(noteInbound(null, { kind: "message", at: T0, n: 1 }), MESSAGE_QUOTA);

  await t.step("returnsReply(): WeChat's errcodes, not an unknown outcome or a closing one", () => {
    for (const errcode of [40001, 40003, 40007, 42001, 45002]) {
      assert.equal(returnsReply(errcode), true, String(errcode));
    }
    for (const errcode of [-1, 0, 45015, 45047]) {
      assert.equal(returnsReply(errcode), false, String(errcode));
    }
  });
  await t.step("one refused of the five: one more may be sent", () => {
    assert.equal(checkReplyAllowed(used, T0 + HOUR).ok, false);
    const back = noteReplyRefused(used, 6, T0);
    assert.equal(back.repliesSinceInbound, MESSAGE_QUOTA - 1);
    assert.deepEqual(checkReplyAllowed(back, T0 + HOUR), { ok: true });
  });
  await t.step("a reply counted before the follower wrote again gives nothing back", () => {
    const again = sendReplies(noteInbound(used, { kind: "message", at: T0 + HOUR, n: 7 }), 2);
    assert.equal(noteReplyRefused(again, 6, T0), again, "reply 6 was counted in the last window");
    assert.equal(noteReplyRefused(again, 8, T0 + HOUR).repliesSinceInbound, 1);
  });
  await t.step("an event that keeps the message window keeps what was counted in it", () => {
    const kept = noteInbound(noteReplyRefused(used, 5, T0), { kind: "event", at: T0 + HOUR, n: 7 });
    assert.equal(kept.openedBy, 1);
    assert.equal(noteReplyRefused(kept, 6, T0).repliesSinceInbound, MESSAGE_QUOTA - 2);
  });
  await t.step("a refusal told twice is given back once", () => {
    const back = noteReplyRefused(used, 6, T0);
    assert.equal(noteReplyRefused(back, 6, T0), back, "reply 6 was given back already");
    assert.equal(noteReplyRefused(noteReplyRefused(back, 6, T0), 6, T0).repliesSinceInbound, 4);
    // The next window starts its own: a reply of it numbered like one given back is not kept.
    const next = noteInbound(back, { kind: "message", at: T0 + HOUR, n: 7 });
    assert.equal(next.returnedUpTo, undefined);
    assert.equal(noteReplyRefused(sendReplies(next, 1), 8, T0 + HOUR).repliesSinceInbound, 0);
  });
  await t.step("a reply to a follower forgotten who wrote again gives the new one nothing", () => {
    // The new contact's history numbers start over: its reply 3 is not the one refused.
    const fresh = sendReplies(noteInbound(null, { kind: "message", at: T0 + HOUR, n: 1 }), 3);
    assert.equal(noteReplyRefused(fresh, 3, T0), fresh);
    assert.equal(noteReplyRefused(fresh, 3, T0 + HOUR).repliesSinceInbound, 2);
  });
  await t.step("never below 0", () => {
    const none = noteInbound(null, { kind: "message", at: T0, n: 1 });
    assert.equal(noteReplyRefused(none, 2, T0), none);
  });
});
