// What a reload would lose and the bridge does not resend (the system list, with which notices
// were read, and the followers handed to other agents), as one agent's tabs share it in
// localStorage. Each tab writes what it holds merged with what the others wrote, so the last one
// to write never takes back what another saw, read or undid. Plain module, no DOM.

import { isReport } from "./reports.js";

/** Notices kept across a reload (the page holds more). */
export const NOTICES_KEPT = 200;
/** Followers handed over (and returns remembered) kept across a reload. */
export const TRANSFERRED_KEPT = 50;

/** The notices to read: not read in any tab, and no report; none `counted` elsewhere. */
export function unreadNotices(items, counted = () => false) {
  let n = 0;
  for (const item of items) if (!item.read && !isReport(item.msg) && !counted(item)) n++;
  return n;
}

/**
 * One list of the notices two tabs hold, `own` first: each notice once (by id), read where
 * either read it, the newest `max`. One `own` lacks goes in after the notice it follows in
 * `other`: the order they came in (a follower's event carries WeChat's time, not the bridge's, so
 * times do not order them). Returns `own` itself when `other` adds nothing.
 */
export function mergeNotices(own, other, max = Infinity) {
  const byId = new Map();
  for (const item of own) if (item?.id) byId.set(item.id, item);
  let changed = false;
  let list = own;
  // Where the last notice of `other` that is in the list stands (-1: none yet, so the start).
  let after = -1;
  for (const item of other ?? []) {
    if (!item?.id) continue; // without an id it cannot be told from one of ours
    const mine = byId.get(item.id);
    if (mine) {
      if (item.read && !mine.read) {
        mine.read = true;
        changed = true;
      }
      after = list.indexOf(mine);
      continue;
    }
    if (list === own) list = [...own];
    list.splice(after + 1, 0, item);
    after += 1;
    byId.set(item.id, item);
    changed = true;
  }
  if (!changed) return own;
  return list.length > max ? list.slice(-max) : list;
}

/**
 * The followers handed over, from two tabs' `{transferred, returned}`: per follower the newest
 * word wins, its transfer (`transferred_at`) or its return (`at`: back with us, or forgotten),
 * so a tab that missed a return does not bring the follower back to the list. Returns
 * `{transferred: Map, returned: Map}`, each keyed by contact_id.
 */
export function mergeTransferred(own, other) {
  const transferred = new Map(own.transferred);
  const returned = new Map(own.returned);
  for (const entry of other?.transferred ?? []) {
    if (!entry?.contact_id) continue;
    const mine = transferred.get(entry.contact_id);
    if (!mine || Number(entry.transferred_at) > Number(mine.transferred_at)) {
      transferred.set(entry.contact_id, entry);
    }
  }
  for (const back of other?.returned ?? []) {
    if (!back?.contact_id) continue;
    if (!(Number(returned.get(back.contact_id)?.at) >= Number(back.at))) {
      returned.set(back.contact_id, back);
    }
  }
  for (const [id, back] of returned) {
    const entry = transferred.get(id);
    // The same second: the return came after the transfer it undid.
    if (entry && Number(back.at) >= Number(entry.transferred_at)) transferred.delete(id);
  }
  return {
    transferred: newest(transferred, (e) => e.transferred_at),
    returned: newest(returned, (b) => b.at),
  };
}

function newest(map, at) {
  if (map.size <= TRANSFERRED_KEPT) return map;
  const kept = [...map.entries()].sort((a, b) => Number(at(a[1])) - Number(at(b[1])))
    .slice(-TRANSFERRED_KEPT);
  return new Map(kept);
}

/**
 * The saved context from its JSON: `{system, transferred, returned, lastSeq}`, empty where
 * missing or damaged. A context saved before notices carried `read` (a count of the unread,
 * `systemUnseen`) has its last that many notices to read unread, the rest read.
 */
export function parseContext(raw) {
  let saved = null;
  try {
    saved = JSON.parse(raw ?? "null");
  } catch {
    saved = null;
  }
  const list = (v) => Array.isArray(v) ? v.filter((x) => x && typeof x === "object") : [];
  const system = list(saved?.system);
  if (system.length > 0 && !system.some((item) => "read" in item)) {
    let unread = Number(saved.systemUnseen);
    if (!Number.isInteger(unread) || unread < 0) unread = 0;
    for (let i = system.length - 1; i >= 0; i--) {
      const item = system[i];
      const counted = !isReport(item.msg) && unread > 0;
      if (counted) unread--;
      item.read = !counted;
    }
  }
  return {
    system,
    transferred: list(saved?.transferred),
    returned: list(saved?.returned),
    lastSeq: Number(saved?.lastSeq) || 0,
  };
}
