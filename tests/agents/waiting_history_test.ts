// Every agent is shown the followers waiting for one (GET contacts' `waiting`, the `waiting`
// 102 with its preview), and any of them may take one (`claim`, or a reply); `read` already
// let a waiting follower be looked at. Its history answered 403 "served by another agent" to
// all but the agent who last served it: an agent could not read what a follower asked before
// taking it. Now nobody's follower (waiting, or its conversation closed) reads like the agent's
// own; one another agent serves is still 403. Real sockets and HTTP, as agents would.

import assert from "node:assert/strict";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const waiting = (follower: string) => (e: Received) =>
  e.result.code === 102 && e.data.msg?.["event"] === "waiting" &&
  e.data.msg?.["follower_id"] === follower;

Deno.test("a waiting follower's history is read by any agent before it is taken; a served one's is not", async () => {
  const server = await startBridge();
  const alice = await connectAgent(`${server.wsBase}${B}/msg?userid=alice`);
  const bob = await connectAgent(`${server.wsBase}${B}/msg?userid=bob`);
  const command = async (as: string, data: Record<string, unknown>) => {
    const res = await fetch(`${server.base}${B}/send?userid=${as}`, {
      method: "POST",
      body: JSON.stringify({ data }),
    });
    return { status: res.status, body: await res.json() };
  };
  const history = async (as: string, follower: string) => {
    const res = await fetch(`${server.base}${B}/history?userid=${as}&contact_id=${follower}`);
    return { status: res.status, body: await res.json() };
  };
  try {
    for (const as of ["alice", "bob"]) {
      assert.equal((await command(as, { msg_type: "capacity", msg: { max: 0 } })).status, 200);
    }
    const now = String(Math.floor(Date.now() / 1000));
    await post(`${server.base}${B}/send_xml`, textXml("oAsk", "gh", "退货怎么办", "7200001", now));
    await bob.waitFor(waiting("oAsk"));

    const seen = await history("bob", "oAsk");
    assert.equal(seen.status, 200, JSON.stringify(seen.body));
    assert.deepEqual(
      seen.body.messages.map((m: { msg: { content?: string } }) => m.msg.content),
      ["退货怎么办"],
    );

    // Taken by alice: hers now, and bob is refused as before.
    assert.equal((await command("alice", { msg_type: "claim", contact_id: "oAsk" })).status, 200);
    assert.equal((await history("alice", "oAsk")).status, 200);
    const refused = await history("bob", "oAsk");
    assert.equal(refused.status, 403, JSON.stringify(refused.body));
  } finally {
    await alice.close();
    await bob.close();
    await server.close();
  }
});
