// Every agent is shown the followers waiting for one (GET contacts' `waiting`, the `waiting`
// 102 with its preview), and any of them may take one (`claim`, or a reply); `read` already
// let a waiting follower be looked at. Its history answered 403 "served by another agent" to
// all but the agent who last served it: an agent could not read what a follower asked before
// taking it. Now nobody's follower (waiting, or its conversation closed) reads like the agent's
// own; one another agent serves is still 403. Real sockets and HTTP, as agents would.

import assert from "node:assert/strict";
import { post, textXml } from "../helpers/agent.ts";
import { event, startFullTeam } from "../helpers/full_team.ts";

const B = "/im_component/wx_official_account";
const waiting = (follower: string) => event("waiting", follower);

Deno.test("a waiting follower's history is read by any agent before it is taken; a served one's is not", async () => {
  const team = await startFullTeam();
  const { server, bob, command } = team;
  const history = async (as: string, follower: string) => {
    const res = await fetch(`${server.base}${B}/history?userid=${as}&contact_id=${follower}`);
    return { status: res.status, body: await res.json() };
  };
  try {
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
    await team.close();
  }
});
