// Triage: which conversations a filter shows (mine, waiting, open, closed, unread, window
// closing), and the counts beside each filter. Plain module, no DOM.

import { replyState } from "./limits.js";

/** The filters, in the order the console shows them. */
export const FILTERS = ["all", "mine", "unread", "closing", "open", "closed", "waiting"];

/** Whether `contact` shows under `filter` for agent `me` at `nowS`. */
export function matchesTriage(contact, filter, me, nowS) {
  const status = contact.status ?? "open";
  switch (filter) {
    case "mine":
      return contact.agent_id === me && status !== "closed";
    case "unread":
      return (Number(contact.unread) || 0) > 0;
    case "closing":
      return status !== "closed" && replyState(contact, nowS).state === "soon";
    case "open":
      return status === "open";
    case "closed":
      return status === "closed";
    case "waiting":
      return status === "waiting";
    default:
      return true;
  }
}

/** How many of `contacts` (and the waiting list) each filter shows. */
export function triageCounts(contacts, waiting, me, nowS) {
  /** @type {Record<string, number>} */
  const counts = {};
  for (const f of FILTERS) {
    counts[f] = f === "waiting"
      ? waiting.length
      : contacts.filter((c) => matchesTriage(c, f, me, nowS)).length;
  }
  return counts;
}
