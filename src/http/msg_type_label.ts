// The `msg_type` label of the delivery counters: the types the bridge itself delivers, and one
// value for whatever an agent wrote to a colleague, so one agent cannot grow /metrics (each
// distinct value is a series kept for the life of the process).

import { CODES } from "../protocol/envelope.ts";
import { REPLY_MSG_TYPES } from "../replies/outbound.ts";

/** What an unknown `msg_type` is counted as. */
export const OTHER_MSG_TYPE = "other";

const KNOWN = new Set<string>([...Object.keys(CODES), ...REPLY_MSG_TYPES, "note", "error"]);

/** `msgType` when the bridge knows it, else `OTHER_MSG_TYPE`. */
export function msgTypeLabel(msgType: unknown): string {
  return typeof msgType === "string" && KNOWN.has(msgType) ? msgType : OTHER_MSG_TYPE;
}
