// With several accounts, a log line says which account it is about: "decrypted with the previous
// key" or "compatible-mode messages arrive without a key" is a task for one account's operator,
// and without the account the line did not say whose console to open.

import assert from "node:assert/strict";
import { computeSignature } from "../../src/wechat/signature.ts";
import { connectAgent, textXml } from "../helpers/agent.ts";
import { spawnBridge, waitReady } from "../helpers/spawn.ts";
import { A, Bq, encryptedCallback, writeAccounts } from "./_accounts_env.ts";

const PREVIOUS_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const B = "/im_component/wx_official_account/send_xml";

Deno.test("main.ts's log lines name the account they are about (LOG_FORMAT=json)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "accounts-logs-" });
  try {
    const file = await writeAccounts(dir, [
      {
        id: A.id,
        original_id: A.originalId,
        token: A.token,
        aes_key: A.aesKey,
        aes_key_previous: PREVIOUS_KEY,
        appid: A.appId,
      },
      // Token only: safe mode not configured yet.
      { id: Bq.id, original_id: Bq.originalId, token: Bq.token },
    ]);
    const bridge = spawnBridge({
      ACCOUNTS_FILE: file,
      DATA_DIR: `${dir}/data`,
      LOG_FORMAT: "json",
    });
    try {
      await waitReady(bridge);
      // Brand A's message sealed with the key before the last change.
      const sealed = encryptedCallback(A, textXml("oLogA", A.originalId, "旧密钥", "9810001"), {
        ...A,
        aesKey: PREVIOUS_KEY,
      });
      const a = await fetch(`${bridge.base}${B}/${A.id}?${sealed.query}`, {
        method: "POST",
        body: sealed.body,
      });
      assert.equal(await a.text(), "success");
      // Sealed with neither key: refused, naming the account's fields, not WECHAT_*.
      const neither = encryptedCallback(A, textXml("oLogA", A.originalId, "x", "9810009"), {
        ...A,
        aesKey: Bq.aesKey,
      });
      const refused = await fetch(`${bridge.base}${B}/${A.id}?${neither.query}`, {
        method: "POST",
        body: neither.body,
      });
      assert.equal(refused.status, 400);
      assert.match(
        await refused.text(),
        /Cannot decrypt message: .+; with account brand-a's aes_key_previous \(ACCOUNTS_FILE\): /,
      );
      // Brand B's WeChat already sends compatible mode: <Encrypt> beside the plain fields.
      const timestamp = String(Math.floor(Date.now() / 1000));
      const query = new URLSearchParams({
        signature: computeSignature(Bq.token, timestamp, "n1"),
        timestamp,
        nonce: "n1",
        encrypt_type: "aes",
      });
      const plain = textXml("oLogB", Bq.originalId, "兼容模式", "9810002");
      const b = await fetch(`${bridge.base}${B}/${Bq.id}?${query}`, {
        method: "POST",
        body: plain.replace("</xml>", "<Encrypt><![CDATA[c2VhbGVk]]></Encrypt></xml>"),
      });
      assert.equal(b.status, 200, await b.text());
      // Safe mode alone, which brand B cannot read yet: refused, naming what brand B lacks.
      const sealedB = await fetch(`${bridge.base}${B}/${Bq.id}?${query}`, {
        method: "POST",
        body: `<xml><ToUserName>${Bq.originalId}</ToUserName><Encrypt>c2VhbGVk</Encrypt></xml>`,
      });
      assert.equal(sealedB.status, 400);
      assert.match(
        await sealedB.text(),
        /Encrypted message, but account brand-b's aes_key and appid \(ACCOUNTS_FILE\) are not set/,
      );
      // A picture WeChat cannot give (demo mode: no credentials) fails in its media job, after
      // WeChat was answered.
      const image = await fetch(`${bridge.base}${B}/${Bq.id}?${query}`, {
        method: "POST",
        body:
          `<xml><ToUserName>${Bq.originalId}</ToUserName><FromUserName>oLogB</FromUserName><CreateTime>1700000000</CreateTime><MsgType>image</MsgType><MediaId>m1</MediaId><MsgId>9810003</MsgId></xml>`,
      });
      assert.equal(await image.text(), "success");
      // Its envelope comes once the job has run.
      const bob = await connectAgent(
        `${bridge.wsBase}/im_component/wx_official_account/msg?userid=bob&account=${Bq.id}`,
      );
      await bob.waitFor((e) => e.data.id === "9810003", 10_000);
      await bob.close();
    } finally {
      await bridge.stop();
    }
    const { stdout } = await bridge.output;
    const lines = stdout.split("\n").filter((l) => l.startsWith("{")).map((l) =>
      JSON.parse(l) as { message: string; properties: Record<string, unknown> }
    );
    const about = (pattern: RegExp) =>
      lines.filter((l) => pattern.test(l.message)).map((l) => l.properties.account);
    // And names the account's field in ACCOUNTS_FILE, not a WECHAT_* variable it has no use for.
    assert.deepEqual(
      about(/decrypted with account brand-a's aes_key_previous \(ACCOUNTS_FILE\)$/),
      [A.id],
      stdout,
    );
    assert.deepEqual(
      about(
        /^Compatible-mode messages arrive but account brand-b's aes_key and appid \(ACCOUNTS_FILE\) are not set/,
      ),
      [Bq.id],
      stdout,
    );
    assert.deepEqual(about(/WECHAT_/), [], stdout);
    assert.deepEqual(about(/Media not fetched/), [Bq.id], stdout);
    // What is the whole process's is said once, of no account.
    assert.deepEqual(about(/^Bridge listening/), [undefined], stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
