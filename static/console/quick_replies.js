// Quick replies (快捷回复) on the console's side: finding one from what follows a `/` in the
// reply box, and filling its placeholders for the open conversation. Plain module, no DOM; the
// list itself lives on the bridge (GET/POST/DELETE quick_replies).

/** The placeholders a quick reply may hold, each with what it becomes. */
export const PLACEHOLDERS = ["name", "agent", "id", "date", "time"];

/**
 * The `/query` being typed when the reply box holds `text` with the caret at `caret`: a slash at
 * the start of the box or after whitespace, and no space since. Null when there is none.
 */
export function slashQuery(text, caret) {
  const before = String(text).slice(0, caret);
  const m = /(^|\s)\/([^\s/]{0,30})$/.exec(before);
  if (!m) return null;
  return { query: m[2], start: before.length - m[2].length - 1, end: caret };
}

/**
 * Quick replies matching `query` (title first, then text), at most `limit`.
 * @template {{title: string, text: string}} T
 * @param {T[]} list
 * @param {string} query
 * @returns {T[]}
 */
export function searchQuickReplies(list, query, limit = 8) {
  const q = String(query ?? "").trim().toLowerCase();
  if (!q) return list.slice(0, limit);
  const scored = [];
  for (const item of list) {
    const title = String(item.title).toLowerCase();
    const text = String(item.text).toLowerCase();
    const score = title.startsWith(q) ? 0 : title.includes(q) ? 1 : text.includes(q) ? 2 : -1;
    if (score >= 0) scored.push({ item, score });
  }
  scored.sort((a, b) => a.score - b.score);
  return scored.slice(0, limit).map((s) => s.item);
}

/** The follower's name for `{name}`: the one an agent gave, or "" when the contact has none.
 * WeChat gives no names, and the bridge lists a nameless follower under its OpenID, which is
 * no name to greet a customer with. */
export function followerName(contact, contactId) {
  const name = String(contact?.name ?? "").trim();
  return name && name !== contactId && name !== contact?.contact_id ? name : "";
}

/** `text` with an empty `{name}` taken out with the blank or comma that only stood by it:
 * "您好{name}，" is "您好，", "Hello {name}, I" is "Hello, I", "{name}，您好" is "您好". */
function withoutName(text) {
  return String(text)
    .replace(/^\{name\}[\s,，、:：]*/, "")
    .replace(/[ \t]*[,，、]?[ \t]*\{name\}(?=[!！。.?？~～])/g, "")
    .replace(/[ \t]*\{name\}/g, "");
}

/** `text` with `{name}`, `{agent}`, `{id}`, `{date}`, `{time}` filled; others stay as written. */
export function fillPlaceholders(text, ctx) {
  if (!ctx.name) text = withoutName(text);
  const at = ctx.now ?? new Date();
  const pad = (n) => String(n).padStart(2, "0");
  const values = {
    name: ctx.name ?? "",
    agent: ctx.agent ?? "",
    id: ctx.id ?? "",
    date: `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}`,
    time: `${pad(at.getHours())}:${pad(at.getMinutes())}`,
  };
  // Own keys only: `in` also found Object's methods, so "{constructor}" became their source.
  return String(text).replace(
    /\{(\w+)\}/g,
    (all, key) => Object.hasOwn(values, key) ? values[key] : all,
  );
}

/** The reply box after choosing a quick reply for the `/query` at `range`. */
export function insertQuickReply(text, range, filled) {
  const value = String(text);
  const next = value.slice(0, range.start) + filled + value.slice(range.end);
  return { text: next, caret: range.start + filled.length };
}
