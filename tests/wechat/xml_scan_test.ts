// The fast path for WeChat's XML against the full parser it stands in for: on every real
// callback in the fixtures, and on generated documents full of what the fast path must hand
// over (entities, comments, declarations, attributes, CR, deep nesting, truncation).
import assert from "node:assert/strict";
import { createXmlReader, type WechatXml } from "../../src/wechat/xml.ts";
import { scanPlainXml } from "../../src/wechat/xml_scan.ts";
import { seededRandom as random } from "../helpers/seeded_random.ts";

const full = createXmlReader({ fastPath: false });
const fast = createXmlReader();

function outcome(parse: () => WechatXml): { ok: WechatXml } | { error: string } {
  try {
    return { ok: parse() };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

async function fixtureXml(): Promise<Array<[string, string]>> {
  const found: Array<[string, string]> = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".xml")) found.push([path, await Deno.readTextFile(path)]);
    }
  };
  await walk(new URL("../fixtures/wechat", import.meta.url).pathname);
  return found.sort();
}

Deno.test("the fast path reads every real callback in the fixtures as the full parser does", async () => {
  const inbound = (await fixtureXml()).filter(([path]) => !path.includes("/wxjava/out_"));
  assert.ok(inbound.length >= 30, `expected the fixtures' callbacks, found ${inbound.length}`);
  for (const [path, text] of inbound) {
    const scanned = scanPlainXml(text);
    // Real callbacks are the shape the fast path exists for: none may fall back. WeChat writes
    // no <?xml?> declaration; Senparc's tests put one before theirs, which the full parser reads.
    if (text.startsWith("<?xml ")) {
      assert.deepStrictEqual(fast.parse(text), full.parse(text), path);
      continue;
    }
    assert.notEqual(scanned, undefined, `${path} fell back to the full parser`);
    assert.deepStrictEqual(scanned, full.parse(text), path);
  }
});

const NAMES = [
  "ToUserName",
  "Content",
  "item",
  "List",
  "PicList",
  "A",
  "a1",
  "_x",
  "constructor",
  "hasOwnProperty",
  "toString",
  "__proto__",
  "__cdata",
  "prototype",
  "a.b",
  "a-b",
  "a:b",
  "中文",
];
const TEXTS = ["", " ", "\n  ", "\t", "1348831860", "hello", "你好", "x > y", "]]>", "😀", " t "];
const ODD_TEXTS = ["a & b", "&lt;&amp;", "&#65;", "a\r\nb", "\r", "<!DOCTYPE x>", "\u0000"];
const CDATAS = [
  "",
  "x",
  "<b>not a tag</b>",
  "<!DOCTYPE lol>",
  "a\r\nb",
  "]]",
  "&amp;",
  "多行\n文本",
];
const EXTRAS = [
  "<!-- note -->",
  "<?pi x?>",
  '<?xml version="1.0"?>',
  "<!DOCTYPE xml>",
  '<!DOCTYPE x [<!ENTITY a "b">]>',
  "<B/>",
  '<B c="d">1</B>',
  "<B >1</B>",
  "</B>",
  "<",
  "&",
];

function generate(next: () => number): string {
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!;
  const element = (depth: number): string => {
    const name = next() < 0.9 ? pick(NAMES.slice(0, 7)) : pick(NAMES);
    const parts: string[] = [];
    const count = Math.floor(next() * 4);
    for (let k = 0; k < count; k++) {
      const r = next();
      if (r < 0.35) parts.push(next() < 0.9 ? pick(TEXTS) : pick(ODD_TEXTS));
      else if (r < 0.65) parts.push(`<![CDATA[${pick(CDATAS)}]]>`);
      else if (r < 0.97 && depth < 10) parts.push(element(depth + 1));
      else parts.push(pick(EXTRAS));
    }
    const close = next() < 0.99 ? name : pick(NAMES);
    return `<${name}>${parts.join("")}</${close}>`;
  };
  const children: string[] = [];
  const count = 1 + Math.floor(next() * 6);
  for (let k = 0; k < count; k++) children.push(next() < 0.8 ? element(2) : pick(TEXTS));
  let doc = `${next() < 0.1 ? pick(EXTRAS) : ""}${next() < 0.2 ? "\n " : ""}<xml>${
    children.join(next() < 0.5 ? "" : "\n")
  }</xml>${next() < 0.1 ? pick([...TEXTS, ...ODD_TEXTS, ...EXTRAS]) : ""}`;
  if (next() < 0.05) doc = doc.slice(0, Math.floor(next() * doc.length));
  return doc;
}

Deno.test("the fast path gives the full parser's result, or hands the document over", () => {
  const next = random(20261201);
  let scanned = 0;
  for (let n = 0; n < 20_000; n++) {
    const doc = generate(next);
    const reference = outcome(() => full.parse(doc));
    const viaFast = outcome(() => fast.parse(doc));
    assert.deepStrictEqual(viaFast, reference, `document ${n}: ${JSON.stringify(doc)}`);
    if (scanPlainXml(doc) !== undefined) scanned++;
  }
  // Most generated documents are plain: the comparison above exercised the fast path.
  assert.ok(scanned > 4_000, `only ${scanned} of 20,000 took the fast path`);
});
