// WeChat's limits on customer-service replies as pure functions over a contact's reply state:
// 5 replies within 48 h of a follower's message, 3 within 1 minute of a menu tap, follow or
// scan; closed once WeChat itself said so (45015, 45047); typing only 30 s after an exchange.
// The bridge refuses what WeChat would refuse before sending it, and says why; a reply WeChat
// refused delivered nothing, so it is given back to the window it was counted in.

/** What the bridge remembers about a contact's reply allowance (ms timestamps). */
export interface ReplyWindowState {
  lastInboundAt: number;
  lastInboundKind: "message" | "event";
  repliesSinceInbound: number;
  /** WeChat's errcode (45015, 45047) that closed the window before the bridge's own count did. */
  closedBy?: number;
  /** The history number of the follower's message or event that opened this window (0: not
   * known, a contact from before it was kept); every reply counted in it comes after. */
  openedBy: number;
  /** The history number of the last reply given back in this window: a refusal is given back
   * once, however often it is reported (a Redis command resent after a reconnection). */
  returnedUpTo?: number;
}

export type InboundKind = ReplyWindowState["lastInboundKind"];

export type ReplyCheck =
  | { ok: true }
  | {
    ok: false;
    limit: "window" | "quota" | "typing";
    reopensAt: number | null;
    message: string;
  };

// From WeChat's customer-service message rules (客服消息下发规则, in force since June 2023).
export const MESSAGE_WINDOW_MS = 48 * 3600_000;
export const MESSAGE_QUOTA = 5;
export const EVENT_WINDOW_MS = 60_000;
export const EVENT_QUOTA = 3;
/** How long before a follower's 48-hour window closes its agent is warned. */
export const WINDOW_WARNING_MS = 3600_000;

/** How soon after an exchange WeChat still shows "typing…" (客服输入状态: 30 秒内有过消息交互). */
export const TYPING_AFTER_EXCHANGE_MS = 30_000;

// The events after which WeChat grants the 1-minute allowance: follow, scan, and of the menu
// taps only the three WeChat names (点击推事件, 扫码推事件, 扫码推事件且弹出"消息接收中"): a VIEW
// (a menu link that opens a page) grants nothing.
const GRANTING_EVENTS = new Set([
  "subscribe",
  "scan",
  "click",
  "scancode_push",
  "scancode_waitmsg",
]);

// WeChat's answers that mean it takes no more replies until the follower acts again:
// 45015 回复时间超过限制 (the window is closed), 45047 客服接口下行条数超过上限 (the quota is used).
const CLOSING_ERRCODES = new Set([45015, 45047]);

/** Whether WeChat's errcode means the window is closed until the follower acts again. */
export function closesWindow(errcode: number): boolean {
  return CLOSING_ERRCODES.has(errcode);
}

/**
 * Whether a reply WeChat answered with `errcode` used none of its quota: WeChat refused it
 * (40003 invalid openid, 40001 bad token, 45002 too long, 40007 bad media id…) and delivered
 * nothing. Not -1 (the bridge's "no answer", a timeout, a reset, a 5xx, or WeChat's "busy"):
 * it may have been delivered. Not 45015/45047: they close the window, the count no longer
 * matters until the follower acts.
 */
export function returnsReply(errcode: number): boolean {
  return errcode > 0 && !closesWindow(errcode);
}

/** Which allowance an inbound XML message grants, or null when it grants none (unsubscribe…). */
export function inboundKindOf(msgType: string, event?: string): InboundKind | null {
  if (msgType.toLowerCase() !== "event") return "message";
  return GRANTING_EVENTS.has((event ?? "").toLowerCase()) ? "event" : null;
}

/** A contact's reply state as the bridge stores it; null before its first message. */
export function windowStateOf(contact: {
  last_inbound_at: number;
  last_inbound_kind: InboundKind;
  replies_since_inbound: number;
  window_closed_by?: number | null;
  window_opened_n?: number | null;
  window_returned_n?: number | null;
}): ReplyWindowState | null {
  if (contact.last_inbound_at === 0) return null;
  return {
    lastInboundAt: contact.last_inbound_at,
    lastInboundKind: contact.last_inbound_kind,
    repliesSinceInbound: contact.replies_since_inbound,
    openedBy: contact.window_opened_n ?? 0,
    ...(contact.window_closed_by ? { closedBy: contact.window_closed_by } : {}),
    ...(contact.window_returned_n ? { returnedUpTo: contact.window_returned_n } : {}),
  };
}

/** How many replies the current allowance takes in all: 5 after a message, 3 after a menu tap,
 * follow or scan; 0 when there is none. */
export function replyQuotaOf(state: ReplyWindowState | null): number {
  if (!state) return 0;
  return state.lastInboundKind === "message" ? MESSAGE_QUOTA : EVENT_QUOTA;
}

/** When the current allowance ends (ms), or null when there is none. */
export function windowClosesAt(state: ReplyWindowState | null): number | null {
  if (!state) return null;
  return state.lastInboundAt + spanOf(state.lastInboundKind);
}

/** Whether WeChat would accept one more reply to this contact at `now`. */
export function checkReplyAllowed(state: ReplyWindowState | null, now: number): ReplyCheck {
  // Every limit reopens only when the follower acts again, so there is no time to wait for.
  const reopen = "it reopens when the follower next writes to the account";
  if (!state) {
    return refuse(
      "window",
      `No message from this follower is on record, so WeChat accepts no reply; ${reopen}.`,
    );
  }
  if (state.closedBy !== undefined) {
    return refuse(
      state.closedBy === 45047 ? "quota" : "window",
      `WeChat answered ${state.closedBy} (${
        state.closedBy === 45047 ? "reply quota used" : "reply window closed"
      }) to an earlier reply, so the bridge sends no more; ${reopen}.`,
    );
  }
  const closesAt = state.lastInboundAt + spanOf(state.lastInboundKind);
  if (state.lastInboundKind === "message") {
    if (now >= closesAt) {
      return refuse(
        "window",
        `The 48-hour reply window closed at ${
          iso(closesAt)
        }, 48 hours after the follower's last message; ${reopen}.`,
      );
    }
    if (state.repliesSinceInbound >= MESSAGE_QUOTA) {
      return refuse(
        "quota",
        `WeChat allows ${MESSAGE_QUOTA} replies per follower message and they are used; ${reopen}.`,
      );
    }
    return { ok: true };
  }
  if (now >= closesAt) {
    return refuse(
      "window",
      `The 1-minute reply window after the follower's menu tap, follow or scan closed at ${
        iso(closesAt)
      }; ${reopen}.`,
    );
  }
  if (state.repliesSinceInbound >= EVENT_QUOTA) {
    return refuse(
      "quota",
      `WeChat allows ${EVENT_QUOTA} replies within a minute of a menu tap, follow or scan and they are used; ${reopen}.`,
    );
  }
  return { ok: true };
}

/** The state after the follower wrote (`message`) or tapped, followed or scanned (`event`) at
 * `at`, the act history number `n` records: `state` itself when it opens no new window. */
export function noteInbound(
  state: ReplyWindowState | null,
  inbound: { kind: InboundKind; at: number; n: number },
): ReplyWindowState {
  const { kind, at, n } = inbound;
  // A late-delivered older message must not restart the count.
  if (state && at < state.lastInboundAt) return state;
  // An event grants no message allowance, and WeChat does not say it cancels one: an open
  // message window with replies left is kept rather than cut to one minute.
  if (
    kind === "event" && state?.lastInboundKind === "message" && state.closedBy === undefined &&
    at < state.lastInboundAt + MESSAGE_WINDOW_MS && state.repliesSinceInbound < MESSAGE_QUOTA
  ) {
    return state;
  }
  return { lastInboundAt: at, lastInboundKind: kind, repliesSinceInbound: 0, openedBy: n };
}

/** Whether WeChat would show "typing…" at `now`: inside the window (quota aside) and within
 * 30 s of the last message either way (`lastExchangeAt`, ms). */
export function checkTypingAllowed(
  state: ReplyWindowState | null,
  lastExchangeAt: number,
  now: number,
): ReplyCheck {
  const window = checkReplyAllowed(state && { ...state, repliesSinceInbound: 0 }, now);
  if (!window.ok) return window;
  if (now - lastExchangeAt > TYPING_AFTER_EXCHANGE_MS) {
    return refuse(
      "typing",
      `WeChat shows typing only within ${
        TYPING_AFTER_EXCHANGE_MS / 1000
      } s of a message between the follower and the account; the last was ${
        Math.round((now - lastExchangeAt) / 1000)
      } s ago.`,
    );
  }
  return { ok: true };
}

/**
 * The state after WeChat answered `errcode` (see closesWindow) to a reply counted in the window
 * the follower's act at `countedIn` (ms, its lastInboundAt) opened. WeChat answers seconds
 * later: a window opened since (the follower wrote again, or was forgotten and wrote again, a
 * new contact) is not the one WeChat said is closed, and stays open.
 */
export function noteWindowClosed(
  state: ReplyWindowState,
  errcode: number,
  countedIn: number,
): ReplyWindowState {
  if (countedIn !== state.lastInboundAt) return state;
  return { ...state, closedBy: errcode };
}

/**
 * The state after WeChat refused reply `n` (its history number) in a way that returnsReply(),
 * counted in the window the follower's act at `countedIn` (ms, its lastInboundAt) opened. A
 * reply counted in this window is given back. Not one counted before a follower's message
 * opened it (the count started again), nor one to a follower since forgotten who wrote again
 * (a new contact, whose history numbers start over), nor below 0, nor one at or before the last
 * given back: each give-back once. One instance sends a follower's replies in order, so only a
 * refusal told out of order between instances is kept counted: one reply less than WeChat
 * allows, never one more.
 */
export function noteReplyRefused(
  state: ReplyWindowState,
  n: number,
  countedIn: number,
): ReplyWindowState {
  if (countedIn !== state.lastInboundAt) return state;
  if (n <= Math.max(state.openedBy, state.returnedUpTo ?? 0)) return state;
  if (state.repliesSinceInbound === 0) return state;
  return { ...state, repliesSinceInbound: state.repliesSinceInbound - 1, returnedUpTo: n };
}

/** The state after one more reply was accepted for sending. */
export function noteReplySent(state: ReplyWindowState): ReplyWindowState {
  return { ...state, repliesSinceInbound: state.repliesSinceInbound + 1 };
}

function spanOf(kind: InboundKind): number {
  return kind === "message" ? MESSAGE_WINDOW_MS : EVENT_WINDOW_MS;
}

function refuse(limit: "window" | "quota" | "typing", message: string): ReplyCheck {
  return { ok: false, limit, reopensAt: null, message };
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}
