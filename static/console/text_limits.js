// How long a text may be where it goes: WeChat's customer-service send takes a text of up to
// 2,048 bytes of UTF-8 and refuses a longer one with 45002 (a Chinese character is 3 bytes, so
// about 680 of them); the bridge takes a private note of 1-2,000 characters (PROTOCOL.md, `note`;
// src/agents/agent_messages.ts NOTE_MAX, counted as JavaScript counts a string's length). The
// composer counts as they do, so the agent learns it while typing, not from a refusal. Plain
// module, no DOM.

import { WINDOW_CLOSED_ERRCODES } from "./limits.js";

/** WeChat's limit on one text reply, in bytes of UTF-8. */
export const REPLY_MAX_BYTES = 2048;
/** The bridge's limit on one note, in characters. */
export const NOTE_MAX_CHARS = 2000;
/** WeChat's errcode for a text over its limit. */
export const TOO_LONG_ERRCODE = 45002;
/** From this share of the limit on, the composer shows the count. */
const NEAR = 0.8;

const encoder = new TextEncoder();

/** The text as it would go: a reply without trailing blanks, a note trimmed. */
function sent(mode, text) {
  const value = String(text ?? "");
  return mode === "note" ? value.trim() : value.replace(/\s+$/, "");
}

/**
 * The length of `text` in the composer's `mode` (reply, note, or agent: a message to a colleague,
 * which WeChat never sees, so no limit of its) against where it goes:
 * {used, max, unit ("bytes" or "chars"), near, over}.
 */
export function textLength(mode, text) {
  const value = sent(mode, text);
  if (mode === "agent") {
    return { used: value.length, max: Infinity, unit: "chars", near: false, over: false };
  }
  const note = mode === "note";
  const used = note ? value.length : encoder.encode(value).length;
  const max = note ? NOTE_MAX_CHARS : REPLY_MAX_BYTES;
  return { used, max, unit: note ? "chars" : "bytes", near: used >= max * NEAR, over: used > max };
}

/** Whether sending a failed reply again unchanged can work: never for a text WeChat found too
 * long, and for one refused as out of the window or quota (WeChat's 45015/45047, or the bridge's
 * own `limit`) only once the contact can be replied to again (`canReply`, the follower wrote). */
export function canRetry(failure, canReply) {
  const code = Number(failure?.errcode);
  if (code === TOO_LONG_ERRCODE) return false;
  if (WINDOW_CLOSED_ERRCODES.includes(code) || failure?.limit) return Boolean(canReply);
  return true;
}

/** The reply box after a failed text is taken back to edit: the text, and what the agent had
 * typed since kept under it. */
export function editedBox(current, failedText) {
  const typed = String(current ?? "");
  return typed.trim() ? `${failedText}\n${typed}` : String(failedText);
}
