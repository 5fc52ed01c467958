// Issue 14, item 9: a token's `sub` is held to the rule a `userid` is (src/agents/agent_id.ts).
// Before, a signed token with a 3,000-character sub opened a socket, and while that agent was
// online every new follower's message was answered 500.

import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SECRET = "token-sub-test-secret-0123456789abcdefghij";

/** A correctly signed token for any `sub`, as a careless login system could mint. */
function tokenFor(sub: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(SECRET));
}

Deno.test("a signed token whose sub is no valid agent id is refused everywhere", async (t) => {
  const bridge = await startBridge({ env: { AGENT_SECRET: SECRET } });
  try {
    for (
      const [name, sub] of [["3,000 characters", "a".repeat(3000)], ["a slash and spaces", "a b/c"]]
    ) {
      await t.step(`sub of ${name}: no socket (401)`, async () => {
        const token = await tokenFor(sub!);
        const res = await fetch(`${bridge.base}${B}/msg?token=${token}`, {
          headers: {
            connection: "Upgrade",
            upgrade: "websocket",
            "sec-websocket-key": btoa("token-sub-test!!"),
            "sec-websocket-version": "13",
          },
        });
        const text = await res.text();
        assert.equal(res.status, 401, text);
        assert.match(text, /sub must be 1-64 letters/);
      });
      await t.step(`sub of ${name}: no HTTP route either (401)`, async () => {
        const token = await tokenFor(sub!);
        const res = await fetch(`${bridge.base}${B}/contacts`, {
          headers: { authorization: `Bearer ${token}` },
        });
        assert.equal(res.status, 401, await res.text());
      });
    }

    await t.step("followers' messages still reach a valid agent", async () => {
      const agent = await connectAgent(`${bridge.wsBase}${B}/msg?token=${await tokenFor("alice")}`);
      try {
        const res = await post(`${bridge.base}${B}/send_xml`, textXml("oF1", "gh_a", "hi", "9101"));
        assert.equal(`${res.status} ${res.text}`, "200 success");
        await agent.waitFor((e) => e.data.msg?.["content"] === "hi");
      } finally {
        await agent.close();
      }
    });
  } finally {
    await bridge.close();
  }
});

Deno.test("a signed token whose sub is a JSON number is refused, and the store keeps reading", async () => {
  // A company's login system that numbers its employees mints `"sub": 12345`. Taken as the
  // agent's id, a number, it went into the SQLite journal unquoted, which the worker could not
  // read back: every agent's contacts and history were 500 from then on, and the next start
  // dropped that line and every one after it (followers' messages WeChat had its success for).
  const bridge = await startBridge({ env: { AGENT_SECRET: SECRET, STORE: "sqlite" } });
  const numbered = await new SignJWT({ sub: 12345 as unknown as string })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("10m")
    .sign(new TextEncoder().encode(SECRET));
  try {
    const socket = await fetch(`${bridge.base}${B}/msg?token=${numbered}`, {
      headers: {
        connection: "Upgrade",
        upgrade: "websocket",
        "sec-websocket-key": btoa("token-sub-test!!"),
        "sec-websocket-version": "13",
      },
    });
    const text = await socket.text();
    assert.equal(socket.status, 401, text);
    assert.match(text, /sub must be a string/);
    const contacts = await fetch(`${bridge.base}${B}/contacts`, {
      headers: { authorization: `Bearer ${numbered}` },
    });
    assert.equal(contacts.status, 401, await contacts.text());

    const alice = await tokenFor("alice");
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?token=${alice}`);
    try {
      const res = await post(`${bridge.base}${B}/send_xml`, textXml("oF2", "gh_a", "hi", "9102"));
      assert.equal(`${res.status} ${res.text}`, "200 success");
      await agent.waitFor((e) => e.data.msg?.["content"] === "hi");
      const mine = await fetch(`${bridge.base}${B}/contacts`, {
        headers: { authorization: `Bearer ${alice}` },
      });
      const body = await mine.text();
      assert.equal(mine.status, 200, body);
      assert.deepEqual(JSON.parse(body).contacts.map((c: { contact_id: string }) => c.contact_id), [
        "oF2",
      ]);
    } finally {
      await agent.close();
    }
  } finally {
    await bridge.close();
  }
});
