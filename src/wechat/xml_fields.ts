// Every field of a WeChat callback as agents read it in `msg`: snake_case names, numbers where
// WeChat's documentation says a number, lists where it repeats an element. Ids stay strings
// (MsgId exceeds 2^53), and so does anything a person typed or scanned.

import type { WechatXml } from "./xml.ts";

/** Tags WeChat documents as numbers (coordinates, counts, indexes, states). */
const NUMERIC_TAGS = new Set([
  "Latitude",
  "Longitude",
  "Precision",
  "Location_X",
  "Location_Y",
  "Scale",
  "Count",
  "count",
  "Idx",
  "idx",
  "TotalCount",
  "FilterCount",
  "SentCount",
  "ErrorCount",
  "ArticleIdx",
  "UserDeclareState",
  "AuditState",
  "OriginalArticleType",
  "CanReprint",
  "NeedReplaceContent",
  "NeedShowReprintSource",
  "CheckState",
  "PopupScene",
  "ErrorCode",
  "publish_status",
  "ExpiredTime",
  "FailTime",
  "Fee",
  "OriginalFee",
]);

/** Tags in every callback, lifted into the envelope itself rather than `msg`. */
const COMMON_TAGS = new Set(["ToUserName", "FromUserName", "CreateTime", "MsgType", "Event"]);

/**
 * Names only the bridge writes in a follower's `msg` (the media pipeline's URLs, the console's
 * `media_url`): history signs them anew whichever key signed them, so a tag of that name in the
 * XML (<OriginalPath> in a text message, which no pipeline replaces) would have the bridge sign
 * any file its poster names. WeChat sends none of them.
 */
const BRIDGE_FIELDS = new Set(["media_path", "original_path", "thumb_path", "media_url"]);

/** Names whose camel case the generic rule would split wrongly. */
const NAMES: Readonly<Record<string, string>> = { MediaId16K: "media_id_16k" };

/** Names already converted: WeChat uses a few dozen tags, and every message repeats them. */
const converted = new Map<string, string>();
/** Past this many, a body of invented tags cannot grow the map: they are converted each time. */
const MAX_CONVERTED = 1_000;

/** `EventKey` -> `event_key`, `Location_X` -> `location_x`, `OpenID` -> `open_id`. */
export function snakeCase(tag: string): string {
  const known = converted.get(tag);
  if (known !== undefined) return known;
  const name = (Object.hasOwn(NAMES, tag) ? NAMES[tag] : undefined) ??
    tag.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/__+/g, "_").toLowerCase();
  if (converted.size < MAX_CONVERTED) converted.set(tag, name);
  return name;
}

function valueOf(tag: string, value: string | WechatXml | Array<string | WechatXml>): unknown {
  if (Array.isArray(value)) return value.map((v) => valueOf(tag, v));
  if (typeof value === "string") {
    if (!NUMERIC_TAGS.has(tag)) return value;
    const n = Number(value);
    return value.trim() !== "" && Number.isFinite(n) ? n : value;
  }
  const children = Object.keys(value).filter((k) => k !== "#text");
  // A container of one repeated element (`<PicList><item>…`, `<SubscribeMsgPopupEvent><List>…`)
  // is that list: agents read `pic_list[0]`, not `pic_list.item[0]`.
  if (children.length === 1 && Array.isArray(value[children[0]!])) {
    return valueOf(children[0]!, value[children[0]!]!);
  }
  return fieldsOf(value, false);
}

/** Every field of `xml` but the common ones (`top`), snake_cased and typed. */
export function fieldsOf(xml: WechatXml, top = true): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // for…in, not Object.entries: every message's fields pass here, and entries() makes an array
  // a field (~0.5 KB a message); own properties only, as entries() gives.
  for (const tag in xml) {
    if (!Object.hasOwn(xml, tag) || tag === "#text" || (top && COMMON_TAGS.has(tag))) continue;
    const name = snakeCase(tag);
    if (top && BRIDGE_FIELDS.has(name)) continue;
    out[name] = valueOf(tag, xml[tag]!);
  }
  return out;
}
