// A follower's message as the bridge understands it: WeChat's XML fields, typed and checked.
// Only the fields every message has are lifted out; the rest stays in `xml` for the envelope.

import { createHash } from "node:crypto";
import { SYSTEM_CONTACT } from "../protocol/envelope.ts";
import { namesUserInOpenId } from "./event_kinds.ts";
import { textOf, type WechatXml } from "./xml.ts";

/** One message or event from a follower, read from WeChat's XML. */
export interface FollowerMessage {
  /** ToUserName: the account's original id, or (seed's simplified form) an agent's userid. */
  to: string;
  /** The follower's OpenID: FromUserName, or `<OpenID>` on platform events that name it there. */
  from: string;
  createTime: string;
  msgType: string;
  msgId?: string;
  event?: string;
  xml: WechatXml;
}

/** Lifts the common fields out of parsed XML; throws SyntaxError when one is missing. */
export function readFollowerMessage(xml: WechatXml): FollowerMessage {
  const msgType = textOf(xml, "MsgType")?.trim();
  if (!msgType) throw new SyntaxError("Cannot parse WeChat XML: MsgType is missing");
  const event = msgType === "event" ? textOf(xml, "Event")?.trim() || "unknown" : undefined;
  // user_info_modified and user_authorization_revoke come from WeChat's push service: the
  // user they are about is <OpenID>.
  const userTag = namesUserInOpenId(event) ? "OpenID" : "FromUserName";
  const from = textOf(xml, userTag)?.trim();
  if (!from) throw new SyntaxError(`Cannot parse WeChat XML: ${userTag} is missing`);
  if (from.length > 128) throw new SyntaxError(`Cannot parse WeChat XML: ${userTag} is too long`);
  // WeChat's OpenIDs are never this; a follower under it would pass for the system's notices.
  if (from === SYSTEM_CONTACT) {
    throw new SyntaxError(
      `Cannot parse WeChat XML: ${userTag} ${SYSTEM_CONTACT} is the bridge's id for system messages`,
    );
  }
  return {
    to: textOf(xml, "ToUserName")?.trim() ?? "",
    from,
    createTime: textOf(xml, "CreateTime")?.trim() ?? "",
    msgType,
    msgId: textOf(xml, "MsgId")?.trim() || undefined,
    event,
    xml,
  };
}

/**
 * The ids of the sends a report is about: `<MsgID>` (template, mass send), or each one in a
 * subscribe-message result's list. Empty for everything else.
 */
function sendIdsOf(xml: WechatXml): string {
  const top = textOf(xml, "MsgID")?.trim();
  if (top) return top;
  const sent = xml["SubscribeMsgSentEvent"];
  if (typeof sent !== "object" || Array.isArray(sent)) return "";
  const items = sent["List"];
  if (!Array.isArray(items)) return "";
  return items.map((item) => typeof item === "string" ? "" : textOf(item, "MsgID")?.trim() ?? "")
    .join(",");
}

/**
 * The key WeChat's retries share: MsgId for messages, the event's identity for events, and for
 * a message without MsgId what it says.
 */
export function dedupKeyOf(message: FollowerMessage): string {
  if (message.msgId) return `m|${message.from}|${message.msgId}`;
  const eventKey = textOf(message.xml, "EventKey") ?? "";
  // The seed's simplified XML may leave MsgId out: two things a follower says in one second are
  // then told apart by their bodies, which a retry repeats.
  const said = message.event === undefined
    ? `|${createHash("sha256").update(JSON.stringify(message.xml)).digest("hex").slice(0, 32)}`
    : "";
  const key = `e|${message.from}|${message.createTime}|${
    message.event ?? message.msgType
  }|${eventKey}${said}`;
  // Two sends that finish in one second (two templates to one follower, two mass sends) are
  // two reports with one FromUserName and CreateTime: only their MsgID tells them apart.
  const sends = sendIdsOf(message.xml);
  return bounded(sends === "" ? key : `${key}|${sends}`);
}

/** Keys past this length are kept as their hash: an unsigned post (no WECHAT_TOKEN) could
 * otherwise make each retry key as long as a body, in memory and in every store. */
const MAX_KEY_LENGTH = 256;

function bounded(key: string): string {
  if (key.length <= MAX_KEY_LENGTH) return key;
  return `h|${createHash("sha256").update(key).digest("hex")}`;
}
