// ACCOUNTS_FILE entries that must stop main.ts at start, each with one line naming the file, the
// account and the field, never a secret's value: what two accounts must not share (the id, the
// callback token, an AES key, an AppSecret) and an account's malformed AES key, which was told
// as WECHAT_AES_KEY, a variable the operator had not set.

import assert from "node:assert/strict";
import { spawnBridge, waitReady } from "../helpers/spawn.ts";
import { A, Bq, writeAccounts } from "./_accounts_env.ts";

const a = { id: A.id, token: A.token, aes_key: A.aesKey, appid: A.appId, secret: A.secret };
const b = { id: Bq.id, token: Bq.token, aes_key: Bq.aesKey, appid: Bq.appId, secret: Bq.secret };

/** main.ts's exit code and what it printed, for `entries` as ACCOUNTS_FILE. */
async function start(entries: Record<string, unknown>[]) {
  const dir = await Deno.makeTempDir({ prefix: "accounts-refused-" });
  try {
    const file = await writeAccounts(dir, entries);
    const bridge = spawnBridge({ ACCOUNTS_FILE: file, DATA_DIR: `${dir}/data`, STORE: "" });
    // A file it takes starts a bridge that runs until stopped: once it is ready, it took it.
    const ready = waitReady(bridge).then(() => "started", () => "not ready");
    const outcome = await Promise.race([ready, bridge.status.then(() => "exited")]);
    if (outcome !== "exited") {
      await bridge.stop();
      await bridge.output;
      assert.fail(`the bridge ${outcome === "started" ? "started" : "kept running"}`);
    }
    await ready;
    const status = await bridge.status;
    const { stdout, stderr } = await bridge.output;
    return { file, code: status.code, out: `${stdout}\n${stderr}` };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("main.ts refuses an ACCOUNTS_FILE whose accounts share what must be each one's own", async (t) => {
  const cases: Array<[string, Record<string, unknown>[], RegExp, string[]]> = [
    [
      "an id listed twice: one callback URL for two accounts",
      [a, { ...b, id: A.id }],
      /account brand-a is listed twice \(accounts 1 and 2 of the file\).*send_xml\/brand-a/,
      [],
    ],
    [
      "one token under two accounts: either's callbacks would pass on the other's URL",
      [a, { ...b, token: A.token }],
      /account brand-b: token is account brand-a's as well/,
      [A.token],
    ],
    [
      "one AES key under two accounts",
      [a, { ...b, aes_key: A.aesKey }],
      /account brand-b: aes_key is account brand-a's as well/,
      [A.aesKey],
    ],
    [
      "another account's key kept as the previous one",
      [a, { ...b, aes_key_previous: A.aesKey }],
      /account brand-b: aes_key_previous is account brand-a's as well/,
      [A.aesKey],
    ],
    [
      "one AppSecret under two accounts",
      [a, { ...b, secret: A.secret }],
      /account brand-b: secret is account brand-a's as well/,
      [A.secret],
    ],
    [
      "an account's malformed AES key is named as its field, not as WECHAT_AES_KEY",
      [a, { ...b, aes_key: "tooShortKey" }],
      /account brand-b: aes_key: an EncodingAESKey has exactly 43 characters, this one has 11/,
      ["tooShortKey", "WECHAT_AES_KEY"],
    ],
    [
      "a previous key without a current one, which would be ignored",
      [a, { ...b, aes_key: undefined, aes_key_previous: Bq.aesKey }],
      /account brand-b: aes_key_previous needs the account's aes_key/,
      [Bq.aesKey],
    ],
  ];
  for (const [name, entries, message, absent] of cases) {
    await t.step(name, async () => {
      const { file, code, out } = await start(entries);
      assert.equal(code, 2, out);
      assert.ok(out.includes(`Cannot read ACCOUNTS_FILE ${file}: `), out);
      assert.match(out, message);
      for (const text of absent) assert.ok(!out.includes(text), `${text} in ${out}`);
    });
  }
});
