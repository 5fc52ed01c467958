// What the HTTP API answers an agent is one company's conversations: contacts with their last
// message, history, search hits, the team's quick replies, a renewed media URL. None of it said
// how long it may be kept, so a browser's disk cache, or a proxy in front of an open-mode
// bridge (no Authorization header), could keep a customer's messages; each answer says
// `no-store`, refusals too.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("the API's answers about conversations are never kept by a cache", async () => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    const res = await post(
      `${server.base}${B}/send_xml`,
      textXml("oCache", "gh_x", "my address", "8400001"),
    );
    assert.equal(res.text, "success");
    await agent.waitFor((e) => e.data["id"] === "8400001");
    const routes = [
      `${B}/contacts?userid=A`,
      `${B}/history?userid=A&contact_id=oCache`,
      `${B}/search?userid=A&q=address`,
      `${B}/agents?userid=A`,
      `${B}/quick_replies?userid=A`,
      // Refused: the answer still names the follower.
      `${B}/history?userid=B&contact_id=oCache`,
      `/contacts?userid=A`,
    ];
    for (const route of routes) {
      const answer = await fetch(`${server.base}${route}`);
      await answer.body?.cancel();
      assert.equal(answer.headers.get("cache-control"), "no-store", `${route}: ${answer.status}`);
    }
  } finally {
    await agent.close();
    await server.close();
  }
});
