// Which 102s about a follower count as unread on its contact: the ones the bridge counts in its
// `unread` (src/core/model.ts inbound()), so the live count and GET contacts agree. The bridge
// counts every follower callback it routes as a message (a menu tap, a scan, a subscribe, a
// profile change, a type it does not know); not its own notices (assignments, windows, the
// queue), not the reports (LOCATION, kf_*, the account's), not a forget. Plain module, no DOM.

import { isReport } from "./reports.js";

/** The events of the bridge's own notices: news about a follower, not something it did. */
export const BRIDGE_NOTICES = [
  "assigned",
  "transferred_in",
  "transferred_out",
  "closed",
  "claimed",
  "waiting",
  "waiting_taken",
  "window_closing",
  "window_expired",
  "reply_sent",
];

/** The events after which the follower is forgotten: nothing of it is left to count. */
export const FORGET_EVENTS = ["user_authorization_revoke", "user_authorization_cancellation"];

/** Whether a 102's `msg` is a follower's own act, counted unread on its contact as the bridge
 * counts it. */
export function countsUnread(msg) {
  if (!msg || typeof msg !== "object" || !msg.follower_id) return false;
  if (typeof msg.event !== "string" || msg.event === "") return false;
  if (BRIDGE_NOTICES.includes(msg.event) || FORGET_EVENTS.includes(msg.event)) return false;
  return !isReport(msg);
}
