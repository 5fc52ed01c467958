// Safe mode with @wecom/crypto (Tencent's WeCom team's Node implementation, not ours and not
// node-webot's wechat-crypto) as the other side: frames of every pad length both ways, then a
// running bridge that takes what it encrypts and signs, and answers what it opens.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import * as wecom from "@wecom/crypto";
import { createWechatCrypto } from "../../src/wechat/crypto.ts";
import { computeSignature } from "../../src/wechat/signature.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { vectors } from "./_vectors.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "wecom-crypto-token";
const AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const APPID = "wx2c2769f8efd9abc2";

Deno.test("@wecom/crypto and the bridge open each other's frames", async (t) => {
  const ours = createWechatCrypto({ aesKey: AES_KEY, appId: APPID });
  // 20-byte header + message + 18-byte appid: 64 message lengths give every pad from 1 to 32.
  await t.step("every pad length, both ways", () => {
    const pads = new Set<number>();
    for (let n = 0; n < 64; n++) {
      const xml = "x".repeat(n);
      pads.add(32 - ((20 + n + APPID.length) % 32));
      assert.equal(ours.decrypt(wecom.encrypt(AES_KEY, xml, APPID)).xml, xml, `${n} bytes`);
      const opened = wecom.decrypt(AES_KEY, ours.encrypt(xml));
      assert.deepEqual([opened.message, opened.id], [xml, APPID], `${n} bytes`);
    }
    assert.equal(pads.size, 32);
  });
  await t.step("Chinese and emoji across block edges", () => {
    for (let n = 0; n < 40; n++) {
      const xml = "a".repeat(n) + "客服😀回复";
      assert.equal(ours.decrypt(wecom.encrypt(AES_KEY, xml, APPID)).xml, xml);
      assert.equal(wecom.decrypt(AES_KEY, ours.encrypt(xml)).message, xml);
    }
  });
  await t.step("the public vectors' random prefix is what @wecom/crypto reads", () => {
    for (const v of vectors.encrypt) {
      const opened = wecom.decrypt(v.aes_key, v.encrypt);
      assert.equal(opened.message, v.plaintext, v.id);
      assert.equal(Buffer.from(opened.random).toString("utf8"), v.random, v.id);
      const again = wecom.encrypt(v.aes_key, v.plaintext, v.appid, Buffer.from(v.random));
      assert.equal(again, v.encrypt, v.id);
    }
  });
});

let nonce = 0;

/** A safe-mode POST as WeChat makes it, encrypted and signed by @wecom/crypto. */
function safeModePost(
  server: TestBridge,
  plainXml: string,
  options: { aesKey?: string; appId?: string; token?: string } = {},
) {
  const encrypt = wecom.encrypt(options.aesKey ?? AES_KEY, plainXml, options.appId ?? APPID);
  const timestamp = String(Math.floor(Date.now() / 1000));
  const n = `wc${++nonce}`;
  const query = new URLSearchParams({
    signature: computeSignature(TOKEN, timestamp, n),
    timestamp,
    nonce: n,
    encrypt_type: "aes",
    msg_signature: wecom.getSignature(options.token ?? TOKEN, timestamp, n, encrypt),
  });
  return post(
    `${server.base}${B}/send_xml?${query}`,
    `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`,
  );
}

Deno.test("a running bridge in safe mode with @wecom/crypto as WeChat", async (t) => {
  const server = await startBridge({
    env: {
      WECHAT_TOKEN: TOKEN,
      WECHAT_AES_KEY: AES_KEY,
      WECHAT_APPID: APPID,
      AUTO_REPLY_TEXT: "客服不在线，稍后回复您",
    },
  });
  try {
    await t.step("no agent online: the encrypted auto-reply opens and is signed", async () => {
      const res = await safeModePost(server, textXml("o-wecom-1", "gh_account", "在吗？", "8601"));
      assert.equal(res.status, 200, res.text);
      const field = (tag: string) =>
        new RegExp(`<${tag}>(?:<!\\[CDATA\\[)?([^<\\]]*)`).exec(res.text)?.[1] ?? "";
      const encrypt = field("Encrypt");
      assert.equal(
        field("MsgSignature"),
        wecom.getSignature(TOKEN, field("TimeStamp"), field("Nonce"), encrypt),
      );
      const opened = wecom.decrypt(AES_KEY, encrypt);
      assert.equal(opened.id, APPID);
      assert.match(opened.message, /<ToUserName><!\[CDATA\[o-wecom-1\]\]><\/ToUserName>/);
      assert.match(opened.message, /<Content><!\[CDATA\[客服不在线，稍后回复您\]\]><\/Content>/);
    });
    await t.step("an agent online gets the message whole", async () => {
      const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=wecom-agent`);
      try {
        const text = "退货地址是？".repeat(300);
        const res = await safeModePost(server, textXml("o-wecom-1", "gh_account", text, "8602"));
        assert.equal(res.status, 200, res.text);
        const got = await agent.waitFor((e) => e.data["id"] === "8602");
        assert.equal(got.data.msg?.["content"], text);
      } finally {
        await agent.close();
      }
    });
    await t.step("a msg_signature made with another token is 401", async () => {
      const xml = textXml("o-wecom-2", "gh_account", "hi", "8603");
      const res = await safeModePost(server, xml, { token: "another" });
      assert.equal(res.status, 401);
    });
    await t.step("a frame for another appid is 400", async () => {
      const xml = textXml("o-wecom-2", "gh_account", "hi", "8604");
      const res = await safeModePost(server, xml, { appId: "wx0000000000000000" });
      assert.equal(res.status, 400);
    });
  } finally {
    await server.close();
  }
});

Deno.test("chanxuehong/wechat's safe-mode sample, posted as WeChat would, is delivered", async () => {
  const v = vectors.encrypt.find((e) => e.id === "V-X1")!;
  const server = await startBridge({
    env: { WECHAT_TOKEN: TOKEN, WECHAT_AES_KEY: v.aes_key, WECHAT_APPID: v.appid },
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=cx-agent`);
  try {
    const timestamp = "1458889120";
    const query = new URLSearchParams({
      signature: computeSignature(TOKEN, timestamp, "1234"),
      timestamp,
      nonce: "1234",
      encrypt_type: "aes",
      msg_signature: wecom.getSignature(TOKEN, timestamp, "1234", v.encrypt),
    });
    // The body's layout as chanxuehong's server test posts it: indented, one field a line.
    const body = `<xml>\n    <ToUserName><![CDATA[gh_b1eb3f8bd6c6]]></ToUserName>\n` +
      `    <Encrypt><![CDATA[${v.encrypt}]]></Encrypt>\n</xml>`;
    const res = await post(`${server.base}${B}/send_xml?${query}`, body);
    assert.equal(res.text, "success");
    const got = await agent.waitFor((e) => e.data["id"] === "6265881059295447969");
    assert.equal(got.data["contact_id"], "okPEat9FRX96xG8JQvTxHLpzDV64");
    assert.equal(got.data["account"], "gh_b1eb3f8bd6c6");
    assert.equal(got.data["send_time"], 1458889120);
    assert.equal(got.data.msg?.["content"], "test text message");
  } finally {
    await agent.close();
    await server.close();
  }
});
