// Agent-to-agent messages say who sent them from the sender's credentials: a sender that writes
// another `name`, `avatar`, `agent_id`, `from` or `id` into its message cannot pass itself off
// as someone else to the receiver, over the socket or over HTTP.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { connectAgent, post, type Received } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SECRET = "agent-to-agent-secret-of-32-bytes!!";

const spoofed = (content: string) => ({
  data: {
    msg_type: "text",
    contact_id: "bob",
    client_id: `c-${content}`,
    msg: { content },
    id: "19",
    name: "系统消息",
    avatar: "https://evil.example/ceo.png",
    agent_id: "ceo",
    from: "ceo",
    direction: "out",
    send_time: 1,
  },
  result: { code: 1001, message: "common" },
});

function assertFromAlice(got: Received, clientId: string): void {
  assert.equal(got.data["name"], "alice");
  assert.equal(got.data["avatar"], "");
  assert.equal(got.data["agent_id"], "alice");
  assert.equal(got.data["from"], "alice");
  assert.notEqual(got.data["id"], "19");
  assert.equal(got.data["direction"], undefined);
  assert.ok(Number(got.data["send_time"]) > 1_700_000_000);
  // The sender's own correlation id still comes through.
  assert.equal(got.data["client_id"], clientId);
}

Deno.test("an agent-to-agent message cannot spoof who sent it", async (t) => {
  const server = await startBridge({ env: { AGENT_SECRET: SECRET } });
  const alice = await mintAgentToken(SECRET, "alice", 600);
  const bobToken = await mintAgentToken(SECRET, "bob", 600);
  const aliceSocket = await connectAgent(`${server.wsBase}${B}/msg?token=${alice}`);
  const bob = await connectAgent(`${server.wsBase}${B}/msg?token=${bobToken}`);
  try {
    const deadline = Date.now() + 3000;
    while (!(await server.store.isKnownAgent("bob"))) {
      if (Date.now() > deadline) throw new Error("bob never came online");
      await new Promise((r) => setTimeout(r, 5));
    }
    await t.step("over the socket", async () => {
      aliceSocket.send(spoofed("by socket"));
      const got = await bob.waitFor((e) => e.data.msg?.["content"] === "by socket");
      assertFromAlice(got, "c-by socket");
    });
    await t.step("over HTTP with a token", async () => {
      const res = await post(`${server.base}${B}/send`, JSON.stringify(spoofed("by http")), {
        authorization: `Bearer ${alice}`,
      });
      assert.equal(res.status, 200, res.text);
      const got = await bob.waitFor((e) => e.data.msg?.["content"] === "by http");
      assertFromAlice(got, "c-by http");
    });
    await t.step("the code follows the type: no fake ack, heartbeat or refusal", async () => {
      for (const [code, content] of [[0, "as ack"], [-1, "as error"], [101, "as beat"]] as const) {
        const body = spoofed(content);
        body.result.code = code;
        aliceSocket.send(body);
        const got = await bob.waitFor((e) => e.data.msg?.["content"] === content);
        assert.equal(got.result.code, 1001, `code ${code} arrived as ${got.result.code}`);
      }
    });
  } finally {
    await aliceSocket.close();
    await bob.close();
    await server.close();
  }
});

Deno.test("an agent's 102 to a colleague is told apart from the bridge's own", async () => {
  // A colleague's frame kept `account` and `result.message` as written: a program acting on a
  // 102's msg.event (a revoke, a claim) could be driven by it, an account and all.
  const server = await startBridge({ env: { AGENT_SECRET: SECRET } });
  const alice = await connectAgent(
    `${server.wsBase}${B}/msg?token=${await mintAgentToken(SECRET, "alice", 600)}`,
  );
  const bob = await connectAgent(
    `${server.wsBase}${B}/msg?token=${await mintAgentToken(SECRET, "bob", 600)}`,
  );
  try {
    while (!(await server.store.isKnownAgent("bob"))) await new Promise((r) => setTimeout(r, 5));
    alice.send({
      data: {
        msg_type: "system",
        contact_id: "bob",
        account: "gh_spoofed",
        msg: { event: "user_authorization_revoke", follower_id: "oVictim" },
      },
      result: { code: 102, message: "spoofed" },
    });
    const got = await bob.waitFor((e) => e.data.msg?.["follower_id"] === "oVictim");
    assert.deepEqual(got.result, { code: 102, message: "common" });
    assert.equal("account" in got.data, false);
    // What tells it from the bridge's own: who sent it, and not system01.
    assert.equal(got.data["from"], "alice");
    assert.equal(got.data["contact_id"], "bob");
    assert.equal(got.data["name"], "alice");
    alice.send({
      data: { msg_type: "text", contact_id: "bob", msg: { content: "as a refusal" } },
      result: { code: 1001, message: "Not sent: spoofed" },
    });
    const text = await bob.waitFor((e) => e.data.msg?.["content"] === "as a refusal");
    assert.deepEqual(text.result, { code: 1001, message: "common" });
  } finally {
    await alice.close();
    await bob.close();
    await server.close();
  }
});

Deno.test("the msg_types agents make up do not grow /metrics", async () => {
  // Each one became a bridge_messages_out_total series, kept for the life of the process: 200
  // frames with long msg_types made /metrics 3.8 MB.
  const server = await startBridge({ env: { AGENT_SECRET: SECRET, SEND_RATE_PER_S: "1000" } });
  const alice = await mintAgentToken(SECRET, "alice", 600);
  const bob = await connectAgent(
    `${server.wsBase}${B}/msg?token=${await mintAgentToken(SECRET, "bob", 600)}`,
  );
  try {
    while (!(await server.store.isKnownAgent("bob"))) await new Promise((r) => setTimeout(r, 5));
    const before = await (await fetch(`${server.base}/metrics`)).text();
    for (let i = 0; i < 200; i++) {
      const body = { data: { msg_type: `t${i}_${"x".repeat(1000)}`, contact_id: "bob", msg: {} } };
      const res = await post(`${server.base}${B}/send`, JSON.stringify(body), {
        authorization: `Bearer ${alice}`,
      });
      assert.equal(res.status, 200, res.text);
    }
    await bob.waitFor((e) => String(e.data.msg_type).startsWith("t199_"));
    const after = await (await fetch(`${server.base}/metrics`)).text();
    const series = after.split("\n").filter((l) => l.startsWith("bridge_messages_out_total"));
    assert.ok(series.length <= 30, `${series.length} series`);
    for (const line of series) {
      assert.match(line, /^bridge_messages_out_total\{msg_type="[a-z_]{1,20}"\} \d+$/);
    }
    assert.ok(after.length < before.length + 2_000, `${before.length} -> ${after.length} bytes`);
    // What the receiver gets is unchanged: the type as its colleague wrote it.
    assert.equal(bob.messages().filter((e) => String(e.data.msg_type).startsWith("t")).length, 200);
  } finally {
    await bob.close();
    await server.close();
  }
});
