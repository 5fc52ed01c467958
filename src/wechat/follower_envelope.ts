// The envelope for a follower's message or event: WeChat's XML fields read into SPEC's
// `msg`, the event sentences agents read, and CreateTime as Unix seconds.

import { codeOf, createSystemEnvelope, type Envelope } from "../protocol/envelope.ts";
import type { FollowerMessage } from "./message.ts";
import { joinedTextOf, textOf, type WechatXml } from "./xml.ts";

const CHINA_DATETIME = /^(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$/;

/** CreateTime as Unix seconds: a number as is, `YYYY-MM-DD hh:mm:ss` as China time, else now. */
export function parseSendTime(createTime: string, receivedAtMs: number): number {
  if (/^\d{1,12}$/.test(createTime)) return Number(createTime);
  const m = CHINA_DATETIME.exec(createTime);
  if (m) {
    const [, y, mo, d, h, mi, s] = m;
    const utc = Date.UTC(
      Number(y),
      Number(mo) - 1,
      Number(d),
      Number(h),
      Number(mi),
      Number(s ?? 0),
    );
    if (!Number.isNaN(utc)) return Math.floor(utc / 1000) - 8 * 3600;
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

const COMMON_TAGS = new Set(["ToUserName", "FromUserName", "CreateTime", "MsgType", "Event"]);

/** `EventKey` -> `event_key`, `Location_X` -> `location_x`. */
function snakeCase(tag: string): string {
  return tag.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/__+/g, "_").toLowerCase();
}

/** Every field but the common ones, snake_cased, nested elements kept as objects. */
function fieldsOf(xml: WechatXml): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [tag, repeated] of Object.entries(xml)) {
    if (COMMON_TAGS.has(tag) || tag === "#text") continue;
    // A repeated field: the first wins, as textOf() reads it.
    const value = Array.isArray(repeated) ? repeated[0]! : repeated;
    out[snakeCase(tag)] = typeof value === "string" ? value : fieldsOf(value);
  }
  return out;
}

/** A readable line for an event, in the agents' language. */
function describeEvent(who: string, event: string, fields: Record<string, unknown>): string {
  const key = typeof fields["event_key"] === "string" ? fields["event_key"] : "";
  switch (event) {
    case "subscribe":
      return key.startsWith("qrscene_")
        ? `${who} 扫码关注了公众号（场景 ${key.slice("qrscene_".length)}）`
        : `${who} 关注了公众号`;
    case "unsubscribe":
      return `${who} 取消关注了公众号，之后的回复将无法送达`;
    case "SCAN":
      return `${who} 扫描了二维码（场景 ${key}）`;
    case "LOCATION":
      return `${who} 上报了位置：${fields["latitude"] ?? ""}, ${fields["longitude"] ?? ""}`;
    case "CLICK":
      return `${who} 点击了菜单（${key}）`;
    case "VIEW":
      return `${who} 打开了菜单链接 ${key}`;
    default:
      return `${who} 触发了事件 ${event}${key ? `（${key}）` : ""}`;
  }
}

/** The envelope an agent receives for a follower's message or event. */
export function createFollowerEnvelope(m: FollowerMessage, ctx: EnvelopeContext): Envelope {
  const sendTime = parseSendTime(m.createTime, ctx.receivedAt);
  const content = m.event === undefined ? contentOf(m) : undefined;
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
        msg: content,
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
      text: `${ctx.name} 发来一条暂不支持的 ${m.msgType} 类型消息`,
    };
  msg["follower_id"] = m.from;
  msg["follower_name"] = ctx.name;
  return createSystemEnvelope(msg, { id: ctx.id, companyId: ctx.companyId, sendTime });
}
