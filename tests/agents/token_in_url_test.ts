// An agent's token in a URL ends up in proxy logs, browser history and Referer headers. The
// socket needs it there (a browser cannot set headers on one); every HTTP route takes it only as
// `Authorization: Bearer`, so a token copied into an HTTP URL is refused, not used.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { connectAgent } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SECRET = "token-in-url-test-secret-0123456789abcdefgh";

Deno.test("an agent token is taken from the URL on the socket only", async (t) => {
  const bridge = await startBridge({ env: { AGENT_SECRET: SECRET } });
  const token = await mintAgentToken(SECRET, "dana", 600);
  try {
    await t.step("the socket opens with ?token=", async () => {
      const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=dana&token=${token}`);
      agent.socket.close();
      await agent.closed;
    });
    const routes: [string, string, string?][] = [
      ["GET", "/contacts?userid=dana"],
      ["GET", "/contacts"],
      ["GET", "/history?userid=dana&contact_id=o1"],
      ["GET", "/search?userid=dana&q=hi"],
      ["GET", "/agents?userid=dana"],
      ["GET", "/quick_replies?userid=dana"],
      ["GET", "/media_url?userid=dana&url=x"],
      ["GET", "/demo/replies?userid=dana"],
      ["POST", "/send?userid=dana", '{"data":{"contact_id":"o1","msg":{"content":"hi"}}}'],
    ];
    for (const [method, path, body] of routes) {
      await t.step(`${method} ${path}: 401 with &token=, not with the header`, async () => {
        const joint = path.includes("?") ? "&" : "?";
        const inUrl = await fetch(`${bridge.base}${B}${path}${joint}token=${token}`, {
          method,
          body,
        });
        const text = await inUrl.text();
        assert.equal(inUrl.status, 401, text);
        assert.match(text, /Authorization: Bearer/);
        const inHeader = await fetch(`${bridge.base}${B}${path}`, {
          method,
          body,
          headers: { authorization: `Bearer ${token}` },
        });
        await inHeader.body?.cancel();
        assert.notEqual(inHeader.status, 401, `${method} ${path} with the header`);
      });
      // An upgrade with a body is refused (400) before any route: the GETs are the ones at risk.
      if (body !== undefined) continue;
      await t.step(`${method} ${path}: 401 with &token= and an Upgrade header too`, async () => {
        // The route decides, not the request: an `Upgrade: websocket` header made any route a
        // socket's, and the token in its URL was taken.
        const joint = path.includes("?") ? "&" : "?";
        const res = await fetch(`${bridge.base}${B}${path}${joint}token=${token}`, {
          method,
          headers: { connection: "Upgrade", upgrade: "websocket" },
        });
        const text = await res.text();
        assert.equal(res.status, 401, text);
        assert.match(text, /Authorization: Bearer/);
      });
    }
  } finally {
    await bridge.close();
  }
});
