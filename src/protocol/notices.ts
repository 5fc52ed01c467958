// The sentences agents read in 102 system messages about their followers: one table, with
// `{slot}`s, filled in here for the TypeScript model and handed as is to the Redis script.

/** Every notice text, by kind; `{name}` is the follower's display name. */
export const NOTICE_TEXTS = {
  assigned: "{name} 已分配给你",
  assignedFromWaiting: "{name} 已分配给你（等待中的客户）",
  transferredIn: "{name} 由 {from} 转给你",
  transferredOut: "{name} 已转给 {to}",
  closed: "与 {name} 的会话已结束",
  windowClosing: "{name} 的 48 小时回复窗口将在 {time}（北京时间）关闭",
  windowExpired: "{name} 的 48 小时回复窗口已关闭，对方再发消息后才能回复",
} as const;

/** A notice's kind. */
export type NoticeKind = keyof typeof NOTICE_TEXTS;

/** The notice of `kind` with its slots filled; a slot without a value stays empty. */
export function noticeText(kind: NoticeKind, slots: Record<string, string>): string {
  return NOTICE_TEXTS[kind].replace(/\{(\w+)\}/g, (_, slot: string) => slots[slot] ?? "");
}

/** `HH:MM` in China time (UTC+8, no daylight saving), as the window notices give it. */
export function chinaClock(ms: number): string {
  return new Date(ms + 8 * 3600_000).toISOString().slice(11, 16);
}
