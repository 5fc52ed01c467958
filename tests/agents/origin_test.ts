// Issue 14, item 15: with ALLOWED_ORIGINS set, a program that sends no Origin (a CRM server, a
// bot) and a valid token is an agent like any other; a wrong Origin is still 403, and no Origin
// is no way around the token.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SECRET = "origin-test-agent-secret-0123456789abcdefgh";

/** The status of a WebSocket handshake sent as a program would, with `headers`. */
async function handshake(url: string, headers: Record<string, string>): Promise<number> {
  const res = await fetch(url, {
    headers: {
      connection: "Upgrade",
      upgrade: "websocket",
      "sec-websocket-key": btoa("origin-test-key!"),
      "sec-websocket-version": "13",
      ...headers,
    },
  });
  await res.body?.cancel();
  return res.status;
}

Deno.test("ALLOWED_ORIGINS refuses wrong origins, not programs that send none", async (t) => {
  const bridge = await startBridge({
    env: { AGENT_SECRET: SECRET, ALLOWED_ORIGINS: "https://console.example.com" },
  });
  const token = await mintAgentToken(SECRET, "crm-bot", 600);
  try {
    await t.step("no Origin and a valid token: the socket opens and gets messages", async () => {
      // Deno's WebSocket, like a server-side client, sends no Origin.
      const agent = await connectAgent(`${bridge.wsBase}${B}/msg?token=${token}`);
      try {
        const res = await post(
          `${bridge.base}${B}/send_xml`,
          textXml("oF9", "crm-bot", "hi", "9201"),
        );
        assert.equal(`${res.status} ${res.text}`, "200 success");
        await agent.waitFor((e) => e.data.msg?.["content"] === "hi");
      } finally {
        await agent.close();
      }
    });

    await t.step("a wrong Origin with the same valid token is 403", async () => {
      const url = `${bridge.base}${B}/msg?token=${token}`;
      assert.equal(await handshake(url, { origin: "https://evil.example.com" }), 403);
    });

    await t.step("a listed Origin with the token is accepted (101)", async () => {
      const url = `${bridge.base}${B}/msg?token=${token}`;
      const status = await handshake(url, { origin: "https://console.example.com" });
      assert.equal(status, 101);
    });

    await t.step("no Origin and no token is 401: the token still decides", async () => {
      assert.equal(await handshake(`${bridge.base}${B}/msg?userid=crm-bot`, {}), 401);
    });
  } finally {
    await bridge.close();
  }
});
