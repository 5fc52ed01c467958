// HISTORY_RETENTION_DAYS as agents see it outside the history itself: a contact's last-message
// preview is part of its conversation and goes with it, whichever store keeps the contact.

import type { Contact } from "./store.ts";

/** The contact's last message while its conversation's history is kept (until `retentionMs`
 * after that message, `now` in ms), else null: the contact and its agent stay, its words go. */
export function keptLastMessage(
  contact: Pick<Contact, "last_message" | "last_message_at">,
  retentionMs: number,
  now: number,
): Contact["last_message"] {
  return contact.last_message_at + retentionMs > now ? contact.last_message : null;
}
