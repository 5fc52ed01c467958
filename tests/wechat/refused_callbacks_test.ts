// WeChat's callbacks the bridge refuses: a token changed in WeChat's console but not here, a key
// missing or changed. WeChat drops each message after three refused tries, and main.ts said
// nothing of it: no log line, no metric, /readyz ready. Now each refusal is counted in
// bridge_rejected_total{reason="webhook_<status>"} and said once a minute for each status.

import assert from "node:assert/strict";
import { computeSignature } from "../../src/wechat/signature.ts";
import { textXml } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";

const TOKEN = "refused-callbacks-token";

function signed(path: string, extra = ""): string {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = crypto.randomUUID().slice(0, 8);
  return `${path}?signature=${
    computeSignature(TOKEN, timestamp, nonce)
  }&timestamp=${timestamp}&nonce=${nonce}${extra}`;
}

Deno.test("callbacks WeChat sends that the bridge refuses are counted and logged", async () => {
  const main = await startMain({ WECHAT_TOKEN: TOKEN, LOG_LEVEL: "info" });
  let stderr = "";
  try {
    const xml = textXml("oRefused", "gh_x", "hi", "8500001");
    const statuses: number[] = [];
    const ask = async (url: string, body?: string) => {
      const res = await fetch(
        `${main.base}${url}`,
        body === undefined ? {} : {
          method: "POST",
          body,
        },
      );
      await res.body?.cancel();
      statuses.push(res.status);
    };
    // WeChat's three tries of one message, signed with a token this bridge no longer has.
    for (let i = 0; i < 3; i++) {
      await ask(`/send_xml?signature=${"0".repeat(40)}&timestamp=1&nonce=2`, xml);
    }
    // The URL check from WeChat's console, with the same wrong token.
    await ask(`/send_xml?signature=${"0".repeat(40)}&timestamp=1&nonce=2&echostr=e`);
    // Safe mode switched on in WeChat's console before the key was set here.
    await ask(
      signed("/send_xml", `&encrypt_type=aes&msg_signature=x`),
      `<xml><ToUserName>gh_x</ToUserName><Encrypt>${"A".repeat(64)}</Encrypt></xml>`,
    );
    // A callback signed right is neither counted nor logged.
    await ask(signed("/send_xml"), xml);
    assert.deepEqual(statuses, [401, 401, 401, 401, 400, 200]);

    const metrics = await (await fetch(`${main.base}/metrics`)).text();
    assert.match(metrics, /^bridge_rejected_total\{reason="webhook_401"\} 4$/m);
    assert.match(metrics, /^bridge_rejected_total\{reason="webhook_400"\} 1$/m);
  } finally {
    stderr = await main.stop();
  }
  const refused = stderr.split("\n").filter((line) => line.includes("WeChat callback refused"));
  // One line a status a minute: the four 401s are one line, the 400 another.
  assert.equal(refused.length, 2, stderr);
  assert.match(refused[0]!, /WRN .*refused with 401: Bad signature/);
  assert.match(refused[1]!, /refused with 400: Encrypted message, but WECHAT_AES_KEY/);
});
