// WeChat's XML, read safely: refuses DOCTYPE and entity declarations (billion laughs), deep
// nesting, tag names that could reach Object.prototype and character references to no XML
// character (a surrogate, NUL), before any value is trusted, while
// a follower's text that merely mentions them inside CDATA passes. Every value stays a string:
// MsgIds exceed 2^53 and `00123` must stay `00123`.

import { XMLParser, XMLValidator } from "fast-xml-parser";
import { REPEATED_TAGS, scanPlainXml, type WechatXml } from "./xml_scan.ts";

export type { WechatXml };

const MAX_DEPTH = 8;
const CDATA = "__cdata";

/** A parsed node with CDATA folded in: an element of text and CDATA only is the CDATA. */
function foldCdata(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(foldCdata);
  if (typeof node !== "object" || node === null) return node;
  const record = node as Record<string, unknown>;
  const keys = Object.keys(record);
  if (Object.hasOwn(record, CDATA) && keys.every((k) => k === CDATA || k === "#text")) {
    const cdata = record[CDATA];
    return Array.isArray(cdata) ? cdata.join("") : String(cdata);
  }
  const out: Record<string, unknown> = {};
  for (const k of keys) if (k !== CDATA) out[k] = foldCdata(record[k]);
  return out;
}
const FORBIDDEN = /<!DOCTYPE|<!ENTITY|<!\[INCLUDE|<!\[IGNORE/i;
const FORBIDDEN_AT = /^<!(?:DOCTYPE|ENTITY|\[INCLUDE|\[IGNORE)/i;

/**
 * Where the CDATA section, comment or processing instruction opening at `i` ends (-1: never),
 * or `i` when none opens there: what XML takes as text inside them is not markup.
 */
function sectionEnd(text: string, i: number): number {
  return text.startsWith("<![CDATA[", i)
    ? text.indexOf("]]>", i + 9)
    : text.startsWith("<!--", i)
    ? text.indexOf("-->", i + 4)
    : text.startsWith("<?", i)
    ? text.indexOf("?>", i + 2)
    : i;
}

/** Whether `text` declares a DOCTYPE or entities as markup: outside CDATA sections, comments
 * and processing instructions, where a follower's text may say `<!DOCTYPE` freely. */
function declaresDoctype(text: string): boolean {
  // Most bodies never mention one: the scan runs only when the words appear at all.
  if (!FORBIDDEN.test(text)) return false;
  let i = text.indexOf("<");
  while (i !== -1) {
    const end = sectionEnd(text, i);
    if (end === i && FORBIDDEN_AT.test(text.slice(i, i + 10))) return true;
    // An unclosed section is malformed: the validator refuses it next.
    if (end === -1) return false;
    i = text.indexOf("<", end === i ? i + 1 : end);
  }
  return false;
}

const CHAR_REF = /&#(?:x([0-9a-fA-F]+)|([0-9]+));/g;

/** A character XML allows nowhere, CDATA included: C0 controls but tab, LF and CR, and the
 * two non-characters at the plane's end (UTF-8 decoding leaves no lone surrogate). */
// deno-lint-ignore no-control-regex -- the control characters are what it looks for
const RAW_NON_CHAR = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

/** Whether `code` is a character XML allows (its Char production): no NUL, no surrogate. */
function isXmlChar(code: number): boolean {
  return code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) ||
    (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff);
}

/**
 * A character reference outside CDATA, comments and processing instructions that names no
 * character XML allows (`&#xD83D;`, `&#0;`): the parser drops or keeps those silently, and a
 * follower's text would lose them; XML calls the document malformed, and so do we.
 */
function badCharRef(text: string): string | null {
  if (!text.includes("&#")) return null;
  let from = 0;
  while (from < text.length) {
    const open = text.indexOf("<", from);
    const stop = open === -1 ? text.length : open;
    for (const m of text.slice(from, stop).matchAll(CHAR_REF)) {
      const code = m[1] !== undefined ? Number.parseInt(m[1], 16) : Number(m[2]);
      if (!isXmlChar(code)) return m[0];
    }
    if (open === -1) break;
    const section = sectionEnd(text, open);
    const end = section === open ? text.indexOf(">", open) : section;
    if (end === -1) break; // unclosed: the validator refuses it
    from = end + 1;
  }
  return null;
}

/** Longest parser detail passed on: the error goes back to whoever posted the XML. */
const DETAIL_CHARS = 200;

/**
 * `detail` cut to DETAIL_CHARS: the validator names the tags left open in full, and 18 KB of
 * `<a>` made a 120 KB answer, logged too.
 */
function clipped(detail: string): string {
  return detail.length <= DETAIL_CHARS ? detail : `${detail.slice(0, DETAIL_CHARS)}…`;
}

/**
 * Creates a reusable parser; `parse()` throws SyntaxError("Cannot parse WeChat XML: …").
 * `fastPath: false` always runs the full parser: the reference the fast path is held to.
 */
export function createXmlReader(
  { fastPath = true }: { fastPath?: boolean } = {},
): { parse(text: string): WechatXml } {
  const parser = new XMLParser({
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: false,
    ignoreAttributes: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    processEntities: true,
    // Character references (`&#233;`, `&#x1F600;`) are text as XML says; without this the parser
    // left them as written. Its few HTML names (`&nbsp;`, `&copy;`) come with them.
    htmlEntities: true,
    maxNestedTags: MAX_DEPTH,
    // No callback of ours reads the path: building it as a string per tag cost a third of parsing.
    jPath: false,
    // WeChat's repeated elements are lists even when there is one.
    isArray: (tagName: string) => REPEATED_TAGS.has(tagName),
    // CDATA apart from the text around it: `<EventKey>\n  <![CDATA[x]]>\n</EventKey>` is "x".
    cdataPropName: CDATA,
  });
  return {
    parse(text: string): WechatXml {
      // Before either path: the parser kept them as text, and a NUL in a follower id ran into
      // the key an agent's client_id is scoped with.
      const raw = RAW_NON_CHAR.exec(text);
      if (raw !== null) {
        const code = raw[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
        throw new SyntaxError(
          `Cannot parse WeChat XML: U+${code} (a control character) is not a character XML allows`,
        );
      }
      // WeChat's own shape is read in one pass (the parser and its validator were a third of
      // the webhook's time); whatever else arrives gets the full parser and every refusal.
      const plain = fastPath ? scanPlainXml(text) : undefined;
      if (plain !== undefined) return plain;
      if (declaresDoctype(text)) {
        throw new SyntaxError(
          "Cannot parse WeChat XML: DOCTYPE and entity declarations are refused",
        );
      }
      const bad = badCharRef(text);
      if (bad !== null) {
        throw new SyntaxError(`Cannot parse WeChat XML: ${bad} is not a character XML allows`);
      }
      const valid = XMLValidator.validate(text);
      if (valid !== true) {
        throw new SyntaxError(
          `Cannot parse WeChat XML: ${clipped(valid.err.msg)} (line ${valid.err.line})`,
        );
      }
      let doc: unknown;
      try {
        doc = parser.parse(text);
      } catch (error) {
        const detail = error instanceof Error ? error.message.replace(/^\[SECURITY\] /, "") : "";
        throw new SyntaxError(`Cannot parse WeChat XML: ${clipped(detail)}`);
      }
      const root = foldCdata((doc as Record<string, unknown>)["xml"]);
      if (root === undefined || typeof root !== "object" || root === null || Array.isArray(root)) {
        throw new SyntaxError("Cannot parse WeChat XML: expected one <xml> element with fields");
      }
      return root as WechatXml;
    },
  };
}

/**
 * The text of a field, or undefined when absent or not plain text. A field WeChat sends once
 * but a body repeats: the first wins, as in WeChat's own PHP sample (SimpleXML's
 * `$postObj->FromUserName` reads the first), so who sent it and where it goes cannot be
 * changed by a second copy appended later. The follower's text is read by `joinedTextOf`.
 */
export function textOf(xml: WechatXml, tag: string): string | undefined {
  if (!Object.hasOwn(xml, tag)) return undefined;
  const value = xml[tag];
  if (Array.isArray(value)) return value.find((v) => typeof v === "string");
  return typeof value === "string" ? value : undefined;
}

/** Every copy of a text field, joined by a line break: a repeated `<Content>` loses no text. */
export function joinedTextOf(xml: WechatXml, tag: string): string | undefined {
  if (!Object.hasOwn(xml, tag)) return undefined;
  const value = xml[tag];
  if (!Array.isArray(value)) return typeof value === "string" ? value : undefined;
  const texts = value.filter((v): v is string => typeof v === "string");
  return texts.length === 0 ? undefined : texts.join("\n");
}
