// Issue 14, item 16: optional hardening of WeChat's callbacks. By default the bridge does what
// WeChat's samples and SDKs do (signature only); WECHAT_MAX_AGE_S refuses requests signed too
// long ago (a plaintext body is not signed: a captured query could carry any body), and
// WECHAT_REQUIRE_ENCRYPTION refuses plaintext bodies when a safe-mode key is set.

import assert from "node:assert/strict";
import { createWechatCrypto } from "../../src/wechat/crypto.ts";
import { computeSignature } from "../../src/wechat/signature.ts";
import { connectAgent, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "policy-test-token";
const APPID = "wx2c2769f8efd9abc2";
// The same safe-mode key as tests/wechat/webhook_test.ts.
const AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
let nonce = 0;

function signed(ageS: number, extra: Record<string, string> = {}, encrypt?: string) {
  const timestamp = String(Math.floor(Date.now() / 1000) - ageS);
  const n = `p${++nonce}`;
  const query = new URLSearchParams({
    signature: computeSignature(TOKEN, timestamp, n),
    timestamp,
    nonce: n,
    ...extra,
  });
  if (encrypt !== undefined) {
    query.set("msg_signature", computeSignature(TOKEN, timestamp, n, encrypt));
  }
  return query;
}

async function postXml(base: string, query: URLSearchParams, body: string) {
  const res = await fetch(`${base}${B}/send_xml?${query}`, { method: "POST", body });
  return `${res.status} ${await res.text()}`;
}

Deno.test("WECHAT_MAX_AGE_S: a request signed too long ago is refused", async (t) => {
  await t.step("default (as WeChat's SDKs): an hour-old signature is accepted", async () => {
    const bridge = await startBridge({ env: { WECHAT_TOKEN: TOKEN } });
    try {
      const xml = textXml("oOld", "gh_account", "old", "93001");
      assert.equal(await postXml(bridge.base, signed(3600), xml), "200 success");
    } finally {
      await bridge.close();
    }
  });

  const bridge = await startBridge({ env: { WECHAT_TOKEN: TOKEN, WECHAT_MAX_AGE_S: "300" } });
  const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=alice`);
  try {
    await t.step("a replayed signature an hour old is 401, nothing delivered", async () => {
      const xml = textXml("oReplay", "alice", "replayed", "93002");
      const answer = await postXml(bridge.base, signed(3600), xml);
      assert.match(answer, /^401 .*Stale signature/);
      const url = `${bridge.base}${B}/send_xml?${signed(3600, { echostr: "e" })}`;
      assert.equal(await fetch(url).then((r) => r.body?.cancel().then(() => r.status)), 401);
    });
    await t.step("a timestamp far in the future is 401 too", async () => {
      const xml = textXml("oReplay", "alice", "future", "93003");
      assert.match(await postXml(bridge.base, signed(-3600), xml), /^401 /);
    });
    await t.step("a fresh one is delivered", async () => {
      const xml = textXml("oFresh", "alice", "fresh", "93004");
      assert.equal(await postXml(bridge.base, signed(10), xml), "200 success");
      await agent.waitFor((e) => e.data.msg?.["content"] === "fresh");
      assert.equal(agent.messages().some((e) => e.data.msg?.["content"] === "replayed"), false);
    });
  } finally {
    await agent.close();
    await bridge.close();
  }
});

Deno.test("WECHAT_REQUIRE_ENCRYPTION: plaintext refused while safe mode is on", async (t) => {
  const env = { WECHAT_TOKEN: TOKEN, WECHAT_AES_KEY: AES_KEY, WECHAT_APPID: APPID };
  await t.step(
    "default (compatible, as WeChat's SDKs): a signed plaintext body is accepted",
    async () => {
      const bridge = await startBridge({ env });
      try {
        const xml = textXml("oPlain", "gh_account", "plain", "94001");
        assert.equal(await postXml(bridge.base, signed(0), xml), "200 success");
      } finally {
        await bridge.close();
      }
    },
  );

  const bridge = await startBridge({ env: { ...env, WECHAT_REQUIRE_ENCRYPTION: "true" } });
  try {
    await t.step("a signed plaintext body is 401", async () => {
      const xml = textXml("oPlain", "gh_account", "plain", "94002");
      assert.match(await postXml(bridge.base, signed(0), xml), /^401 .*Plaintext message refused/);
    });
    await t.step("an encrypted one is accepted", async () => {
      const encrypt = createWechatCrypto({ aesKey: AES_KEY, appId: APPID }).encrypt(
        textXml("oSafe", "gh_account", "safe", "94003"),
      );
      const body =
        `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`;
      const query = signed(0, { encrypt_type: "aes" }, encrypt);
      assert.match(await postXml(bridge.base, query, body), /^200 /);
    });
  } finally {
    await bridge.close();
  }
});

Deno.test("WECHAT_REQUIRE_ENCRYPTION is read as the other switches, and holds for every account", async (t) => {
  const env = { WECHAT_TOKEN: TOKEN, WECHAT_AES_KEY: AES_KEY, WECHAT_APPID: APPID };
  await t.step("`on` (as CONNECTION_GUARD takes it) turns it on, not stops start-up", async () => {
    for (const value of ["on", "ON", " yes "]) {
      const bridge = await startBridge({ env: { ...env, WECHAT_REQUIRE_ENCRYPTION: value } });
      try {
        const xml = textXml("oPlain", "gh_account", "plain", "94101");
        assert.match(await postXml(bridge.base, signed(0), xml), /^401 /, value);
      } finally {
        await bridge.close();
      }
    }
  });

  await t.step("an account of ACCOUNTS_FILE without aes_key stops start-up", async () => {
    // It took plaintext, answered success, although the switch said plaintext is refused.
    const dir = Deno.makeTempDirSync({ prefix: "require-encryption-" });
    try {
      Deno.writeTextFileSync(
        `${dir}/accounts.json`,
        JSON.stringify({
          accounts: [
            { id: "safe", token: TOKEN, aes_key: AES_KEY, appid: APPID },
            { id: "plain", token: `${TOKEN}plain` },
          ],
        }),
        { mode: 0o600 },
      );
      await assert.rejects(
        startBridge({
          env: { ACCOUNTS_FILE: `${dir}/accounts.json`, WECHAT_REQUIRE_ENCRYPTION: "true" },
        }),
        /WECHAT_REQUIRE_ENCRYPTION.*account plain .*aes_key/,
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  });
});
