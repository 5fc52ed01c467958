// What WeChat will take for a contact now: the 48-hour window after the follower's last
// message and the 5 replies allowed in it (SPEC, "Flow"; 3 in the minute after a follow or menu
// tap, as GET contacts' `reply_quota` says), read from what GET contacts and the socket tell the
// console. Plain module, no DOM.

export const WINDOW_S = 48 * 3600;
export const REPLY_QUOTA = 5;
/** Under this, the window counts as closing (the console warns and alerts). */
export const CLOSING_S = 2 * 3600;

/**
 * The reply state of a contact at `nowS`: {state, left, closesAt, quota, repliesLeft, canReply,
 * reason, reopensAt}. `state` is open, soon, closed, unknown or unsubscribed (whatever the clock
 * says: nothing reaches a follower who left); `reason` (when it cannot reply) is a key of the
 * string table: window, quota, unsubscribed, closed.
 */
export function replyState(contact, nowS) {
  let closesAt = Number(contact?.window_expires_at) || 0;
  if (!closesAt && contact?.last_inbound_time) {
    closesAt = Number(contact.last_inbound_time) + WINDOW_S;
  }
  const used = Math.max(0, Number(contact?.replies_since_inbound) || 0);
  const quota = Number(contact?.reply_quota) || REPLY_QUOTA;
  const repliesLeft = Math.max(0, quota - used);
  if (!closesAt || contact?.subscribed === false) {
    return {
      state: contact?.subscribed === false ? "unsubscribed" : "unknown",
      left: 0,
      closesAt,
      quota,
      repliesLeft,
      canReply: false,
      reason: contact?.subscribed === false ? "unsubscribed" : "window",
      reopensAt: null,
    };
  }
  const left = closesAt - nowS;
  // WeChat's own word (45015/45047 on a reply) closes the window before the clock does.
  const state = left <= 0 || contact?.window_closed ? "closed" : left < CLOSING_S ? "soon" : "open";
  let reason = null;
  if (state === "closed") reason = "window";
  else if (repliesLeft === 0) reason = "quota";
  return {
    state,
    left: Math.max(0, left),
    closesAt,
    quota,
    repliesLeft,
    canReply: reason === null,
    reason,
    // Both limits lift when the follower writes again; nothing the agent can wait for.
    reopensAt: null,
  };
}

/** The string-table keys that name the quota `limits` (replyState) counts: WeChat's 5 a
 * follower message, or its 3 in the minute after a follow, scan or menu tap. */
export function quotaKeys(limits) {
  return limits.quota < REPLY_QUOTA
    ? { title: "quota.titleEvent", used: "notice.quotaEvent" }
    : { title: "quota.title", used: "notice.quota" };
}

/** The contact after one more reply went out (the bridge counts the same way). */
export function afterReply(contact) {
  return { ...contact, replies_since_inbound: (Number(contact?.replies_since_inbound) || 0) + 1 };
}

/** The contact after WeChat refused a reply and the bridge gave it back (nothing was
 * delivered): `used` is the bridge's count after, which the refusal's -1 carries. */
export function afterGivenBack(contact, used) {
  return { ...contact, replies_since_inbound: Math.max(0, Number(used) || 0) };
}

/** The contact after the follower wrote at `atS`: a new window, its quota whole again. */
export function afterInbound(contact, atS) {
  const last = Math.max(Number(contact?.last_inbound_time) || 0, atS);
  return {
    ...contact,
    last_inbound_time: last,
    window_expires_at: last + WINDOW_S,
    replies_since_inbound: 0,
    reply_quota: REPLY_QUOTA,
    window_closed: false,
  };
}

/** WeChat's errcodes that mean the window is closed whatever the clock says. */
export const WINDOW_CLOSED_ERRCODES = [45015, 45047];
