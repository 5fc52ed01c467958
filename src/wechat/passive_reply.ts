// Passive replies: what the bridge may answer WeChat's POST with, within WeChat's 5 seconds,
// instead of `success`. An auto-reply text when no agent can answer (none online, or outside
// working hours), or `transfer_customer_service` for accounts that also use WeChat's own tool.

import type { InboundOutcome } from "../core/store.ts";
import type { FollowerMessage } from "./message.ts";

/** How the passive replies are configured (README: AUTO_REPLY_*, PASSIVE_TRANSFER_*). */
export interface PassiveReplyOptions {
  autoReplyText?: string;
  /** Minutes of the day in China time; outside them the auto-reply is sent. */
  workingHours?: { startMin: number; endMin: number };
  transferCustomerService: boolean;
  now: () => number;
  /** Whether any agent has a socket open, on any instance. */
  anyAgentOnline(): Promise<boolean>;
  /** The store's Store.firstAutoReply (shared stores: every instance's auto-replies); absent,
   * this process is the only one answering and keeps the cooldown itself. */
  firstAutoReply?(followerId: string, ttlMs: number): Promise<boolean>;
}

/** One auto-reply per follower within this time: a follower writing five lines gets one. */
const AUTO_REPLY_COOLDOWN_MS = 30 * 60_000;
const COOLDOWN_MAX = 50_000;

/** `text` as XML character data; `]]>` cannot appear inside one CDATA section. */
function cdata(text: string): string {
  return `<![CDATA[${text.replaceAll("]]>", "]]]]><![CDATA[>")}]]>`;
}

/** Whether `ms` falls inside `hours` (China time, +08:00); an end before the start wraps. */
export function isWorkingTime(
  hours: { startMin: number; endMin: number } | undefined,
  ms: number,
): boolean {
  if (!hours) return true;
  const minute = Math.floor(ms / 60_000 + 8 * 60) % (24 * 60);
  return hours.startMin <= hours.endMin
    ? minute >= hours.startMin && minute < hours.endMin
    : minute >= hours.startMin || minute < hours.endMin;
}

/** Within one process: whether `followerId`'s auto-reply is its first within `ttlMs`. */
function createLocalCooldown(now: () => number) {
  const lastAutoReply = new Map<string, number>();
  return (followerId: string, ttlMs: number): Promise<boolean> => {
    const at = now();
    const last = lastAutoReply.get(followerId);
    if (last !== undefined && at - last < ttlMs) return Promise.resolve(false);
    if (lastAutoReply.size >= COOLDOWN_MAX) lastAutoReply.clear();
    lastAutoReply.set(followerId, at);
    return Promise.resolve(true);
  };
}

/** Creates the chooser of passive replies; `answer()` gives the plaintext XML, or null. */
export function createPassiveReplies(options: PassiveReplyOptions) {
  const local = createLocalCooldown(options.now);
  const shared = options.firstAutoReply;
  // A shared store that fails (after the message was accepted) falls back to this process's
  // cooldown: thrown, the webhook answered 5xx and WeChat's retry, a duplicate, got none.
  const firstAutoReply = shared
    ? (followerId: string, ttlMs: number) =>
      shared(followerId, ttlMs).catch(() => local(followerId, ttlMs))
    : local;

  /** WeChat's passive reply XML: to the follower, from the account. */
  function replyXml(message: FollowerMessage, body: string): string {
    const createTime = Math.floor(options.now() / 1000);
    return `<xml><ToUserName>${cdata(message.from)}</ToUserName><FromUserName>${
      cdata(message.to)
    }</FromUserName><CreateTime>${createTime}</CreateTime>${body}</xml>`;
  }

  return {
    /** Whether any passive reply is configured. */
    enabled: options.transferCustomerService || options.autoReplyText !== undefined,

    /** The passive reply to `message` (already accepted with `outcome`), or null. */
    async answer(message: FollowerMessage, outcome: InboundOutcome | void): Promise<string | null> {
      // Events are not conversations: WeChat's tool takes messages, and nobody asked a question.
      if (message.event !== undefined) return null;
      if (options.transferCustomerService) {
        return replyXml(message, `<MsgType>${cdata("transfer_customer_service")}</MsgType>`);
      }
      const text = options.autoReplyText;
      if (text === undefined || outcome === "duplicate") return null;
      const now = options.now();
      const away = !isWorkingTime(options.workingHours, now) || outcome === "waiting" ||
        !(await options.anyAgentOnline());
      if (!away) return null;
      // Asked last, so only an auto-reply that goes out starts the cooldown.
      if (!(await firstAutoReply(message.from, AUTO_REPLY_COOLDOWN_MS))) return null;
      return replyXml(
        message,
        `<MsgType>${cdata("text")}</MsgType><Content>${cdata(text)}</Content>`,
      );
    },
  };
}

/** The passive replies. */
export type PassiveReplies = ReturnType<typeof createPassiveReplies>;
