// Passive replies on the real server: the auto-reply when no agent can answer, working hours in
// China time, transfer_customer_service, and safe mode, where the answer is encrypted. The XML
// is compared with WxJava's expected output (tests/fixtures/wechat/wxjava/), and wechat-crypto
// decrypts and checks what the bridge encrypted.

import assert from "node:assert/strict";
import WXBizMsgCrypt from "wechat-crypto";
import { computeSignature } from "../../src/wechat/signature.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "passive-token";
const APPID = "wx2c2769f8efd9abc2";
const AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const AWAY = "您好，客服不在线，我们会尽快回复您";

const wxjava = (name: string) =>
  Deno.readTextFile(new URL(`../fixtures/wechat/wxjava/${name}`, import.meta.url));

let n = 8_400_000;
function signed(): string {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = `p${++n}`;
  return `signature=${
    computeSignature(TOKEN, timestamp, nonce)
  }&timestamp=${timestamp}&nonce=${nonce}`;
}

async function write(server: TestBridge, follower: string, content = "在吗") {
  const id = String(++n);
  const res = await post(
    `${server.base}${B}/send_xml?${signed()}`,
    textXml(follower, "gh_account", content, id),
  );
  assert.equal(res.status, 200, res.text);
  return { id, text: res.text };
}

/** WxJava's expected passive text, filled with this reply's names and time. */
async function expectedText(to: string, content: string, text: string) {
  const createTime = /<CreateTime>(\d+)<\/CreateTime>/.exec(text)?.[1] ?? "";
  return (await wxjava("out_text.xml"))
    .replace("[to]", `[${to}]`).replace("[from]", "[gh_account]")
    .replace("1122", createTime).replace("[content]", `[${content}]`);
}

Deno.test("passive replies within WeChat's 5 seconds", async (t) => {
  await t.step(
    "no agent online: the auto-reply, once per follower; the message waits",
    async () => {
      const server = await startBridge({ env: { WECHAT_TOKEN: TOKEN, AUTO_REPLY_TEXT: AWAY } });
      try {
        const first = await write(server, "o-away");
        assert.equal(first.text, await expectedText("o-away", AWAY, first.text));
        const second = await write(server, "o-away");
        assert.equal(second.text, "success", "not twice within the cool-down");
        // Nothing is lost: the agent who comes gets both.
        const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=late`);
        await agent.waitFor((e) => e.data["id"] === second.id);
        assert.ok(agent.messages().some((e) => e.data["id"] === first.id));
        await agent.close();
      } finally {
        await server.close();
      }
    },
  );

  await t.step("agents online: success inside working hours, the auto-reply outside", async () => {
    // 10:00 and 20:00 in China (UTC+8).
    let now = Date.UTC(2026, 10, 2, 2, 0);
    const server = await startBridge({
      env: { WECHAT_TOKEN: TOKEN, AUTO_REPLY_TEXT: AWAY, AUTO_REPLY_HOURS: "09:00-18:00" },
      now: () => now,
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=day`);
    try {
      while (!server.bridge.hub.isOnline("day")) await new Promise((r) => setTimeout(r, 5));
      const day = await write(server, "o-day");
      assert.equal(day.text, "success");
      now = Date.UTC(2026, 10, 2, 12, 0);
      const night = await write(server, "o-night");
      assert.equal(night.text, await expectedText("o-night", AWAY, night.text));
      await agent.waitFor((e) => e.data["id"] === night.id);
    } finally {
      await agent.close();
      await server.close();
    }
  });

  await t.step("transfer_customer_service, as WxJava writes it", async () => {
    const server = await startBridge({
      env: { WECHAT_TOKEN: TOKEN, PASSIVE_TRANSFER_CUSTOMER_SERVICE: "true" },
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=both`);
    try {
      const sent = await write(server, "o-transfer");
      const createTime = /<CreateTime>(\d+)<\/CreateTime>/.exec(sent.text)?.[1] ?? "";
      const expected = (await wxjava("out_transfer_customer_service.xml"))
        .replace("[touser]", "[o-transfer]").replace("[fromuser]", "[gh_account]")
        .replace("1399197672", createTime);
      assert.equal(sent.text, expected);
      // The bridge's agents get the message too.
      await agent.waitFor((e) => e.data["id"] === sent.id);
    } finally {
      await agent.close();
      await server.close();
    }
  });

  await t.step("in safe mode the reply is encrypted, and wechat-crypto reads it", async () => {
    const server = await startBridge({
      env: {
        WECHAT_TOKEN: TOKEN,
        WECHAT_AES_KEY: AES_KEY,
        WECHAT_APPID: APPID,
        AUTO_REPLY_TEXT: AWAY,
      },
    });
    try {
      const cryptor = new WXBizMsgCrypt(TOKEN, AES_KEY, APPID);
      const encrypt = cryptor.encrypt(textXml("o-safe", "gh_account", "在吗", "8499999"));
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonce = "safe1";
      const query = new URLSearchParams({
        signature: computeSignature(TOKEN, timestamp, nonce),
        timestamp,
        nonce,
        encrypt_type: "aes",
        msg_signature: cryptor.getSignature(timestamp, nonce, encrypt),
      });
      const res = await post(
        `${server.base}${B}/send_xml?${query}`,
        `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`,
      );
      assert.equal(res.status, 200, res.text);
      const field = (tag: string) =>
        new RegExp(`<${tag}>(?:<!\\[CDATA\\[)?([^<\\]]*)`).exec(res.text)?.[1] ?? "";
      const ciphertext = field("Encrypt");
      assert.equal(
        field("MsgSignature"),
        cryptor.getSignature(field("TimeStamp"), field("Nonce"), ciphertext),
      );
      const { message, id } = cryptor.decrypt(ciphertext);
      assert.equal(id, APPID);
      assert.equal(message, await expectedText("o-safe", AWAY, message));
    } finally {
      await server.close();
    }
  });

  await t.step(
    "during a key change, the answer is under the key that opened the message",
    async () => {
      const server = await startBridge({
        env: {
          WECHAT_TOKEN: TOKEN,
          WECHAT_AES_KEY: NEW_AES_KEY,
          WECHAT_AES_KEY_PREVIOUS: AES_KEY,
          WECHAT_APPID: APPID,
          PASSIVE_TRANSFER_CUSTOMER_SERVICE: "true",
        },
      });
      try {
        // WeChat encrypts under the old key until the new one is saved in its console, and
        // reads the answer with the key it sent under.
        for (const [follower, key] of [["o-old-key", AES_KEY], ["o-new-key", NEW_AES_KEY]]) {
          const cryptor = new WXBizMsgCrypt(TOKEN, key!, APPID);
          const res = await safePost(
            server,
            cryptor,
            textXml(follower!, "gh_account", "在吗", String(++n)),
          );
          assert.equal(res.status, 200, res.text);
          const ciphertext = fieldOf(res.text, "Encrypt");
          assert.equal(
            fieldOf(res.text, "MsgSignature"),
            cryptor.getSignature(
              fieldOf(res.text, "TimeStamp"),
              fieldOf(res.text, "Nonce"),
              ciphertext,
            ),
          );
          const { message, id } = cryptor.decrypt(ciphertext);
          assert.equal(id, APPID, follower);
          assert.match(message, /<MsgType><!\[CDATA\[transfer_customer_service\]\]><\/MsgType>/);
          assert.match(message, new RegExp(`<ToUserName><!\\[CDATA\\[${follower}\\]\\]>`));
        }
      } finally {
        await server.close();
      }
    },
  );
});

const NEW_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

function fieldOf(xml: string, tag: string): string {
  return new RegExp(`<${tag}>(?:<!\\[CDATA\\[)?([^<\\]]*)`).exec(xml)?.[1] ?? "";
}

/** A safe-mode POST as WeChat makes it, encrypted and signed by wechat-crypto. */
function safePost(server: TestBridge, cryptor: WXBizMsgCrypt, plainXml: string) {
  const encrypt = cryptor.encrypt(plainXml);
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = `k${++n}`;
  const query = new URLSearchParams({
    signature: computeSignature(TOKEN, timestamp, nonce),
    timestamp,
    nonce,
    encrypt_type: "aes",
    msg_signature: cryptor.getSignature(timestamp, nonce, encrypt),
  });
  return post(
    `${server.base}${B}/send_xml?${query}`,
    `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`,
  );
}
