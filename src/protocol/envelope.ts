// The seed's JSON envelope: what every agent socket receives, SPEC's numeric codes, and the
// system and error envelopes. Imports nothing of ours: every layer above speaks this.

/** `data` of an envelope: SPEC's fields, plus `seq` once it is in an agent's log. */
export interface EnvelopeData {
  id: string;
  seq?: number;
  name: string;
  avatar: string;
  msg_type: string;
  contact_id: string;
  company_id: string;
  send_time: number;
  msg: Record<string, unknown>;
  [extra: string]: unknown;
}

/** What agents receive: `data` and a numeric `result.code`. */
export interface Envelope {
  data: EnvelopeData;
  result: { code: number; message: string };
}

/** SPEC's codes by msg_type. */
export const CODES: Readonly<Record<string, number>> = {
  system: 102,
  text: 1001,
  image: 1002,
  voice: 1003,
  video: 1004,
  shortvideo: 1005,
  location: 1006,
  link: 1007,
};

/** The code for a msg_type: SPEC's table, 102 (system) for anything else. */
export function codeOf(msgType: string): number {
  return CODES[msgType] ?? 102;
}

/** A reply's code: its type's, 1007 for the cards (news, mini program, menu) a follower sees as links. */
export function replyCodeOf(msgType: string): number {
  return CODES[msgType] ?? CODES["link"]!;
}

/** The heartbeat frame, the same bytes every time. */
export const HEARTBEAT_FRAME = JSON.stringify({
  data: {},
  result: { code: 101, message: "heartbeat" },
});

export const SYSTEM_CONTACT = "system01";
export const SYSTEM_NAME = "系统消息";

/** A 102 system message; `msg.event` says what happened, `msg.text` says it in words. */
export function createSystemEnvelope(
  msg: Record<string, unknown>,
  ctx: { id: string; companyId: string; sendTime: number },
): Envelope {
  return {
    data: {
      id: ctx.id,
      name: SYSTEM_NAME,
      avatar: "",
      msg_type: "system",
      contact_id: SYSTEM_CONTACT,
      company_id: ctx.companyId,
      send_time: ctx.sendTime,
      msg,
    },
    result: { code: 102, message: "common" },
  };
}

/** A -1 envelope; `message` says what went wrong, `data` what it concerns. */
export function createErrorEnvelope(
  message: string,
  data: Record<string, unknown> = {},
): { data: Record<string, unknown>; result: { code: -1; message: string } } {
  return { data, result: { code: -1, message } };
}
