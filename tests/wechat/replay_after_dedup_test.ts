// WECHAT_MAX_AGE_S bounds how long a captured callback opens (docs/production.md), and a signed
// URL takes one body only: the same query with the same bytes passes, "de-duplicated as
// always". But the retry keys are kept for an hour (DEDUP_TTL_MS) while WECHAT_MAX_AGE_S takes
// any value from 1 up, unchecked: with WECHAT_MAX_AGE_S=7200 (or 86400, for a clock that drifts)
// a callback captured once (an access log that keeps query strings, a TLS proxy) and posted
// again, byte for byte, 61 minutes later is a new message: the agent gets the follower's words a
// second time, and the follower's 48 h window and quota start again from the replay. The same
// holds in safe mode (msg_signature covers the ciphertext, which the replay repeats).
// Expected: inside WECHAT_MAX_AGE_S a byte-identical replay is never delivered twice (keys kept
// as long as a signature opens, or a WECHAT_MAX_AGE_S past the keys' hour refused at start).

import assert from "node:assert/strict";
import { computeSignature } from "../../src/wechat/signature.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "replay-token";

Deno.test("a byte-identical callback replayed inside WECHAT_MAX_AGE_S but after an hour is not delivered again", async () => {
  let clock = Date.UTC(2026, 0, 5, 2, 0, 0);
  const bridge = await startBridge({
    env: { WECHAT_TOKEN: TOKEN, WECHAT_MAX_AGE_S: "7200" },
    now: () => clock,
  });
  const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=ann`);
  try {
    await waitRouted(bridge, "ann");
    const timestamp = String(Math.floor(clock / 1000));
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

    clock += 61 * 60_000; // inside WECHAT_MAX_AGE_S (2 h), past the retry keys' hour
    const replay = await post(url, body);
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
