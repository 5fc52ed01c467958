// WeChat answers a reply seconds after it was sent. Meanwhile the follower revoked its
// authorization (user_authorization_revoke: its history is deleted) and wrote again, and its new
// conversation's history numbers started over: the old reply's outcome was written on the new
// item that took its number; a 45015 to it closed the new conversation's window; and the agent
// was told the outcome in a notice naming the follower, which a later since= replayed. The
// outcome lands only on its own reply, now gone, and closes only the window it counted in; the
// agent is told nothing of it (the revoke's notice already dropped the conversation). As an
// agent over a real socket against the fake WeChat, on every store main.ts can open.

import assert from "node:assert/strict";
import { connectAgent, fullHistory, post, type Received, textXml } from "../helpers/agent.ts";
import { everyStore, revokeXml, SEND, withBridge } from "./_reply_env.ts";

const B = "/im_component/wx_official_account";
const AGENT = "qa";
const stores = await everyStore("late_outcome");

/** A reply's outcome over the socket: its `reply_sent`, or the -1 (a refusal says -1 too). */
const isOutcome = (clientId: string) => (e: Received) =>
  (e.result.code === -1 && e.data["client_id"] === clientId) ||
  (e.data.msg?.["event"] === "reply_sent" && e.data.msg?.["client_id"] === clientId);

/** Whether an envelope is about the reply sent before the forget (client_id "old"). */
const aboutOldReply = (e: Received) => JSON.stringify(e).includes('"client_id":"old"');

/** What WeChat answers the reply sent before the forget: it was sent, or 45015 (window closed). */
const answers = [
  { name: "sent", errcode: null },
  { name: "45015", errcode: 45015 },
] as const;

for (const store of stores) {
  for (const answer of answers) {
    Deno.test(`a reply's outcome after a forget (${answer.name}) leaves the new conversation alone and tells nothing (${store.name})`, async () => {
      await withBridge(
        store,
        { appId: "wxlate", agentId: AGENT },
        async ({ server, fake, agent, gate }) => {
          const writes = async (content: string, id: string) => {
            const res = await post(
              `${server.base}${B}/send_xml`,
              textXml("oLate", "gh", content, id),
            );
            assert.equal(`${res.status} ${res.text}`, "200 success");
            await agent.waitFor((e) => e.data["id"] === id);
          };
          const replies = (clientId: string) =>
            agent.send({
              data: {
                msg_type: "text",
                contact_id: "oLate",
                client_id: clientId,
                msg: { content: clientId },
              },
            });
          await writes("first", "8820001");
          // The reply is number 2, and WeChat has not answered it yet.
          const held = gate.holdNext();
          replies("old");
          await held;
          const revoked = await post(`${server.base}${B}/send_xml`, revokeXml("oLate"));
          assert.equal(revoked.status, 200, revoked.text);
          await writes("again", "8820002");
          await writes("and again", "8820003");

          if (answer.errcode !== null) fake.failNext(SEND, answer.errcode);
          const told = agent.messages().length;
          gate.release();
          // Sent after the old reply's outcome is dealt with (one follower's replies go in order);
          // a window the 45015 closed would refuse it.
          replies("new");
          const outcome = await agent.waitFor(isOutcome("new"), 10_000);
          assert.equal(outcome.data.msg?.["event"], "reply_sent", JSON.stringify(outcome));

          const res = await fetch(`${server.base}${B}/contacts?userid=${AGENT}`);
          const { contacts } = await res.json() as { contacts: Array<Record<string, unknown>> };
          const contact = contacts.find((c) => c["contact_id"] === "oLate");
          assert.equal(contact?.["window_closed"], false, "the new conversation's window is open");
          // The outcome is in the store before its notice is sent; SQLite's tables have it once
          // the history read waits for them.
          const history = await fullHistory(server.base, AGENT, "oLate");
          assert.deepEqual(
            history.map((m) => [
              (m["msg"] as Record<string, unknown>)["content"],
              m["status"] ?? null,
            ]),
            [["again", null], ["and again", null], ["new", "sent"]],
          );

          assert.deepEqual(agent.messages().slice(told).filter(aboutOldReply), [], "told nothing");
          const again = await connectAgent(`${server.wsBase}${B}/msg?userid=${AGENT}&since=0`);
          try {
            await again.waitFor(isOutcome("new"), 10_000);
            assert.deepEqual(again.messages().filter(aboutOldReply), [], "replays nothing");
          } finally {
            await again.close();
          }
        },
      );
    });
  }
}
