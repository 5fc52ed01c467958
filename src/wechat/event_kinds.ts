// Which XML callbacks are a follower acting and which are not: reports on the account's own
// sends and reviews (template, mass send, subscribe messages, cards, verification) go to
// operators, and platform events name their user in <OpenID>, not in FromUserName.

/** Reports about the account itself: nobody wrote, so nobody is bound and no window opens. */
const ACCOUNT_REPORTS = new Set([
  // One per message the account sent: as many as the account sends.
  "TEMPLATESENDJOBFINISH",
  "subscribe_msg_sent_event",
  // One per job or review: rare, and something an operator acts on.
  "MASSSENDJOBFINISH",
  "PUBLISHJOBFINISH",
  "card_pass_check",
  "card_not_pass_check",
  "card_sku_remind",
  "card_pay_order",
  "submerchant_check",
  "qualification_verify_success",
  "qualification_verify_fail",
  "naming_verify_success",
  "naming_verify_fail",
  "annual_renew",
  "verify_expired",
  "poi_check_notify",
  "wxa_nickname_audit",
  "weapp_audit_success",
  "weapp_audit_fail",
  // WeChat's legacy multi-customer-service system opened, closed or moved a session: news
  // about a conversation, but the follower did nothing.
  "kf_create_session",
  "kf_close_session",
  "kf_switch_session",
]);

/** Reports sent once per recipient: counted and logged, never shown to agents one by one. */
const PER_RECIPIENT_REPORTS = new Set(["TEMPLATESENDJOBFINISH", "subscribe_msg_sent_event"]);

/** Reports about one follower's conversation: told to the follower's agent, if it has one. */
const CONVERSATION_REPORTS = new Set([
  "kf_create_session",
  "kf_close_session",
  "kf_switch_session",
]);

/** Platform events whose user is `<OpenID>`; FromUserName is WeChat's push service there. */
const OPENID_EVENTS = new Set([
  "user_info_modified",
  "user_authorization_revoke",
  "user_authorization_cancellation",
]);

/** Events after which the account must forget the user (WeChat's doc: 及时删除该用户信息). */
const FORGET_EVENTS = new Set(["user_authorization_revoke", "user_authorization_cancellation"]);

/** Whether an event reports on the account's own sends or reviews rather than a follower. */
export function isAccountReport(event: string | undefined): boolean {
  return event !== undefined && ACCOUNT_REPORTS.has(event);
}

/** Whether a report comes once per recipient of a send (and so is too many to show agents). */
export function isPerRecipientReport(event: string): boolean {
  return PER_RECIPIENT_REPORTS.has(event);
}

/** Whether a report is about the conversation of its FromUserName (for that follower's agent). */
export function isConversationReport(event: string): boolean {
  return CONVERSATION_REPORTS.has(event);
}

/** Whether the event is the follower's client reporting where it is (the account's "report
 * location" setting: on entering the chat, or every 5 s in it), not the follower acting. */
export function isLocationReport(event: string | undefined): boolean {
  return event === "LOCATION";
}

/** Whether the event names its user in `<OpenID>`. */
export function namesUserInOpenId(event: string | undefined): boolean {
  return event !== undefined && OPENID_EVENTS.has(event);
}

/** Whether the event asks the account to forget the user's data. */
export function asksToForget(event: string | undefined): boolean {
  return event !== undefined && FORGET_EVENTS.has(event);
}
