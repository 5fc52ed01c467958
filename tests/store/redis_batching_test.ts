import assert from "node:assert/strict";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { findTestRedis, flushPrefix, uniquePrefix, waitUntil } from "./_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const ignore = REDIS_URL === null;
const B = "/im_component/wx_official_account";
const ACCOUNT = "gh_account";

/** Two bridges as main.ts builds them, on one Redis under a fresh prefix. */
async function withPair(
  name: string,
  fn: (a: TestBridge, b: TestBridge) => Promise<void>,
): Promise<void> {
  const url = REDIS_URL!;
  const prefix = uniquePrefix(name);
  const env = { REDIS_URL: `${url}${url.includes("?") ? "&" : "?"}prefix=${prefix}` };
  const bridges: TestBridge[] = [];
  try {
    bridges.push(await startBridge({ env }), await startBridge({ env }));
    await fn(bridges[0]!, bridges[1]!);
  } finally {
    for (const bridge of bridges) await bridge.close();
    await flushPrefix(url, prefix);
  }
}

function postXml(bridge: TestBridge, from: string, to: string, text: string, msgId: string) {
  return post(`${bridge.base}${B}/send_xml`, textXml(from, to, text, msgId), {
    "content-type": "text/xml",
  });
}

const texts = (agent: TestAgent, from: string) =>
  agent.messages().filter((e) => e.data["contact_id"] === from && e.result.code === 1001);

/** Every envelope once, seqs 1, 2, 3, … with none missing or repeated. */
function assertGapless(received: Received[]): void {
  const seqs = received.map((e) => e.data.seq);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), "seqs are gapless and each comes once");
}

Deno.test({
  name: "webhooks committed in batches through Redis reach each agent once, in order",
  ignore,
  async fn(t) {
    await withPair("batching", async (a, b) => {
      const onA = await connectAgent(`${a.wsBase}${B}/msg?userid=alice`);
      const onB = await connectAgent(`${b.wsBase}${B}/msg?userid=bob`);
      try {
        await t.step("200 concurrent webhooks for one follower: each delivered once", async () => {
          // Half posted to A, where alice is (the commit's own entries), half to B (its batches
          // cross to A on A's channel).
          const n = 200;
          const answers = await Promise.all(
            Array.from(
              { length: n },
              (_, i) => postXml(i % 2 ? a : b, "f1", "alice", `burst ${i}`, String(10_000 + i)),
            ),
          );
          assert.ok(answers.every((r) => r.status === 200 && r.text === "success"));
          await waitUntil(() => texts(onA, "f1").length >= n || undefined, `${n} texts`, 10_000);
          const got = texts(onA, "f1").map((e) => e.data.msg?.["content"]);
          assert.equal(new Set(got).size, n, "no text twice");
          assert.equal(got.length, n);
          assertGapless(onA.messages());
          // The order the agent saw is the order of the conversation as stored.
          const res = await fetch(`${a.base}${B}/history?userid=alice&contact_id=f1&limit=${n}`);
          const history = await res.json() as { messages: Array<{ msg: { content: string } }> };
          assert.deepEqual(history.messages.map((i) => i.msg.content), got);
        });

        await t.step("followers writing one after another keep their order", async () => {
          // Four followers, each waiting for "success" before its next message, all at once:
          // batches mix them, and each one's messages must still arrive as sent.
          const followers = ["g1", "g2", "g3", "g4"];
          const perFollower = 40;
          let id = 20_000;
          await Promise.all(followers.map(async (from, f) => {
            for (let i = 0; i < perFollower; i++) {
              // g1, g2 to alice on A; g3, g4 to bob on B; posted to the other instance.
              const [to, via] = f < 2 ? ["alice", b] : ["bob", a];
              const res = await postXml(via, from, to, `${from} #${i}`, String(id++));
              assert.equal(res.text, "success");
            }
          }));
          for (const [agent, mine] of [[onA, ["g1", "g2"]], [onB, ["g3", "g4"]]] as const) {
            for (const from of mine) {
              await waitUntil(
                () => texts(agent, from).length >= perFollower || undefined,
                `${perFollower} texts from ${from}`,
                10_000,
              );
              assert.deepEqual(
                texts(agent, from).map((e) => e.data.msg?.["content"]),
                Array.from({ length: perFollower }, (_, i) => `${from} #${i}`),
              );
            }
            assertGapless(agent.messages());
          }
        });

        await t.step("a retried MsgId in a later batch is not delivered again", async () => {
          const before = texts(onA, "f1").length;
          const retries = await Promise.all(
            Array.from(
              { length: 20 },
              (_, i) => postXml(a, "f1", "alice", `burst ${i}`, String(10_000 + i)),
            ),
          );
          assert.ok(retries.every((r) => r.text === "success"));
          const res = await postXml(a, "f1", "alice", "after the retries", "30000");
          assert.equal(res.text, "success");
          await onA.waitFor((e) => e.data.msg?.["content"] === "after the retries");
          assert.equal(texts(onA, "f1").length, before + 1);
          assertGapless(onA.messages());
        });

        await t.step(
          "a follower writing to the account waits, then goes to who comes",
          async () => {
            // Routing rule 2 inside a batch: the followers are bound to the online agents.
            const answers = await Promise.all(
              Array.from(
                { length: 10 },
                (_, i) => postXml(a, `h${i}`, ACCOUNT, "hi", String(40_000 + i)),
              ),
            );
            assert.ok(answers.every((r) => r.text === "success"));
            await waitUntil(
              () =>
                [onA, onB].reduce(
                    (n, agent) =>
                      n +
                      agent.messages().filter((e) => /^h\d$/.test(String(e.data["contact_id"])))
                        .length,
                    0,
                  ) >= 10 || undefined,
              "ten followers delivered",
            );
            for (const agent of [onA, onB]) assertGapless(agent.messages());
          },
        );
      } finally {
        await onA.close();
        await onB.close();
      }
    });
  },
});
