// SPEC: every envelope but the heartbeat carries data.seq. A -1 answering one of the socket's own
// frames (not JSON, no contact_id, a follower another agent serves) carried none; it now carries
// the seq of the last message that socket got, so a reconnect with since= from it loses nothing.

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("a -1 answer to an agent's frame carries data.seq, and since= from it misses nothing", async () => {
  const server = await startBridge();
  const ws = `${server.wsBase}${B}/msg?userid=seqa`;
  let agent = await connectAgent(ws);
  try {
    // Before any message the socket has seen none: seq 0 asks for everything.
    agent.send("not json");
    const first = await agent.waitFor((e) => e.result.code === -1);
    assert.equal(first.data.seq, 0);
    await post(`${server.base}${B}/send_xml`, textXml("oSeq1", "seqa", "一", "8820001"));
    await post(`${server.base}${B}/send_xml`, textXml("oSeq1", "seqa", "二", "8820002"));
    const second = await agent.waitFor((e) => e.data.id === "8820002");
    assert.equal(typeof second.data.seq, "number");
    agent.send("not json either");
    agent.send({ data: { msg_type: "text", msg: { content: "no contact" } } });
    await agent.waitFor((e) => e.result.code === -1 && /contact_id/.test(e.result.message));
    const answers = agent.messages().filter((e) => e.result.code === -1);
    assert.equal(answers.length, 3, JSON.stringify(agent.messages()));
    for (const e of answers.slice(1)) assert.equal(e.data.seq, second.data.seq);
    for (const e of agent.messages()) assert.equal(typeof e.data.seq, "number", JSON.stringify(e));
    // Away, then back with since= the -1's seq: what came meanwhile, and nothing before it.
    await agent.close();
    await post(`${server.base}${B}/send_xml`, textXml("oSeq1", "seqa", "三", "8820003"));
    agent = await connectAgent(`${ws}&since=${answers.at(-1)!.data.seq}`);
    const missed = await agent.waitFor((e) => e.data.id === "8820003");
    assert.deepEqual(agent.messages().map((e) => e.data.id), [missed.data.id]);
  } finally {
    await agent.close();
    await server.close();
  }
});
