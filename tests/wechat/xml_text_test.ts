// Follower text that looks like markup reaches the agent whole, through the real webhook: a
// `<!DOCTYPE` inside CDATA is text, a repeated `<Content>` is joined, while a real DTD (billion
// laughs), also one hidden behind a comment that mentions CDATA, is still refused with 400.

import assert from "node:assert/strict";
import { computeSignature } from "../../src/wechat/signature.ts";
import { connectAgent, post, type TestAgent } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "xml-text-token";
let nonce = 0;

function signed(): string {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const n = `x${++nonce}`;
  return new URLSearchParams({
    signature: computeSignature(TOKEN, timestamp, n),
    timestamp,
    nonce: n,
  }).toString();
}

/** A text message whose `<Content>` elements are given raw (CDATA or not, one or several). */
function xmlWith(from: string, to: string, contents: string, msgId: string): string {
  return `<xml><ToUserName><![CDATA[${to}]]></ToUserName>` +
    `<FromUserName><![CDATA[${from}]]></FromUserName><CreateTime>1700000000</CreateTime>` +
    `<MsgType><![CDATA[text]]></MsgType>${contents}<MsgId>${msgId}</MsgId></xml>`;
}

async function agentOn(server: TestBridge, agentId: string): Promise<TestAgent> {
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=${agentId}`);
  const deadline = Date.now() + 3000;
  while (!(await server.store.isKnownAgent(agentId))) {
    if (Date.now() > deadline) throw new Error(`Agent ${agentId} never came online`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return agent;
}

Deno.test("POST send_xml keeps follower text that looks like markup", async (t) => {
  const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN } });
  const agent = await agentOn(server, "xml-text-agent");
  const send = (xml: string) => post(`${server.base}${B}/send_xml?${signed()}`, xml);
  const contentOf = async (msgId: string) =>
    (await agent.waitFor((e) => e.data["id"] === msgId)).data.msg?.["content"];
  try {
    await t.step("<!DOCTYPE and <!ENTITY inside CDATA are text", async () => {
      const text = 'my page starts <!DOCTYPE html> and has <!ENTITY x "y"> in it';
      const res = await send(
        xmlWith("f-doc", "xml-text-agent", `<Content><![CDATA[${text}]]></Content>`, "4001"),
      );
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, "success");
      assert.equal(await contentOf("4001"), text);
    });
    await t.step("a repeated <Content> arrives joined, nothing lost", async () => {
      const contents = "<Content><![CDATA[first part]]></Content><Content>second part</Content>";
      const res = await send(xmlWith("f-dup", "xml-text-agent", contents, "4002"));
      assert.equal(res.status, 200, res.text);
      assert.equal(await contentOf("4002"), "first part\nsecond part");
    });
    await t.step("a repeated <FromUserName>: the first names the follower", async () => {
      const xml = xmlWith("f-first", "xml-text-agent", "<Content>hi</Content>", "4003")
        .replace("</FromUserName>", "</FromUserName><FromUserName>f-second</FromUserName>");
      const res = await send(xml);
      assert.equal(res.status, 200, res.text);
      const e = await agent.waitFor((e) => e.data["id"] === "4003");
      assert.equal(e.data["contact_id"], "f-first");
    });
    await t.step("a real DOCTYPE after a CDATA section is still 400", async () => {
      const xml = `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>` +
        xmlWith("f-lol", "xml-text-agent", "<Content>&lol;</Content>", "4004");
      const res = await send(xml);
      assert.equal(res.status, 400, res.text);
      assert.match(res.text, /DOCTYPE/);
    });
    await t.step("a DOCTYPE hidden behind a comment that opens CDATA is 400", async () => {
      const xml = `<!-- <![CDATA[ --><!DOCTYPE lolz [<!ENTITY lol "lol">]><!-- ]]> -->` +
        xmlWith("f-hid", "xml-text-agent", "<Content>&lol;</Content>", "4005");
      const res = await send(xml);
      assert.equal(res.status, 400, res.text);
      assert.match(res.text, /DOCTYPE/);
    });
    await t.step("character references outside CDATA arrive as the characters", async () => {
      const contents = "<Content>caf&#233; &#x1F600; &amp;#65; &lt;b&gt;</Content>";
      const res = await send(xmlWith("f-ref", "xml-text-agent", contents, "4007"));
      assert.equal(res.status, 200, res.text);
      assert.equal(await contentOf("4007"), "café 😀 &#65; <b>");
    });
    await t.step("a reference to no character XML allows is 400, not dropped", async () => {
      for (const [ref, id] of [["&#xD83D;&#xDE00;", "4008"], ["&#0;", "4009"]] as const) {
        const res = await send(
          xmlWith("f-bad", "xml-text-agent", `<Content>a${ref}b</Content>`, id),
        );
        assert.equal(res.status, 400, `${ref}: ${res.status} ${res.text}`);
      }
      // Inside CDATA it is text, as written.
      const cdata = "<Content><![CDATA[a&#xD83D;b]]></Content>";
      const res = await send(xmlWith("f-bad", "xml-text-agent", cdata, "4010"));
      assert.equal(res.status, 200, res.text);
      assert.equal(await contentOf("4010"), "a&#xD83D;b");
    });
    await t.step("a raw control character (NUL in CDATA, in a follower id) is 400", async () => {
      // XML allows none of them anywhere, CDATA included: a NUL in a follower id ran into the
      // key the bridge scopes an agent's client_id with.
      const cases = [
        xmlWith("f-nul", "xml-text-agent", "<Content><![CDATA[a\u0000b]]></Content>", "4011"),
        xmlWith("f\u0001x", "xml-text-agent", "<Content>hi</Content>", "4012"),
        xmlWith("f-esc", "xml-text-agent", "<Content>a\u001bb</Content>", "4013"),
      ];
      for (const xml of cases) {
        const res = await send(xml);
        assert.equal(res.status, 400, `${JSON.stringify(xml)}: ${res.status} ${res.text}`);
        assert.match(res.text, /control character/);
      }
      // Tab, line feed and carriage return are text.
      const res = await send(
        xmlWith("f-tab", "xml-text-agent", "<Content>a\tb\nc</Content>", "4014"),
      );
      assert.equal(res.status, 200, res.text);
    });
    await t.step("the server keeps serving", async () => {
      const res = await send(xmlWith("f-after", "xml-text-agent", "<Content>ok</Content>", "4006"));
      assert.equal(res.status, 200, res.text);
      assert.equal(await contentOf("4006"), "ok");
      assert.equal(
        agent.messages().filter((e) => ["4004", "4005"].includes(String(e.data["id"]))).length,
        0,
      );
    });
  } finally {
    await agent.close();
    await server.close();
  }
});
