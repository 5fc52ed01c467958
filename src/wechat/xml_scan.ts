// The fast path for WeChat's XML: one pass over the shape WeChat actually sends (`<xml>` with
// plain tags, CDATA and text, nested elements for the structured events). Anything else, from
// a declaration or a comment to an entity or an attribute, is left to the full parser and its
// validation, so this path never accepts what that one would refuse and gives what it gives.

/** A parsed `<xml>` element: each child tag is a string, or a nested element for structured events. */
export interface WechatXml {
  [tag: string]: string | WechatXml | Array<string | WechatXml>;
}

/** Deeper than this goes to the full parser, which refuses past its own limit. */
const MAX_DEPTH = 6;
/** WeChat's repeated elements, lists even when there is one (both parsers read this set):
 * `<item>` in SendPicsInfo and mass-send results, `<List>` in subscribe-message events,
 * `<AroundBeacon>` in ShakearoundUserShake. */
export const REPEATED_TAGS: ReadonlySet<string> = new Set(["item", "List", "AroundBeacon"]);
/** A tag name this path takes: ASCII letters, digits and `_`. */
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** The folded text of a `<A>…</A>` whose end this path could not read: the full parser decides. */
const UNREAD: unique symbol = Symbol("unread");

const GT = 62;
const SLASH = 47;
const BANG = 33;

/** Names found plain already: WeChat repeats a few dozen in every message. */
const plainNames = new Set<string>();
/** Past this many, invented names are checked each time rather than remembered. */
const MAX_REMEMBERED = 1_000;

/** A tag name with no meaning to objects (Object.prototype's names are the parser's to rename). */
function isPlainName(name: string): boolean {
  if (plainNames.has(name)) return true;
  const plain = PLAIN_NAME.test(name) && !name.startsWith("__") && !(name in Object.prototype) &&
    name !== "prototype";
  if (plain && plainNames.size < MAX_REMEMBERED) plainNames.add(name);
  return plain;
}

/** Whether `text` is only XML whitespace from `from` on. */
function blankFrom(text: string, from: number): boolean {
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 9 && c !== 10) return false;
  }
  return true;
}

class Scanner {
  i = 0;
  constructor(readonly text: string) {}

  /** The value of the element whose start tag `<name>` ends just before `this.i`. */
  element(name: string, depth: number): string | WechatXml | typeof UNREAD {
    const text = this.text;
    let fields: WechatXml | null = null;
    let chars = "";
    let cdata: string | null = null;
    while (true) {
      const lt = text.indexOf("<", this.i);
      if (lt === -1) return UNREAD;
      if (lt > this.i) {
        const piece = text.slice(this.i, lt);
        // Entities, and line ends the parser normalises, are the full parser's to read.
        if (piece.includes("&") || piece.includes("\r")) return UNREAD;
        chars += piece;
      }
      const next = text.charCodeAt(lt + 1);
      if (next === SLASH) {
        const end = lt + 2 + name.length;
        if (!text.startsWith(name, lt + 2) || text.charCodeAt(end) !== GT) return UNREAD;
        this.i = end + 1;
        if (fields === null) return cdata ?? chars;
        // CDATA beside child elements: rare enough to leave to the full parser.
        if (cdata !== null) return UNREAD;
        if (chars !== "") fields["#text"] = chars;
        return fields;
      }
      if (next === BANG) {
        // Only CDATA: a comment or a declaration goes to the full parser and its refusals.
        if (!text.startsWith("<![CDATA[", lt)) return UNREAD;
        const close = text.indexOf("]]>", lt + 9);
        if (close === -1) return UNREAD;
        const section = text.slice(lt + 9, close);
        if (section.includes("\r")) return UNREAD;
        cdata = cdata === null ? section : cdata + section;
        this.i = close + 3;
        continue;
      }
      const gt = text.indexOf(">", lt + 1);
      if (gt === -1 || depth >= MAX_DEPTH) return UNREAD;
      // `<A/>`, `<A b="c">`, `<?pi?>` and names with other characters all fail here.
      const child = text.slice(lt + 1, gt);
      if (!isPlainName(child)) return UNREAD;
      this.i = gt + 1;
      const value = this.element(child, depth + 1);
      if (value === UNREAD) return UNREAD;
      fields ??= {};
      add(fields, child, value);
    }
  }
}

function add(fields: WechatXml, tag: string, value: string | WechatXml): void {
  if (!Object.hasOwn(fields, tag)) {
    fields[tag] = REPEATED_TAGS.has(tag) ? [value] : value;
    return;
  }
  const held = fields[tag]!;
  if (Array.isArray(held)) held.push(value);
  else fields[tag] = [held, value];
}

/**
 * WeChat's `<xml>…</xml>` read in one pass, as the full parser would read it; undefined when
 * the text is anything but that plain shape (the caller then runs the full parser).
 */
export function scanPlainXml(text: string): WechatXml | undefined {
  let start = 0;
  while (start < text.length && " \t\n".includes(text[start]!)) start++;
  if (!text.startsWith("<xml>", start)) return undefined;
  const scanner = new Scanner(text);
  scanner.i = start + 5;
  const root = scanner.element("xml", 1);
  if (root === UNREAD || typeof root === "string" || !blankFrom(text, scanner.i)) {
    return undefined;
  }
  return root;
}
