// WeChat's XML, read safely: refuses DOCTYPE and entity declarations (billion laughs), deep
// nesting, and tag names that could reach Object.prototype, before any value is trusted.
// Every value stays a string: MsgIds exceed 2^53 and `00123` must stay `00123`.

import { XMLParser, XMLValidator } from "fast-xml-parser";

/** A parsed `<xml>` element: each child tag is a string, or a nested element for structured events. */
export interface WechatXml {
  [tag: string]: string | WechatXml | Array<string | WechatXml>;
}

const MAX_DEPTH = 8;
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
      const root = (doc as Record<string, unknown>)["xml"];
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
