// Issue 14, item 13: a socket does not outlive its token. At `exp` (plus the 5 s of clock
// tolerance the token was checked with) the bridge closes it with 4401, "renew your token";
// a socket whose token is still good stays open.

import assert from "node:assert/strict";
import { CLOSE_TOKEN_EXPIRED } from "../../src/agents/agent_socket.ts";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { connectAgent } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SECRET = "token-expiry-test-secret-0123456789abcdefgh";

Deno.test("a socket is closed with 4401 when its token expires", async () => {
  const bridge = await startBridge({ env: { AGENT_SECRET: SECRET } });
  const short = await connectAgent(
    `${bridge.wsBase}${B}/msg?token=${await mintAgentToken(SECRET, "alice", 1)}`,
  );
  const long = await connectAgent(
    `${bridge.wsBase}${B}/msg?token=${await mintAgentToken(SECRET, "bob", 600)}`,
  );
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("still open 15 s after exp")), 15_000);
    });
    const closed = await Promise.race([short.closed, timeout]).finally(() => clearTimeout(timer));
    assert.equal(closed.code, CLOSE_TOKEN_EXPIRED);
    assert.equal(closed.code, 4401);
    assert.match(closed.reason, /token expired: reconnect with a fresh token/);
    assert.equal(long.socket.readyState, WebSocket.OPEN);
  } finally {
    await long.close();
    await short.close();
    await bridge.close();
  }
});
