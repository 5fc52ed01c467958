// The XML fast path held to the full parser on documents the round's own
// generator does not make: a wider alphabet (NUL, NEL, U+2028, BOM, lone surrogates, `]]>`,
// `-->`, `?>`, quotes) inside and between elements, names the full parser renames, whitespace
// around the root, and bodies of loose markup tokens. Results must match key order too: the
// envelope's JSON is built in that order.
import assert from "node:assert/strict";
import { createXmlReader, type WechatXml } from "../../src/wechat/xml.ts";
import { scanPlainXml } from "../../src/wechat/xml_scan.ts";
import { seededRandom as random } from "../helpers/seeded_random.ts";

const full = createXmlReader({ fastPath: false });
const fast = createXmlReader();

function outcome(parse: () => WechatXml): unknown {
  try {
    return { ok: parse() };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

function same(doc: string): boolean {
  const reference = outcome(() => full.parse(doc));
  const viaFast = outcome(() => fast.parse(doc));
  assert.deepStrictEqual(viaFast, reference, JSON.stringify(doc));
  assert.equal(JSON.stringify(viaFast), JSON.stringify(reference), JSON.stringify(doc));
  return scanPlainXml(doc) !== undefined;
}

const NAMES = [
  "A",
  "B",
  "item",
  "List",
  "xml",
  "Content",
  "isPrototypeOf",
  "toString",
  "__toString",
  "_",
];
const TEXTS = ["", " ", "\n", "\t", " x ", "]]>", "]", ">", "\u0000", "\u0085", "\u2028"];
const MORE_TEXTS = ["\ufeff", "\v", "'", '"', "=", "?", "/", "!", "-->", "?>", "中", "\ud83d"];
const CDATAS = ["", "x", "<", "&", "]", "]]", "<![CDATA[", "\n", "<!DOCTYPE a>", "</A>", "\0"];

Deno.test("the fast path matches the full parser on a wider alphabet, key order included", () => {
  const next = random(1717);
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!;
  const texts = [...TEXTS, ...MORE_TEXTS];
  const element = (depth: number): string => {
    const name = pick(NAMES);
    let inner = "";
    const count = Math.floor(next() * 4);
    for (let k = 0; k < count; k++) {
      const r = next();
      if (r < 0.4) inner += pick(texts);
      else if (r < 0.6) inner += `<![CDATA[${pick(CDATAS)}]]>`;
      else if (depth < 8) inner += element(depth + 1);
    }
    return `<${name}>${inner}</${name}>`;
  };
  let scanned = 0;
  for (let n = 0; n < 30_000; n++) {
    let children = "";
    const count = Math.floor(next() * 5);
    for (let k = 0; k < count; k++) children += next() < 0.8 ? element(2) : pick(texts);
    const around = ["", " ", "\n", "\t"];
    if (same(`${pick(around)}<xml>${children}</xml>${pick(around)}`)) scanned++;
  }
  assert.ok(scanned > 5_000, `only ${scanned} documents took the fast path`);
});

const TOKENS = [
  "<",
  ">",
  "/",
  "!",
  "[",
  "]",
  "]]>",
  "<![CDATA[",
  "&",
  ";",
  "amp",
  "\r",
  "\n",
  " ",
  "\u0000",
  "<A>",
  "</A>",
  "<B>",
  "</B>",
  "<item>",
  "</item>",
  "<xml>",
  "</xml>",
  "=",
  '"',
  "?",
  "<!--",
  "-->",
  "<?",
  "?>",
  "#text",
  "__cdata",
  "<!DOCTYPE",
  "<!ENTITY",
  "x",
  ":",
];

Deno.test("the fast path matches the full parser on loose markup tokens", () => {
  const next = random(4242);
  let scanned = 0;
  for (let n = 0; n < 30_000; n++) {
    let body = "";
    const count = 1 + Math.floor(next() * 20);
    for (let k = 0; k < count; k++) body += TOKENS[Math.floor(next() * TOKENS.length)];
    const r = next();
    const doc = r < 0.4 ? `<xml><A>${body}</A></xml>` : r < 0.8 ? `<xml>${body}</xml>` : body;
    if (same(doc)) scanned++;
  }
  assert.ok(scanned > 500, `only ${scanned} documents took the fast path`);
});
