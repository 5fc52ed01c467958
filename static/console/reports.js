// Which of the system list's 102s are reports, nothing for an agent to read: a follower's client
// saying where it is (LOCATION), WeChat's own kf_* session moves, and the account's reports on
// its own sends and reviews (MASSSENDJOBFINISH, card reviews, …), which the bridge sends with
// WeChat's `from_user_name` and no follower. Listed, marked as reports, counted nowhere; every
// other notice counts: a follower's own act (a menu tap) on its follower, as the bridge counts it
// (unread.js), the rest on the system entry until it is opened. Plain module, no DOM.

/** Events that are the account's reports about a follower: in its thread, counted nowhere. */
export const FOLLOWER_REPORTS = [
  "LOCATION",
  "kf_create_session",
  "kf_close_session",
  "kf_switch_session",
];

/** Whether a system 102's `msg` is a report: listed with a marker, never counted unread. */
export function isReport(msg) {
  if (!msg || typeof msg !== "object") return false;
  if (FOLLOWER_REPORTS.includes(msg.event)) return true;
  return !msg.follower_id && typeof msg.from_user_name === "string" && msg.from_user_name !== "";
}
