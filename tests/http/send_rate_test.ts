// Issue 14, item 11: `POST send` is rate-limited per agent (per client address when the push
// is anonymous), answered 429 with Retry-After; one agent's flood leaves the others alone.
// The bridge's clock is frozen, so no token comes back during the test: exactly the burst passes.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { loadConfig } from "../../src/config.ts";
import { connectAgent } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { A, Bq, writeAccountsFile } from "../accounts/_accounts_env.ts";

const B = "/im_component/wx_official_account";
const SECRET = "send-rate-test-agent-secret-0123456789abcd";
/** SEND_RATE_PER_S's default, and the burst of twice that. */
const BURST = loadConfig({}).sendRatePerS * 2;

function toAgent(to: string, content: string): string {
  return JSON.stringify({
    data: { msg_type: "text", contact_id: to, msg: { content } },
    result: { code: 1001, message: "common" },
  });
}

async function postMany(url: string, n: number, headers: HeadersInit = {}) {
  return await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const res = await fetch(url, { method: "POST", body: toAgent("bob", `m${i}`), headers });
      await res.body?.cancel();
      return { status: res.status, retryAfter: res.headers.get("retry-after") };
    }),
  );
}

Deno.test("POST send: per-agent rate limit, 429 with Retry-After", async (t) => {
  const frozen = Date.now();
  const bridge = await startBridge({ env: { AGENT_SECRET: SECRET }, now: () => frozen });
  const bob = await connectAgent(
    `${bridge.wsBase}${B}/msg?token=${await mintAgentToken(SECRET, "bob", 600)}`,
  );
  try {
    const alice = { authorization: `Bearer ${await mintAgentToken(SECRET, "alice", 600)}` };
    await t.step(
      `alice posts ${BURST + 30} at once: the burst passes`,
      async () => {
        const answers = await postMany(
          `${bridge.base}${B}/send`,
          BURST + 30,
          alice,
        );
        const ok = answers.filter((a) => a.status === 200).length;
        const limited = answers.filter((a) => a.status === 429);
        assert.equal(ok, BURST);
        assert.equal(limited.length, 30);
        for (const a of limited) {
          assert.ok(Number(a.retryAfter) >= 1, `Retry-After ${a.retryAfter}`);
        }
      },
    );
    await t.step("carol is not slowed down by alice", async () => {
      const carol = { authorization: `Bearer ${await mintAgentToken(SECRET, "carol", 600)}` };
      const answers = await postMany(`${bridge.base}${B}/send`, 5, carol);
      assert.deepEqual(
        answers.map((a) => a.status),
        [200, 200, 200, 200, 200],
      );
    });
  } finally {
    await bob.close();
    await bridge.close();
  }
});

for (const guard of ["on", "off"]) {
  Deno.test(`POST send without credentials (open mode): limited per client address (CONNECTION_GUARD=${guard})`, async () => {
    const frozen = Date.now();
    // On "::", clients from ::1 and from 127.0.0.1 are two addresses.
    const bridge = await startBridge({
      now: () => frozen,
      hostname: "::",
      env: { CONNECTION_GUARD: guard },
    });
    const bob = await connectAgent(`${bridge.wsBase}${B}/msg?userid=bob`);
    try {
      const answers = await postMany(`http://[::1]:${bridge.port}/send`, BURST + 10);
      assert.equal(answers.filter((a) => a.status === 200).length, BURST);
      assert.equal(answers.filter((a) => a.status === 429).length, 10);
      const other = await postMany(`http://127.0.0.1:${bridge.port}/send`, 3);
      assert.deepEqual(
        other.map((a) => a.status),
        [200, 200, 200],
        "another address is not slowed",
      );
    } finally {
      await bob.close();
      await bridge.close();
    }
  });
}

Deno.test("POST send without credentials, two accounts (ACCOUNTS_FILE): still limited per client address", async () => {
  const frozen = Date.now();
  const dir = await Deno.makeTempDir({ prefix: "send-rate-accounts-" });
  const fakes = { [A.id]: await startFakeWechat(), [Bq.id]: await startFakeWechat() };
  // The front hands each request to an account's bridge: the address must go along with it.
  const bridge = await startBridge({
    now: () => frozen,
    hostname: "::",
    env: { ACCOUNTS_FILE: await writeAccountsFile(dir, fakes) },
  });
  const bob = await connectAgent(`${bridge.wsBase}${B}/msg?userid=bob`);
  try {
    // The first account does not know the contact (404): only the limit is looked at here.
    const answers = await postMany(`http://[::1]:${bridge.port}/send`, BURST + 10);
    assert.equal(answers.filter((a) => a.status === 429).length, 10);
    const other = await postMany(`http://127.0.0.1:${bridge.port}/send`, 3);
    assert.ok(
      other.every((a) => a.status !== 429),
      `another address is not slowed: ${JSON.stringify(other)}`,
    );
  } finally {
    await bob.close();
    await bridge.close();
    await Promise.all(Object.values(fakes).map((f) => f.close()));
    await Deno.remove(dir, { recursive: true });
  }
});
