// A signed URL takes one body, and the same query with the same bytes passes to the retry keys
// ("de-duplicated as always"); but the keys are kept an hour (DEDUP_TTL_MS) and WECHAT_MAX_AGE_S
// took any value: with 7200, a callback captured once (an access log that keeps query strings, a
// TLS proxy) and posted again byte for byte 61 minutes later was a new message, the follower's
// words told the agent twice and their 48 h window and quota started again from the replay. Now
// WECHAT_MAX_AGE_S is at most 1800 s, so that a timestamp as far ahead as allowed, replayed until
// it is as far behind, still finds its key; a larger value stops the start, saying so.

import assert from "node:assert/strict";
import { computeSignature } from "../../src/wechat/signature.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";
import { loadConfig } from "../../src/config.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "replay-token";

Deno.test("WECHAT_MAX_AGE_S past half the retry keys' hour stops the start, saying so", () => {
  assert.throws(
    () => loadConfig({ WECHAT_MAX_AGE_S: "7200" }),
    /Cannot read WECHAT_MAX_AGE_S: expected a whole number from 1 to 1800, got "7200"/,
  );
  assert.equal(loadConfig({ WECHAT_MAX_AGE_S: "1800" }).wechatMaxAgeS, 1800);
});

Deno.test("a callback signed WECHAT_MAX_AGE_S ahead and replayed until it is as far behind is delivered once", async () => {
  let clock = Date.UTC(2026, 0, 5, 2, 0, 0);
  const bridge = await startBridge({
    env: { WECHAT_TOKEN: TOKEN, WECHAT_MAX_AGE_S: "1800" },
    now: () => clock,
  });
  const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=ann`);
  try {
    await waitRouted(bridge, "ann");
    // Signed by a clock 30 minutes ahead: taken, as far ahead as WECHAT_MAX_AGE_S allows.
    const timestamp = String(Math.floor(clock / 1000) + 1800);
    const nonce = "n-replay";
    const query = new URLSearchParams({
      signature: computeSignature(TOKEN, timestamp, nonce),
      timestamp,
      nonce,
      openid: "oReplay",
    });
    const body = textXml("oReplay", "gh_acct", "please refund order 77", "880001", timestamp);
    const url = `${bridge.base}${B}/send_xml?${query}`;
    assert.equal((await post(url, body)).text, "success");
    await agent.waitFor((e) => e.data["id"] === "880001");

    // 59 minutes on its timestamp is 29 minutes behind: still inside WECHAT_MAX_AGE_S.
    clock += 59 * 60_000;
    const replay = await post(url, body);
    assert.equal(`${replay.status} ${replay.text}`, "200 success", "passed to the retry keys");
    // A marker after it, so whatever the replay made has reached the agent.
    const t2 = String(Math.floor(clock / 1000));
    const q2 = new URLSearchParams({
      signature: computeSignature(TOKEN, t2, "n-marker"),
      timestamp: t2,
      nonce: "n-marker",
    });
    await post(
      `${bridge.base}${B}/send_xml?${q2}`,
      textXml("oOther", "gh_acct", "m", "880002", t2),
    );
    await agent.waitFor((e) => e.data["id"] === "880002");
    const copies = agent.messages().filter((e) => e.data["id"] === "880001").length;
    assert.equal(
      copies,
      1,
      `the replay (answered ${replay.status} ${replay.text}) reached the agent as a new message`,
    );
  } finally {
    await agent.close();
    await bridge.close();
  }
});
