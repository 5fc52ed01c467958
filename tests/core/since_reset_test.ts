// An agent that reconnects with a since= from a store that has since lost its state (a Redis
// or a DATA_DIR back empty, seqs starting again at 1) is shown what the store has now, not
// nothing because every new seq looks older than what it saw.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("a since= beyond the agent's log after the store came back empty", async () => {
  const first = await startBridge();
  const agent = await connectAgent(`${first.wsBase}${B}/msg?userid=SA`);
  let seen = 0;
  try {
    while (!first.bridge.hub.isOnline("SA")) await new Promise((r) => setTimeout(r, 5));
    for (const id of ["71001", "71002", "71003"]) {
      await post(`${first.base}${B}/send_xml`, textXml("fs", "gh_x", id, id));
      seen = (await agent.waitFor((e) => e.data["id"] === id)).data.seq!;
    }
  } finally {
    await agent.close();
    await first.close();
  }
  // A new, empty store: one of the agent's tabs is back first and gets the follower's next
  // message; the other tab comes back with the since= it had.
  const second = await startBridge();
  const tab = await connectAgent(`${second.wsBase}${B}/msg?userid=SA`);
  try {
    while (!second.bridge.hub.isOnline("SA")) await new Promise((r) => setTimeout(r, 5));
    const res = await post(`${second.base}${B}/send_xml`, textXml("fs", "gh_x", "after", "71004"));
    assert.equal(res.text, "success");
    const got = await tab.waitFor((e) => e.data["id"] === "71004");
    assert.ok(got.data.seq! <= seen, "the new store's seqs started again");
    const back = await connectAgent(`${second.wsBase}${B}/msg?userid=SA&since=${seen}`);
    try {
      await back.waitFor((e) => e.data["id"] === "71004");
    } finally {
      await back.close();
    }
  } finally {
    await tab.close();
    await second.close();
  }
});
