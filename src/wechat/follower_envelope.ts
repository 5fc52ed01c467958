// The envelope for a follower's message or event: WeChat's XML fields read into SPEC's
// `msg` (every field kept, typed), the event's sentence, the account, CreateTime as seconds.

import { codeOf, createSystemEnvelope, type Envelope } from "../protocol/envelope.ts";
import type { FollowerMessage } from "./message.ts";
import { describeEvent } from "./event_text.ts";
import { joinedTextOf, textOf } from "./xml.ts";
import { fieldsOf } from "./xml_fields.ts";

const CHINA_DATETIME = /^(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$/;

/** CreateTime as Unix seconds: a number as is, `YYYY-MM-DD hh:mm:ss` as China time, else now. */
export function parseSendTime(createTime: string, receivedAtMs: number): number {
  if (/^\d{1,12}$/.test(createTime)) return Number(createTime);
  const m = CHINA_DATETIME.exec(createTime);
  if (m) {
    const [y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0] = m.slice(1).map((p) => Number(p ?? 0));
    const at = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
    // Date.UTC rolls a date that is none over (30 February is 1 March): the follower did not
    // write then, so such a CreateTime is the receive time like any other unreadable one.
    const real = at.getUTCFullYear() === y && at.getUTCMonth() === mo - 1 &&
      at.getUTCDate() === d && at.getUTCHours() === h && at.getUTCMinutes() === mi &&
      at.getUTCSeconds() === s;
    if (real) return Math.floor(at.getTime() / 1000) - 8 * 3600;
  }
  return Math.floor(receivedAtMs / 1000);
}

/** Context the envelope needs beyond the message itself. */
export interface EnvelopeContext {
  id: string;
  name: string;
  avatar: string;
  companyId: string;
  receivedAt: number;
  /** The official account the message came to (ToUserName), unless it named an agent. */
  account?: string;
}

const toNumber = (value: string | undefined): number | string => {
  if (value === undefined) return "";
  const n = Number(value);
  return value.trim() !== "" && Number.isFinite(n) ? n : value;
};

/** `msg` for the message types SPEC names; undefined for a type the bridge does not know. */
function contentOf(m: FollowerMessage): Record<string, unknown> | undefined {
  const x = m.xml;
  const t = (tag: string) => textOf(x, tag) ?? "";
  switch (m.msgType) {
    case "text":
      return { content: joinedTextOf(x, "Content") ?? "" };
    case "image":
      return { media_path: t("PicUrl"), media_id: t("MediaId"), pic_url: t("PicUrl") };
    case "voice":
      return {
        media_path: "",
        media_id: t("MediaId"),
        format: t("Format"),
        recognition: t("Recognition"),
      };
    case "video":
    case "shortvideo":
      return { media_path: "", media_id: t("MediaId"), thumb_media_id: t("ThumbMediaId") };
    case "location":
      return {
        latitude: toNumber(textOf(x, "Location_X")),
        longitude: toNumber(textOf(x, "Location_Y")),
        scale: toNumber(textOf(x, "Scale")),
        label: t("Label"),
      };
    case "link":
      return { title: t("Title"), description: t("Description"), url: t("Url") };
    default:
      return undefined;
  }
}

/** `<Event>` of a message whose type the bridge does not know, as `wechat_event`. */
function wechatEventOf(m: FollowerMessage): { wechat_event?: string } {
  const event = textOf(m.xml, "Event")?.trim();
  return event ? { wechat_event: event } : {};
}

/** The envelope an agent receives for a follower's message or event. */
export function createFollowerEnvelope(m: FollowerMessage, ctx: EnvelopeContext): Envelope {
  const sendTime = parseSendTime(m.createTime, ctx.receivedAt);
  const content = m.event === undefined ? contentOf(m) : undefined;
  const account = ctx.account ? { account: ctx.account } : {};
  if (content !== undefined) {
    return {
      data: {
        id: ctx.id,
        name: ctx.name,
        avatar: ctx.avatar,
        msg_type: m.msgType,
        contact_id: m.from,
        company_id: ctx.companyId,
        send_time: sendTime,
        // Every field WeChat sent (MsgDataId, Idx, MediaId16K, bizmsgmenuid…), then SPEC's.
        // Into the object fieldsOf made, not a copy of it: the same keys, in the same order.
        msg: Object.assign(fieldsOf(m.xml), content),
        ...account,
      },
      result: { code: codeOf(m.msgType), message: "common" },
    };
  }
  const fields = fieldsOf(m.xml);
  const msg: Record<string, unknown> = m.event !== undefined
    ? { event: m.event, ...fields, text: describeEvent(ctx.name, m.event, fields) }
    : {
      event: "unknown_type",
      msg_type: m.msgType,
      content: joinedTextOf(m.xml, "Content") ?? "",
      ...fields,
      // `event` says unknown_type: WeChat's own <Event> (device_event's bind) is kept beside it.
      ...wechatEventOf(m),
      text: `${ctx.name} 发来一条暂不支持的 ${m.msgType} 类型消息`,
    };
  msg["follower_id"] = m.from;
  msg["follower_name"] = ctx.name;
  const envelope = createSystemEnvelope(msg, { id: ctx.id, companyId: ctx.companyId, sendTime });
  Object.assign(envelope.data, account);
  return envelope;
}
