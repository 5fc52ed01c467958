// What a contact's list entry shows as its last message while a reply of ours is not yet the
// bridge's: the reply, over what was there; taken back (cancelled, removed) before it left, the
// entry shows again what it showed before, passing over replies taken back meanwhile. Without
// this the cancelled text stayed the preview (and the entry stayed on top) until the next read of
// GET contacts. Plain module, no DOM: `deno test` covers it.

/** The fields of a contact that place and word its list entry. */
const SHOWN = ["last_message", "last_message_time", "touched"];

/** Puts our reply `clientId` at the head of `contact`'s entry (`last` the list's last_message for
 * it, `at` Unix seconds, `touched` the page's counter), keeping what it covers. */
export function showReply(contact, clientId, { last, at, touched }) {
  const covers = {};
  for (const field of SHOWN) covers[field] = contact[field];
  contact.last_message = { ...last, local: true, client_id: clientId, covers };
  contact.last_message_time = at;
  contact.touched = touched;
}

/**
 * Our reply `clientId` was taken back: when `contact`'s entry still shows it, shows again what
 * it covered, passing over every reply `isKept(clientId)` says is gone too. Returns whether the
 * entry changed.
 */
export function withdrawReply(contact, clientId, isKept) {
  if (!clientId || contact?.last_message?.client_id !== clientId) return false;
  let shown = contact.last_message.covers;
  while (shown?.last_message?.client_id && !isKept(shown.last_message.client_id)) {
    shown = shown.last_message.covers;
  }
  for (const field of SHOWN) {
    if (shown?.[field] === undefined) delete contact[field];
    else contact[field] = shown[field];
  }
  return true;
}

/** Our reply `from` goes again as `to` (a Try again): the entry, and what it covers, follow it. */
export function renameReply(contact, from, to) {
  for (let last = contact?.last_message; last; last = last.covers?.last_message) {
    if (last.client_id === from) last.client_id = to;
  }
}

/**
 * `merged` is `before` (the page's contact) with GET contacts' listing over it. While `before`'s
 * entry shows a reply of ours still in the thread (`isKept`) and the bridge lists nothing newer,
 * the entry goes on showing it, over what the bridge lists: the bridge has no reply waiting for
 * the connection, and a refresh took it out of the list while the thread still showed it.
 * Returns whether it kept it.
 */
export function keepReplyOver(before, merged, isKept) {
  const mine = before?.last_message;
  if (!mine?.client_id || !isKept(mine.client_id)) return false;
  if (Number(merged.last_message_time) > Number(before.last_message_time)) return false;
  // Under the replies still in the thread, what the bridge says came last before them.
  let base = mine;
  while (base.covers?.last_message?.client_id && isKept(base.covers.last_message.client_id)) {
    base = base.covers.last_message;
  }
  base.covers = {
    last_message: merged.last_message,
    last_message_time: merged.last_message_time,
    touched: base.covers?.touched,
  };
  merged.last_message = mine;
  merged.last_message_time = before.last_message_time;
  return true;
}
