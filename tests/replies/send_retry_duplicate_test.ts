// WeChat's customer-service send (message/custom/send) has no idempotency key: a request WeChat
// took whose answer never came back (the connection reset after WeChat read it, a gateway's 502
// or a timeout after WeChat delivered) may have been delivered, as PROTOCOL.md says of such a
// reply. The API client sends it again anyway, up to 3 more times (withRetry: every fetch
// TypeError, timeout, 5xx or errcode -1 is "transient"), so the follower gets the agent's one
// reply twice or more, each copy counted by WeChat against the 5 of the 48-hour window while
// the bridge counts one (its quota shown to agents drifts, and a later reply meets 45047).
// Expected: a send that may have reached WeChat is not sent again (retry only what surely did
// not leave: a refused connection, a DNS failure, WeChat's "busy"), and its outcome is told as
// unconfirmed, its count kept.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SEND = "/cgi-bin/message/custom/send";

Deno.test("a reply whose answer from WeChat was lost after WeChat took it reaches the follower once", async () => {
  const fake = await startFakeWechat({ appId: "wxdup", secret: "s" });
  let loseNextAnswer = false;
  // Between the bridge and WeChat: the request arrives (WeChat delivers it), its answer does not.
  const lossyFetch: typeof fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    const res = await fetch(input, init);
    if (loseNextAnswer && new URL(url).pathname === SEND) {
      loseNextAnswer = false;
      await res.body?.cancel();
      throw new TypeError("error reading a body from connection: connection reset");
    }
    return res;
  };
  const server = await startBridge({
    env: { WECHAT_APPID: "wxdup", WECHAT_SECRET: "s", WECHAT_API_BASE: fake.url },
    fetch: lossyFetch,
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=qa`);
  try {
    await waitRouted(server, "qa");
    const res = await post(
      `${server.base}${B}/send_xml`,
      textXml("oDup", "gh_acct", "hi", "8830001"),
    );
    assert.equal(res.text, "success");
    await agent.waitFor((e) => e.data["id"] === "8830001");

    loseNextAnswer = true;
    agent.send({
      data: {
        msg_type: "text",
        contact_id: "oDup",
        client_id: "once",
        msg: { content: "your refund is on its way" },
      },
      result: { code: 1001, message: "common" },
    });
    const outcome = await agent.waitFor(
      (e) =>
        (e.result.code === -1 && e.data["client_id"] === "once") ||
        (e.data.msg?.["event"] === "reply_sent" && e.data.msg?.["client_id"] === "once"),
      10_000,
    );
    const copies = fake.sent.filter((m) => m["touser"] === "oDup").length;
    assert.equal(copies, 1, `the follower received the one reply ${copies} times`);
    // The bridge never heard WeChat's answer: neither "sent" nor a failure safe to send again.
    assert.equal(outcome.result.code, -1, JSON.stringify(outcome));
    assert.equal(outcome.data["unconfirmed"], true, JSON.stringify(outcome));
    assert.equal(outcome.data["replies_since_inbound"], undefined, "no count given back");
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});
