// An agent's reply to a follower: reading the seed's 2.1 `data` for the reply msg_types and
// turning it into the JSON WeChat's `message/custom/send` takes. Media given as a URL is
// uploaded by the caller first; its media_id then goes into the custom message.

/** The msg_types an agent can send to a follower. */
export const REPLY_MSG_TYPES = [
  "text",
  "image",
  "voice",
  "video",
  "news",
  "miniprogrampage",
  "msgmenu",
  "mpnews",
  "mpnewsarticle",
  "music",
  "wxcard",
] as const;

export type ReplyMsgType = typeof REPLY_MSG_TYPES[number];

/** One link card; WeChat sends a single article per news reply. */
export interface NewsArticle {
  title: string;
  description: string;
  url: string;
  picurl: string;
}

/** One choice of a `msgmenu`: the follower's tap comes back as text with `bizmsgmenuid` = id. */
export interface MenuChoice {
  id: string;
  content: string;
}

/** Media given either as WeChat's media_id or as a URL the bridge uploads. */
export interface MediaSource {
  mediaId: string | null;
  mediaUrl: string | null;
}

export type AgentReplyBody =
  | { msgType: "text"; content: string }
  | ({ msgType: "image" | "voice" } & MediaSource)
  | ({
    msgType: "video";
    thumbMediaId: string | null;
    title: string;
    description: string;
  } & MediaSource)
  | { msgType: "news"; article: NewsArticle }
  | {
    msgType: "miniprogrampage";
    title: string;
    appid: string;
    pagepath: string;
    thumbMediaId: string;
  }
  | { msgType: "msgmenu"; headContent: string; list: MenuChoice[]; tailContent: string }
  | { msgType: "mpnews"; mediaId: string }
  | { msgType: "mpnewsarticle"; articleId: string }
  | {
    msgType: "music";
    title: string;
    description: string;
    musicurl: string;
    hqmusicurl: string;
    thumbMediaId: string;
  }
  | { msgType: "wxcard"; cardId: string };

/** A validated reply: the follower it goes to, the agent's own id for it, and the content. */
export type AgentReply = { contactId: string; clientId: string | null } & AgentReplyBody;

/** Whether `msgType` is one an agent can send to a follower (commands are not). */
export function isReplyMsgType(msgType: unknown): msgType is ReplyMsgType {
  return typeof msgType === "string" && (REPLY_MSG_TYPES as readonly string[]).includes(msgType);
}

/** Validates the 2.1 `data` of a reply; throws SyntaxError naming the wrong field. */
export function parseAgentReply(data: unknown): AgentReply {
  const record = asRecord(data, "data");
  const contactId = requiredString(record, "contact_id", "contact_id");
  // Agents' programs sometimes number their messages: a numeric client_id is read as text.
  const clientId = typeof record.client_id === "number" && Number.isFinite(record.client_id)
    ? String(record.client_id)
    : optionalString(record, "client_id", "client_id");
  const msgType = record.msg_type;
  if (!isReplyMsgType(msgType)) {
    throw fail(
      `msg_type ${JSON.stringify(msgType)} is not a reply type (${REPLY_MSG_TYPES.join(", ")})`,
    );
  }
  const msg = asRecord(record.msg, "msg");
  return { contactId, clientId, ...parseBody(msgType, msg) };
}

function parseBody(msgType: ReplyMsgType, msg: Record<string, unknown>): AgentReplyBody {
  switch (msgType) {
    case "text": {
      const content = requiredString(msg, "content", "msg.content");
      if (content.trim() === "") throw fail("msg.content is blank");
      return { msgType, content };
    }
    case "image":
    case "voice":
      return { msgType, ...parseMediaSource(msg) };
    case "video":
      return {
        msgType,
        ...parseMediaSource(msg),
        thumbMediaId: optionalString(msg, "thumb_media_id", "msg.thumb_media_id"),
        title: optionalString(msg, "title", "msg.title") ?? "",
        description: optionalString(msg, "description", "msg.description") ?? "",
      };
    case "news":
      return { msgType, article: parseArticle(msg) };
    case "miniprogrampage":
      return {
        msgType,
        title: requiredString(msg, "title", "msg.title"),
        appid: requiredString(msg, "appid", "msg.appid"),
        pagepath: requiredString(msg, "pagepath", "msg.pagepath"),
        thumbMediaId: requiredString(msg, "thumb_media_id", "msg.thumb_media_id"),
      };
    case "msgmenu":
      return { msgType, ...parseMenu(msg) };
    case "mpnews":
      return { msgType, mediaId: requiredString(msg, "media_id", "msg.media_id") };
    case "mpnewsarticle":
      return { msgType, articleId: requiredString(msg, "article_id", "msg.article_id") };
    case "music": {
      const musicurl = requiredString(msg, "musicurl", "msg.musicurl");
      requireHttpUrl(musicurl, "msg.musicurl");
      const hqmusicurl = optionalString(msg, "hqmusicurl", "msg.hqmusicurl") ?? musicurl;
      requireHttpUrl(hqmusicurl, "msg.hqmusicurl");
      return {
        msgType,
        title: optionalString(msg, "title", "msg.title") ?? "",
        description: optionalString(msg, "description", "msg.description") ?? "",
        musicurl,
        hqmusicurl,
        thumbMediaId: requiredString(msg, "thumb_media_id", "msg.thumb_media_id"),
      };
    }
    case "wxcard":
      return { msgType, cardId: requiredString(msg, "card_id", "msg.card_id") };
  }
}

// WeChat's 客服消息 › 发送菜单消息: head, choices, tail; a choice's id comes back as bizmsgmenuid.
function parseMenu(msg: Record<string, unknown>) {
  const raw = msg.list;
  if (!Array.isArray(raw) || raw.length === 0) {
    throw fail("msg.list must be a non-empty list of {id, content}");
  }
  const list = raw.map((item, i): MenuChoice => {
    const choice = asRecord(item, `msg.list[${i}]`);
    // Numbers are what most callers write for ids (WeChat's own example uses 101, 102).
    const id = typeof choice.id === "number" && Number.isFinite(choice.id)
      ? String(choice.id)
      : requiredString(choice, "id", `msg.list[${i}].id`);
    return { id, content: requiredString(choice, "content", `msg.list[${i}].content`) };
  });
  return {
    headContent: optionalString(msg, "head_content", "msg.head_content") ?? "",
    list,
    tailContent: optionalString(msg, "tail_content", "msg.tail_content") ?? "",
  };
}

function parseMediaSource(msg: Record<string, unknown>): MediaSource {
  const mediaId = optionalString(msg, "media_id", "msg.media_id");
  const mediaUrl = optionalString(msg, "media_url", "msg.media_url");
  if (mediaId === null && mediaUrl === null) throw fail("msg needs media_id or media_url");
  if (mediaId === null && mediaUrl !== null) requireHttpUrl(mediaUrl, "msg.media_url");
  // A media_id already on WeChat wins: nothing to upload.
  return mediaId !== null ? { mediaId, mediaUrl: null } : { mediaId: null, mediaUrl };
}

// The protocol puts the card's fields in `msg`; `msg.articles` with one item is read too.
function parseArticle(msg: Record<string, unknown>): NewsArticle {
  let fields = msg;
  let where = "msg";
  if (msg.articles !== undefined) {
    if (!Array.isArray(msg.articles) || msg.articles.length !== 1) {
      throw fail("msg.articles must hold exactly one article (WeChat sends one per reply)");
    }
    fields = asRecord(msg.articles[0], "msg.articles[0]");
    where = "msg.articles[0]";
  }
  const url = requiredString(fields, "url", `${where}.url`);
  requireHttpUrl(url, `${where}.url`);
  const picurl = optionalString(fields, "picurl", `${where}.picurl`) ?? "";
  if (picurl !== "") requireHttpUrl(picurl, `${where}.picurl`);
  return {
    title: requiredString(fields, "title", `${where}.title`),
    description: optionalString(fields, "description", `${where}.description`) ?? "",
    url,
    picurl,
  };
}

/** The upload a reply needs before it can be sent: its media URL and WeChat's media type. */
export function mediaToUpload(
  reply: AgentReply,
): { type: "image" | "voice" | "video"; url: string } | null {
  switch (reply.msgType) {
    case "image":
    case "voice":
    case "video":
      return reply.mediaId === null && reply.mediaUrl !== null
        ? { type: reply.msgType, url: reply.mediaUrl }
        : null;
    default:
      return null;
  }
}

/** What the bridge adds to a reply after uploading: media ids, and who it is shown as sent by. */
export interface CustomMessageExtras {
  /** The upload of the reply's media_url. */
  mediaId?: string;
  /** The upload of a video's thumbnail (given, or made from the video). */
  thumbMediaId?: string;
  /** The customer-service account the reply is shown as sent by (`customservice.kf_account`). */
  kfAccount?: string;
}

/** WeChat's `message/custom/send` JSON for `reply`, with what the bridge uploaded for it. */
export function toCustomMessage(
  followerId: string,
  reply: AgentReply,
  extras: CustomMessageExtras = {},
): Record<string, unknown> {
  const body = customBody(followerId, reply, extras.mediaId, extras.thumbMediaId);
  return extras.kfAccount ? { ...body, customservice: { kf_account: extras.kfAccount } } : body;
}

function customBody(
  followerId: string,
  reply: AgentReply,
  mediaId: string | undefined,
  thumbMediaId: string | undefined,
): Record<string, unknown> {
  const base = { touser: followerId, msgtype: reply.msgType };
  switch (reply.msgType) {
    case "text":
      return { ...base, text: { content: reply.content } };
    case "image":
    case "voice":
      return { ...base, [reply.msgType]: { media_id: resolveMediaId(reply, mediaId) } };
    case "video": {
      const thumb = thumbMediaId ?? reply.thumbMediaId;
      return {
        ...base,
        // Title and description are optional: left out when empty, as wechat-api sends it.
        video: {
          media_id: resolveMediaId(reply, mediaId),
          ...(thumb === null ? {} : { thumb_media_id: thumb }),
          ...(reply.title === "" ? {} : { title: reply.title }),
          ...(reply.description === "" ? {} : { description: reply.description }),
        },
      };
    }
    case "news":
      return { ...base, news: { articles: [{ ...reply.article }] } };
    case "miniprogrampage":
      return {
        ...base,
        miniprogrampage: {
          title: reply.title,
          appid: reply.appid,
          pagepath: reply.pagepath,
          thumb_media_id: reply.thumbMediaId,
        },
      };
    case "msgmenu":
      return {
        ...base,
        msgmenu: {
          head_content: reply.headContent,
          list: reply.list.map((c) => ({ id: c.id, content: c.content })),
          tail_content: reply.tailContent,
        },
      };
    case "mpnews":
      return { ...base, mpnews: { media_id: reply.mediaId } };
    case "mpnewsarticle":
      return { ...base, mpnewsarticle: { article_id: reply.articleId } };
    case "music":
      return {
        ...base,
        music: {
          title: reply.title,
          description: reply.description,
          musicurl: reply.musicurl,
          hqmusicurl: reply.hqmusicurl,
          thumb_media_id: reply.thumbMediaId,
        },
      };
    case "wxcard":
      return { ...base, wxcard: { card_id: reply.cardId } };
  }
}

function resolveMediaId(reply: MediaSource & { msgType: string }, uploaded?: string): string {
  const id = uploaded ?? reply.mediaId;
  if (!id) {
    throw new TypeError(
      `Cannot build custom message: the ${reply.msgType} reply's media_url is not uploaded yet`,
    );
  }
  return id;
}

function fail(detail: string): SyntaxError {
  return new SyntaxError(`Cannot parse reply: ${detail}`);
}

function asRecord(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw fail(`${where} must be an object`);
  }
  return value as Record<string, unknown>;
}

function requiredString(record: Record<string, unknown>, key: string, where: string): string {
  const value = record[key];
  if (typeof value !== "string" || value === "") throw fail(`${where} must be a non-empty string`);
  return value;
}

function optionalString(
  record: Record<string, unknown>,
  key: string,
  where: string,
): string | null {
  const value = record[key];
  if (value === undefined || value === null || value === "") return null;
  if (typeof value !== "string") throw fail(`${where} must be a string`);
  return value;
}

function requireHttpUrl(value: string, where: string): void {
  let protocol = "";
  try {
    protocol = new URL(value).protocol;
  } catch {
    throw fail(`${where} is not a URL`);
  }
  if (protocol !== "http:" && protocol !== "https:") throw fail(`${where} must be http or https`);
}
