// A search hit's text, cut to the part around what was searched for, the match marked: a long
// message (a pasted order, a paragraph of Chinese) filled the search dialog from its start,
// and the words found could be far down it. Plain module, no DOM.

/** Characters kept before the match, and after it. */
export const BEFORE = 24;
export const AFTER = 80;

/**
 * `text` around the first place `query` is found, as the bridge finds it (lowercased):
 * {before, match, after}, with "…" where cut. Not found, match is "" and the text's start shows.
 */
export function snippetOf(text, query, { before = BEFORE, after = AFTER } = {}) {
  const full = String(text ?? "").replace(/\s+/g, " ");
  const q = String(query ?? "").trim().replace(/\s+/g, " ").toLowerCase();
  const lower = full.toLowerCase();
  // A letter whose lowercase is longer (İ) shifts every index after it: then nothing is marked.
  const at = q && lower.length === full.length ? lower.indexOf(q) : -1;
  if (at < 0) {
    const end = boundary(full, before + after);
    return { before: "", match: "", after: full.slice(0, end) + (end < full.length ? "…" : "") };
  }
  const start = boundary(full, Math.max(0, at - before));
  const matchEnd = at + q.length;
  const end = boundary(full, Math.min(full.length, matchEnd + after));
  return {
    before: (start > 0 ? "…" : "") + full.slice(start, at),
    match: full.slice(at, matchEnd),
    after: full.slice(matchEnd, end) + (end < full.length ? "…" : ""),
  };
}

/** The fields the bridge's search reads, in its order: the first one a message has is searched. */
const SEARCHED = ["content", "title", "description", "label", "recognition"];

/** The text of `msg` (a message's msg) that the bridge searched: a location's label, a voice's
 * recognition, as well as a text's content. */
export function searchedText(msg) {
  for (const field of SEARCHED) {
    if (typeof msg?.[field] === "string") return msg[field];
  }
  return "";
}

const graphemes = typeof Intl?.Segmenter === "function"
  ? new Intl.Segmenter(undefined, { granularity: "grapheme" })
  : null;

/** `index`, moved back to the start of the character (as the eye sees one) it falls in: no
 * emoji cut in two, nor a flag (🇨🇳 cut after its first half re-paired the rest into 🇳🇨), a
 * family or a skin tone. */
function boundary(text, index) {
  if (index <= 0 || index >= text.length) return Math.max(0, Math.min(index, text.length));
  const segment = graphemes?.segment(text).containing(index);
  if (segment) return segment.index;
  const code = text.charCodeAt(index);
  return code >= 0xdc00 && code <= 0xdfff ? index - 1 : index;
}
