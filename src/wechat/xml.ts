// WeChat's XML, read safely: refuses DOCTYPE and entity declarations (billion laughs), deep
// nesting, and tag names that could reach Object.prototype, before any value is trusted.
// Every value stays a string: MsgIds exceed 2^53 and `00123` must stay `00123`.

import { XMLParser, XMLValidator } from "fast-xml-parser";

/** A parsed `<xml>` element: each child tag is a string, or a nested element for structured events. */
export interface WechatXml {
  [tag: string]: string | WechatXml | Array<string | WechatXml>;
}

const MAX_DEPTH = 8;
const REPEATED_TAGS = new Set(["item", "List"]);
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

/** Creates a reusable parser; `parse()` throws SyntaxError("Cannot parse WeChat XML: …"). */
export function createXmlReader(): { parse(text: string): WechatXml } {
  const parser = new XMLParser({
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: false,
    ignoreAttributes: true,
    ignoreDeclaration: true,
    ignorePiTags: true,
    processEntities: true,
    htmlEntities: false,
    maxNestedTags: MAX_DEPTH,
    // No callback of ours reads the path: building it as a string per tag cost a third of parsing.
    jPath: false,
    // WeChat's repeated elements (`<item>` in SendPicsInfo and mass-send results, `<List>` in
    // subscribe-message events) are lists even when there is one.
    isArray: (tagName: string) => REPEATED_TAGS.has(tagName),
    // CDATA apart from the text around it: `<EventKey>\n  <![CDATA[x]]>\n</EventKey>` is "x".
    cdataPropName: CDATA,
  });
  return {
    parse(text: string): WechatXml {
      if (FORBIDDEN.test(text)) {
        throw new SyntaxError(
          "Cannot parse WeChat XML: DOCTYPE and entity declarations are refused",
        );
      }
      const valid = XMLValidator.validate(text);
      if (valid !== true) {
        throw new SyntaxError(`Cannot parse WeChat XML: ${valid.err.msg} (line ${valid.err.line})`);
      }
      let doc: unknown;
      try {
        doc = parser.parse(text);
      } catch (error) {
        const detail = error instanceof Error ? error.message.replace(/^\[SECURITY\] /, "") : "";
        throw new SyntaxError(`Cannot parse WeChat XML: ${detail}`);
      }
      const root = foldCdata((doc as Record<string, unknown>)["xml"]);
      if (root === undefined || typeof root !== "object" || root === null || Array.isArray(root)) {
        throw new SyntaxError("Cannot parse WeChat XML: expected one <xml> element with fields");
      }
      return root as WechatXml;
    },
  };
}

/** The text of a field, or undefined when absent or not plain text. */
export function textOf(xml: WechatXml, tag: string): string | undefined {
  if (!Object.hasOwn(xml, tag)) return undefined;
  const value = xml[tag];
  return typeof value === "string" ? value : undefined;
}
