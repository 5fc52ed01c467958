// A reverse proxy in front of the bridge that asks for a password (nginx's auth_basic) passes the
// browser's `Authorization: Basic …` on to it. With one account the console's page and files
// open so; with ACCOUNTS_FILE the front took any Authorization header for an agent's token and
// answered 401 "Missing agent token" to the page, its scripts and the seed's test page.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startBridge } from "../helpers/server.ts";
import { writeAccounts } from "./_accounts_env.ts";

const B = "/im_component/wx_official_account";
const SECRET = "proxy-basic-auth-secret-0123456789abcdef";
const basic = { authorization: `Basic ${btoa("operator:password")}` };

Deno.test("ACCOUNTS_FILE behind a proxy's password: the pages open, agents still need a token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "proxy-basic-auth-" });
  const file = await writeAccounts(dir, [
    { id: "brand-a", original_id: "gh_basic_a", agents: ["alice", "carol"] },
    { id: "brand-b", original_id: "gh_basic_b", agents: ["bob", "carol"] },
  ]);
  const server = await startBridge({ env: { ACCOUNTS_FILE: file, AGENT_SECRET: SECRET } });
  try {
    for (
      const path of ["/console", "/console?userid=carol&account=brand-b", "/", "/static/console.js"]
    ) {
      const res = await fetch(`${server.base}${path}`, { headers: basic });
      const text = await res.text();
      assert.equal(res.status, 200, `${path}: ${text.slice(0, 200)}`);
    }
    // An agent's route with no Bearer token: 401 as before, naming no one.
    const contacts = await fetch(`${server.base}${B}/contacts?userid=carol`, { headers: basic });
    const text = await contacts.text();
    assert.equal(contacts.status, 401, text);
    assert.doesNotMatch(text, /brand-|serves/);
    const token = await mintAgentToken(SECRET, "carol", 600);
    const own = await fetch(`${server.base}${B}/contacts?account=brand-b`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(own.status, 200, await own.text());
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
