// The bounded window of rendered messages: a conversation of any length puts at most MAX
// messages in the DOM. The window follows the newest message unless the agent scrolled up; it
// slides by STEP when the agent reaches either end. Plain module, no DOM.

export const MAX = 200;
export const STEP = 80;
/** Following the newest, fewer are kept: a burst lays out a screenful and some, not MAX. */
export const FOLLOW = 120;

/** A window at the newest message of a conversation of `length`. */
export function newestWindow(length) {
  return { start: Math.max(0, length - FOLLOW), end: length, following: true };
}

/** The window after the conversation grew to `length`: a following window keeps the newest in
 * view (dropping the oldest); one the agent scrolled away from stays where it is. */
export function grow(win, length) {
  if (win.following) return newestWindow(length);
  return { ...win, end: Math.min(win.end, length), start: Math.min(win.start, length) };
}

/** The window slid towards older messages; `atStart` tells the caller to page in history. */
export function older(win) {
  const start = Math.max(0, win.start - STEP);
  const end = Math.min(win.end, start + MAX);
  return { win: { start, end, following: false }, atStart: start === 0 };
}

/** The window slid towards newer messages of a conversation of `length`. */
export function newer(win, length) {
  const end = Math.min(length, win.end + STEP);
  const start = Math.max(win.start, end - MAX);
  return { start, end, following: end === length };
}

/** The window after `count` older messages were put before the ones it shows. */
export function prepended(win, count) {
  return { ...win, start: win.start + count, end: win.end + count };
}

/** How many messages newer than the window are not rendered (not all new: some were read). */
export function hiddenNewer(win, length) {
  return Math.max(0, length - win.end);
}
