// The webhook after the XML fast path: its size check and the names of fields: bodies
// posted to a real bridge over real sockets, and the fast path held to the full parser.
import assert from "node:assert/strict";
import { MAX_MESSAGE_BYTES } from "../../src/protocol/message_size.ts";
import { connectAgent } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

/** Waits until the bridge routes `ToUserName` = agentId to the agent. */
async function waitOnline(
  server: Awaited<ReturnType<typeof startBridge>>,
  agentId: string,
): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!server.bridge.hub.isOnline(agentId) || !(await server.store.isKnownAgent(agentId))) {
    if (Date.now() > deadline) throw new Error(`Agent ${agentId} never came online`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const encoder = new TextEncoder();

/** Plain WeChat XML whose Content is `content` raw bytes (not necessarily UTF-8). */
function xmlBytes(to: string, msgId: string, content: Uint8Array): Uint8Array<ArrayBuffer> {
  const head = encoder.encode(
    `<xml><ToUserName><![CDATA[${to}]]></ToUserName><FromUserName><![CDATA[big-follower]]>` +
      `</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>` +
      `<Content><![CDATA[`,
  );
  const tail = encoder.encode(`]]></Content><MsgId>${msgId}</MsgId></xml>`);
  const out = new Uint8Array(head.length + content.length + tail.length);
  out.set(head);
  out.set(content, head.length);
  out.set(tail, head.length + content.length);
  return out;
}

Deno.test("a plain XML body that decodes past the 24 KiB message cap is 413", async (t) => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=size-agent`);
  try {
    await waitOnline(server, "size-agent");
    // 20,000 bytes that are not UTF-8: each becomes U+FFFD, three bytes, once decoded. The
    // body on the wire is under the cap; the message the bridge would store is 60 KB.
    const body = xmlBytes("size-agent", "7001", new Uint8Array(20_000).fill(0xff));
    assert.ok(body.byteLength < MAX_MESSAGE_BYTES);
    for (const path of [`${B}/send_xml`, `${B}/send`]) {
      await t.step(`POST ${path}`, async () => {
        const res = await fetch(`${server.base}${path}`, { method: "POST", body });
        const text = await res.text();
        assert.equal(
          res.status,
          413,
          `answered ${res.status} ${text}: a message of ` +
            `${
              encoder.encode(new TextDecoder().decode(body)).byteLength
            } bytes of UTF-8 was accepted`,
        );
      });
    }
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("a tag named like an Object.prototype method keeps its snake_case name in msg", async () => {
  // The full parser renames only some of Object.prototype's names (valueOf -> __valueOf); the
  // rest reach snakeCase, whose table of exceptions is a plain object: NAMES["isPrototypeOf"]
  // is Object.prototype.isPrototypeOf, and the field is named after the function's source.
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=proto-agent`);
  try {
    await waitOnline(server, "proto-agent");
    const xml = `<xml><ToUserName>proto-agent</ToUserName><FromUserName>f1</FromUserName>` +
      `<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content><MsgId>7101</MsgId>` +
      `<isPrototypeOf>1</isPrototypeOf><toLocaleString>2</toLocaleString></xml>`;
    const res = await fetch(`${server.base}${B}/send_xml`, { method: "POST", body: xml });
    assert.equal(res.status, 200, await res.text());
    const got = await agent.waitFor((e) => e.data["id"] === "7101");
    assert.deepEqual(Object.keys(got.data.msg ?? {}).sort(), [
      "content",
      "is_prototype_of",
      "msg_id",
      "to_locale_string",
    ]);
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("a refused XML body gets a short answer, however many tags it leaves open", async () => {
  const server = await startBridge();
  try {
    const body = "<xml>" + "<a>".repeat(6000);
    const res = await fetch(`${server.base}${B}/send_xml`, { method: "POST", body });
    const text = await res.text();
    assert.equal(res.status, 400);
    assert.match(text, /Cannot parse WeChat XML/);
    assert.ok(text.length < 1024, `the answer is ${text.length} characters for ${body.length}`);
  } finally {
    await server.close();
  }
});
