// With ACCOUNTS_FILE and AGENT_SECRET, who serves which account is told only to an agent whose
// token was checked: a stranger guessing userids and account ids got 400/403/404 naming them, on
// HTTP and on the socket's upgrade, where one account answers 401.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { upgradeAnswer } from "../helpers/upgrade.ts";
import { writeAccounts } from "./_accounts_env.ts";

const B = "/im_component/wx_official_account";
const SECRET = "accounts-roster-secret-0123456789abcdef";

async function answer(server: TestBridge, path: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.base}${path}`, { headers });
  return { status: res.status, text: await res.text() };
}

Deno.test("a stranger learns no agent nor account from the multi-account front", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "accounts-roster-" });
  const file = await writeAccounts(dir, [
    { id: "brand-a", original_id: "gh_roster_a", agents: ["alice", "carol"] },
    { id: "brand-b", original_id: "gh_roster_b", agents: ["bob", "carol"] },
  ]);
  const server = await startBridge({ env: { ACCOUNTS_FILE: file, AGENT_SECRET: SECRET } });
  const bearer = async (agent: string) => ({
    authorization: `Bearer ${await mintAgentToken(SECRET, agent, 600)}`,
  });
  try {
    const guesses = [
      "userid=carol",
      "userid=nobody",
      "userid=alice&account=brand-b",
      "userid=alice&account=brand-zzz",
      "account=brand-zzz",
    ];
    await t.step("no token: 401 on HTTP, whatever userid and account it names", async () => {
      for (const query of guesses) {
        const res = await answer(server, `${B}/contacts?${query}`);
        assert.equal(res.status, 401, `${query}: ${res.text}`);
        assert.doesNotMatch(res.text, /brand-|serves|No account/, query);
      }
    });
    await t.step("no token: 401 on the socket's upgrade too", async () => {
      for (const query of guesses) {
        const res = await upgradeAnswer(`${server.base}${B}/msg?${query}`);
        // As one account answers: a socket naming no one is told to say who it is.
        const expected = query.includes("userid=") ? 401 : 400;
        assert.equal(res.status, expected, `${query}: ${res.text}`);
        assert.doesNotMatch(res.text, /brand-|serves|No account/, query);
      }
    });
    await t.step("someone else's token: 401 before the account is chosen", async () => {
      const res = await answer(server, `${B}/contacts?userid=carol`, await bearer("bob"));
      assert.equal(res.status, 401, res.text);
      assert.doesNotMatch(res.text, /brand-/);
    });
    await t.step("an agent whose token was checked is told its own accounts", async () => {
      const both = await answer(server, `${B}/contacts?userid=carol`, await bearer("carol"));
      assert.equal(both.status, 400, both.text);
      assert.match(both.text, /brand-a, brand-b.*account=/);
      const other = await answer(server, `${B}/contacts?account=brand-b`, await bearer("alice"));
      assert.equal(other.status, 403, other.text);
      const own = await answer(server, `${B}/contacts?account=brand-b`, await bearer("carol"));
      assert.equal(own.status, 200, own.text);
    });
    await t.step("the console's page still opens with userid= and account=", async () => {
      const page = await answer(server, "/console?userid=carol&account=brand-b");
      assert.equal(page.status, 200, page.text);
      assert.match(page.text, /<html/i);
    });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
