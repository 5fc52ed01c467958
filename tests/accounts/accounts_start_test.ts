// What main.ts tells the operator at start about ACCOUNTS_FILE: an account that cannot reply
// through WeChat (no secret: demo mode beside real accounts), and data under DATA_DIR of an
// account the file no longer lists. Both were silent: replies answered "sent" and went nowhere,
// a removed account's waiting followers stayed unserved.

import assert from "node:assert/strict";
import { spawnBridge, waitReady } from "../helpers/spawn.ts";
import { A, Bq, writeAccounts } from "./_accounts_env.ts";

Deno.test("main.ts warns of an account without its secret and of an account's data no account serves", async () => {
  const dir = await Deno.makeTempDir({ prefix: "accounts-start-" });
  try {
    const file = await writeAccounts(dir, [
      // Its WeChat is never called at start: no API is reached before a reply.
      { id: A.id, token: A.token, appid: A.appId, secret: A.secret },
      // The secret forgotten: callbacks are read, replies go to the demo outbox.
      { id: Bq.id, token: Bq.token, aes_key: Bq.aesKey, appid: Bq.appId },
    ]);
    // A third account served before, then taken out of the file.
    await Deno.mkdir(`${dir}/data/accounts/brand-gone`, { recursive: true });
    const bridge = spawnBridge({ ACCOUNTS_FILE: file, DATA_DIR: `${dir}/data`, STORE: "" });
    await waitReady(bridge);
    await bridge.stop();
    const { stdout, stderr } = await bridge.output;
    const lines = `${stdout}\n${stderr}`.split("\n");
    const warned = (pattern: RegExp) => lines.filter((l) => / WRN /.test(l) && pattern.test(l));
    assert.equal(warned(/Account brand-b lacks its appid or secret: demo mode/).length, 1, stdout);
    assert.deepEqual(warned(/Account brand-a lacks/), []);
    assert.equal(
      warned(/accounts\/brand-gone is of account brand-gone, which ACCOUNTS_FILE no longer/).length,
      1,
      stdout,
    );
    assert.deepEqual(warned(/is of account brand-(a|b),/), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
