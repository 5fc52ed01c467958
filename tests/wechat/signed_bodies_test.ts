// In plain mode WeChat's signature covers token, timestamp and nonce, not the body: a callback
// URL seen in a log could carry any body until WECHAT_MAX_AGE_S. WeChat retries a callback with
// the same query and the same bytes (a retried message's four POSTs in one nginx log carry one
// signature, timestamp and nonce, and the same MsgId), so a second, different body under one
// signature is refused, and a byte-identical retry is answered as the dedup path answers it.

import assert from "node:assert/strict";
import { createWechatCrypto } from "../../src/wechat/crypto.ts";
import { computeSignature } from "../../src/wechat/signature.ts";
import { bodyHash, createSignedBodies } from "../../src/wechat/signed_bodies.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "signed-bodies-token";
const ENV = { WECHAT_TOKEN: TOKEN, WECHAT_MAX_AGE_S: "300" };
const REDIS_URL = await findTestRedis();

/** A callback query as WeChat signs it. */
function signedQuery(nonce: string): string {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const signature = computeSignature(TOKEN, timestamp, nonce);
  return new URLSearchParams({ signature, timestamp, nonce, openid: "oReal" }).toString();
}

/** WeChat's callback, a forged body on its URL to `forgeTo`, then WeChat's retry to `retryTo`. */
async function replay(first: TestBridge, forgeTo: TestBridge, retryTo: TestBridge, n: string) {
  const agent = await connectAgent(`${first.wsBase}${B}/msg?userid=ann`);
  try {
    const query = signedQuery(`nonce-${n}`);
    const real = textXml("oReal", "ann", "where is my order?", `71${n}`);
    const forged = textXml("oReal", "ann", "cancel my order", `72${n}`);
    const url = (s: TestBridge) => `${s.base}${B}/send_xml?${query}`;
    assert.equal((await post(url(first), real)).text, "success");
    const res = await post(url(forgeTo), forged);
    assert.equal(res.status, 401, res.text);
    assert.match(res.text, /already used for another body/);
    assert.equal((await post(url(retryTo), real)).text, "success", "WeChat's retry");
    // A marker after them: whatever they sent the agent has arrived.
    const marker = `${s(first)}/send_xml?${signedQuery(`marker-${n}`)}`;
    await post(marker, textXml("oReal", "ann", "marker", `73${n}`));
    await agent.waitFor((e) => e.data["id"] === `73${n}`);
    const texts = agent.messages().filter((e) => e.data["msg_type"] === "text")
      .map((e) => (e.data["msg"] as { content?: string }).content);
    assert.deepEqual(texts, ["where is my order?", "marker"]);
  } finally {
    await agent.close();
  }
}
const s = (bridge: TestBridge) => `${bridge.base}${B}`;

const AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
const APPID = "wx2c2769f8efd9abc2";

/** A safe-mode callback of `encrypt` under the plain signed `plain`: its query and body. */
function sealed(plain: URLSearchParams, encrypt: string) {
  const query = new URLSearchParams(plain);
  query.set("encrypt_type", "aes");
  query.set(
    "msg_signature",
    computeSignature(TOKEN, query.get("timestamp")!, query.get("nonce")!, encrypt),
  );
  const body =
    `<xml><ToUserName><![CDATA[gh_a]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`;
  return { query, body };
}

Deno.test("createSignedBodies() keeps the first body of a signature until it expires", async () => {
  let nowMs = 1_000_000_000_000;
  const bodies = createSignedBodies(() => nowMs);
  const sig = "a".repeat(40);
  const [a, b] = [bodyHash("<xml>a</xml>"), bodyHash("<xml>b</xml>")];
  assert.notEqual(a, b);
  assert.equal(await bodies.first(sig, a, nowMs + 300_000), a);
  assert.equal(await bodies.first(sig, b, nowMs + 300_000), a, "a second body");
  assert.equal(await bodies.first(sig, a, nowMs + 300_000), a, "a retry");
  assert.equal(await bodies.first("b".repeat(40), b, nowMs + 300_000), b, "another signature");
  nowMs += 301_000;
  // Past its expiry the signature is stale (401 before this is asked): forgotten.
  assert.equal(await bodies.first(sig, b, nowMs + 300_000), b);
});

Deno.test("createSignedBodies() forgets what expired before a quiet day too", async () => {
  // A small account: its last callbacks before a weekend with none, then the next one.
  let nowMs = 1_000_000_000_000;
  const bodies = createSignedBodies(() => nowMs);
  const [a, b] = [bodyHash("<xml>a</xml>"), bodyHash("<xml>b</xml>")];
  const sigs = Array.from({ length: 50 }, (_, k) => k.toString(16).padStart(40, "0"));
  for (const sig of sigs) assert.equal(await bodies.first(sig, a, nowMs + 300_000), a);
  nowMs += 2 * 86_400_000;
  // Each was kept once more if it was still there: none may be.
  for (const sig of sigs) assert.equal(await bodies.first(sig, b, nowMs + 300_000), b, sig);
});

Deno.test("a plain callback's signed URL carries one body: WeChat's retry passes, another body is 401", async (t) => {
  await t.step("one bridge", async () => {
    const bridge = await startBridge({ env: ENV });
    try {
      await replay(bridge, bridge, bridge, "1");
    } finally {
      await bridge.close();
    }
  });
  await t.step("a safe-mode URL, less its msg_signature, takes no plain body", async () => {
    const bridge = await startBridge({
      env: { ...ENV, WECHAT_AES_KEY: AES_KEY, WECHAT_APPID: APPID },
    });
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=ann`);
    try {
      const encrypt = createWechatCrypto({ aesKey: AES_KEY, appId: APPID })
        .encrypt(textXml("oReal", "ann", "where is my order?", "7501"));
      const plainQuery = signedQuery("nonce-safe");
      const { query, body } = sealed(new URLSearchParams(plainQuery), encrypt);
      const safe = `${s(bridge)}/send_xml?${query}`;
      assert.equal((await post(safe, body)).text, "success");
      // What WeChat's signature covers is still valid: only the body it first carried tells.
      const res = await post(
        `${s(bridge)}/send_xml?${plainQuery}`,
        textXml("oReal", "ann", "cancel", "7502"),
      );
      assert.equal(res.status, 401, res.text);
      assert.equal((await post(safe, body)).text, "success", "WeChat's retry");
    } finally {
      await agent.close();
      await bridge.close();
    }
  });
  await t.step(
    "a safe-mode body is its msg_signature's: one encrypted anew is not refused",
    async () => {
      const bridge = await startBridge({
        env: { ...ENV, WECHAT_AES_KEY: AES_KEY, WECHAT_APPID: APPID },
      });
      const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=ann`);
      try {
        const crypto = createWechatCrypto({ aesKey: AES_KEY, appId: APPID });
        const plain = new URLSearchParams(signedQuery("nonce-reencrypted"));
        // The same message under the same timestamp and nonce, its ciphertext drawn with another
        // random prefix (as any sender that encrypts per attempt would): msg_signature covers it.
        const callback = (random: string) => {
          const encrypt = crypto.encrypt(textXml("oReal", "ann", "hello", "7601"), random);
          const { query, body } = sealed(plain, encrypt);
          return post(`${s(bridge)}/send_xml?${query}`, body);
        };
        assert.equal((await callback("aaaaaaaaaaaaaaaa")).text, "success");
        const retry = await callback("bbbbbbbbbbbbbbbb");
        assert.equal(retry.status, 200, retry.text);
        assert.equal(retry.text, "success");
        // Its URL less msg_signature still takes no plain body.
        const res = await post(
          `${s(bridge)}/send_xml?${plain}`,
          textXml("oReal", "ann", "cancel", "7602"),
        );
        assert.equal(res.status, 401, res.text);
        await agent.waitFor((e) => e.data["id"] === "7601");
      } finally {
        await agent.close();
        await bridge.close();
      }
    },
  );
  await t.step(
    "compatible mode before the key is set: the plaintext fields are the body",
    async () => {
      const bridge = await startBridge({ env: ENV });
      const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=ann`);
      try {
        const url = `${s(bridge)}/send_xml?${signedQuery("nonce-compat")}&encrypt_type=aes`;
        const fields = (content: string) =>
          textXml("oReal", "ann", content, "7701").replace(/^<xml>/, "").replace(/<\/xml>\s*$/, "");
        // The key is not set here, so nothing reads <Encrypt>: one encrypted anew for the retry
        // carries the same message.
        const body = (content: string, encrypt: string) =>
          `<xml>${fields(content)}<Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`;
        assert.equal((await post(url, body("hello", "Zmlyc3Q="))).text, "success");
        const retry = await post(url, body("hello", "c2Vjb25k"));
        assert.equal(retry.status, 200, retry.text);
        const other = await post(url, body("cancel", "Zmlyc3Q="));
        assert.equal(other.status, 401, other.text);
        await agent.waitFor((e) => e.data["id"] === "7701");
      } finally {
        await agent.close();
        await bridge.close();
      }
    },
  );
  await t.step("without WECHAT_MAX_AGE_S nothing is remembered (no bound on memory)", async () => {
    const bridge = await startBridge({ env: { WECHAT_TOKEN: TOKEN } });
    try {
      const query = signedQuery("nonce-open");
      const url = `${s(bridge)}/send_xml?${query}`;
      assert.equal((await post(url, textXml("oReal", "x", "a", "7401"))).text, "success");
      assert.equal((await post(url, textXml("oReal", "x", "b", "7402"))).text, "success");
    } finally {
      await bridge.close();
    }
  });
  await t.step({
    name: "two instances on one Redis: the forgery and the retry reach the other one",
    ignore: REDIS_URL === null,
    fn: async () => {
      const prefix = uniquePrefix("signed_bodies");
      const env = { ...ENV, REDIS_URL: `${REDIS_URL}?prefix=${prefix}` };
      const one = await startBridge({ env });
      const two = await startBridge({ env });
      try {
        await replay(one, two, two, "2");
      } finally {
        await one.close();
        await two.close();
        await flushPrefix(REDIS_URL!, prefix);
      }
    },
  });
});
