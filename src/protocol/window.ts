// WeChat's limits on customer-service replies as pure functions over a contact's reply state:
// 5 replies within 48 h of a follower's message, 3 within 1 minute of a menu tap, follow or
// scan. The bridge refuses what WeChat would refuse before sending it, and says why.

/** What the bridge remembers about a contact's reply allowance (ms timestamps). */
export interface ReplyWindowState {
  lastInboundAt: number;
  lastInboundKind: "message" | "event";
  repliesSinceInbound: number;
}

export type InboundKind = ReplyWindowState["lastInboundKind"];

export type ReplyCheck =
  | { ok: true }
  | { ok: false; limit: "window" | "quota"; reopensAt: number | null; message: string };

// From WeChat's customer-service message rules (客服消息下发规则, in force since June 2023).
export const MESSAGE_WINDOW_MS = 48 * 3600_000;
export const MESSAGE_QUOTA = 5;
export const EVENT_WINDOW_MS = 60_000;
export const EVENT_QUOTA = 3;
/** How long before a follower's 48-hour window closes its agent is warned. */
export const WINDOW_WARNING_MS = 3600_000;

// The events after which WeChat grants the 1-minute allowance: follow, scan, menu taps. WeChat's
// page names the click and scan-code menus; VIEW (a menu link) is counted as a menu tap too.
const GRANTING_EVENTS = new Set([
  "subscribe",
  "scan",
  "click",
  "view",
  "scancode_push",
  "scancode_waitmsg",
]);

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
}): ReplyWindowState | null {
  if (contact.last_inbound_at === 0) return null;
  return {
    lastInboundAt: contact.last_inbound_at,
    lastInboundKind: contact.last_inbound_kind,
    repliesSinceInbound: contact.replies_since_inbound,
  };
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

/** The state after the follower wrote (`message`) or tapped, followed or scanned (`event`) at `at`. */
export function noteInbound(
  state: ReplyWindowState | null,
  kind: InboundKind,
  at: number,
): ReplyWindowState {
  // A late-delivered older message must not restart the count.
  if (state && at < state.lastInboundAt) return state;
  // An event grants no message allowance, and WeChat does not say it cancels one: an open
  // message window with replies left is kept rather than cut to one minute.
  if (
    kind === "event" && state?.lastInboundKind === "message" &&
    at < state.lastInboundAt + MESSAGE_WINDOW_MS && state.repliesSinceInbound < MESSAGE_QUOTA
  ) {
    return state;
  }
  return { lastInboundAt: at, lastInboundKind: kind, repliesSinceInbound: 0 };
}

/** The state after one more reply was accepted for sending. */
export function noteReplySent(state: ReplyWindowState): ReplyWindowState {
  return { ...state, repliesSinceInbound: state.repliesSinceInbound + 1 };
}

function spanOf(kind: InboundKind): number {
  return kind === "message" ? MESSAGE_WINDOW_MS : EVENT_WINDOW_MS;
}

function refuse(limit: "window" | "quota", message: string): ReplyCheck {
  return { ok: false, limit, reopensAt: null, message };
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}
