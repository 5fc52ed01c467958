import assert from "node:assert/strict";
import { createRedisStore, type RedisStore } from "../../src/store/redis_store.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { findTestRedis, flushPrefix, uniquePrefix, waitUntil } from "./_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const ignore = REDIS_URL === null;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const B = "/im_component/wx_official_account";
const ACCOUNT = "gh_account";

/** A bridge running as its own process: `deno run -A main.ts`. */
interface Instance {
  base: string;
  wsBase: string;
  /** SIGTERM, as an orchestrator stops it; waits for the exit. */
  stop(): Promise<void>;
  /** SIGKILL: no shutdown, no cleanup, as when a machine dies. */
  kill(): Promise<void>;
  output(): Promise<string>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

async function spawnInstance(
  redisUrl: string,
  dataDir: string,
  extraEnv: Record<string, string> = {},
): Promise<Instance> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN],
    env: {
      PORT: String(port),
      HOSTNAME: "127.0.0.1",
      REDIS_URL: redisUrl,
      DATA_DIR: dataDir,
      HEARTBEAT_INTERVAL_S: "1",
      // Whatever the developer's shell has, these instances run open and in demo mode.
      AGENT_SECRET: "",
      WECHAT_TOKEN: "",
      WECHAT_APPID: "",
      WECHAT_SECRET: "",
      WECHAT_AES_KEY: "",
      STORE: "",
      ...extraEnv,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const texts = Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]).then(([out, err]) => out + err);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const base = `http://127.0.0.1:${port}`;
  const ready = async () => {
    if (exited) throw new Error(`The bridge exited at start:\n${await texts}`);
    try {
      const res = await fetch(`${base}/readyz`);
      await res.body?.cancel();
      return res.status === 200 || undefined;
    } catch {
      return undefined;
    }
  };
  try {
    await waitUntil(ready, `the bridge on port ${port}`, 20_000);
  } catch (error) {
    child.kill("SIGKILL");
    await status;
    throw new Error(`${(error as Error).message}\n${await texts}`);
  }
  const end = async (signal: Deno.Signal) => {
    if (!exited) child.kill(signal);
    await status;
    await texts;
  };
  return {
    base,
    wsBase: `ws://127.0.0.1:${port}`,
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
    output: () => texts,
  };
}

/** Two instances and a store that watches the same keys, all removed after `fn`. */
async function withInstances(
  name: string,
  fn: (a: Instance, b: Instance, watcher: RedisStore) => Promise<void>,
  env: Record<string, string> = {},
): Promise<void> {
  const url = REDIS_URL!;
  const prefix = uniquePrefix(name);
  const redisUrl = `${url}${url.includes("?") ? "&" : "?"}prefix=${encodeURIComponent(prefix)}`;
  const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const instances: Instance[] = [];
  let watcher: RedisStore | undefined;
  try {
    instances.push(...await Promise.all(dirs.map((dir) => spawnInstance(redisUrl, dir, env))));
    watcher = await createRedisStore({
      url: redisUrl,
      companyId: "",
      now: Date.now,
      newId: () => crypto.randomUUID(),
      dedupTtlMs: 60_000,
      heartbeatMs: 1000,
    });
    await fn(instances[0]!, instances[1]!, watcher);
  } finally {
    await watcher?.close();
    await Promise.all(instances.map((i) => i.stop()));
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
    await flushPrefix(url, prefix);
  }
}

const agentUrl = (i: Instance, agent: string, since?: number) =>
  `${i.wsBase}${B}/msg?userid=${agent}${since === undefined ? "" : `&since=${since}`}`;

/** Posts a follower's text as WeChat would; the bridge answers "success" once it is stored. */
async function follower(i: Instance, from: string, text: string, msgId: string): Promise<void> {
  const res = await post(`${i.base}${B}/send_xml`, textXml(from, ACCOUNT, text, msgId), {
    "content-type": "text/xml",
  });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
}

const isText = (from: string, text: string) => (e: Received) =>
  e.data["contact_id"] === from && e.data.msg?.["content"] === text;
const isAssigned = (from: string) => (e: Received) =>
  e.result.code === 102 && e.data.msg?.["event"] === "assigned" &&
  e.data.msg?.["follower_id"] === from;

async function contactsOn(i: Instance, agent: string) {
  const res = await fetch(`${i.base}${B}/contacts?userid=${agent}`);
  assert.equal(res.status, 200);
  return await res.json() as {
    contacts: Array<{ contact_id: string; agent_id: string | null }>;
    waiting: Array<{ contact_id: string }>;
  };
}

async function onlineEverywhere(watcher: RedisStore, agents: string[]): Promise<void> {
  const want = [...agents].sort().join(",");
  await waitUntil(
    async () => (await watcher.onlineAgents()).join(",") === want || undefined,
    `online agents ${want}`,
  );
}

Deno.test({
  name: "two bridge instances on one Redis route and deliver as one",
  ignore,
  async fn(t) {
    await withInstances("pair", async (a, b, watcher) => {
      const alice = await connectAgent(agentUrl(a, "alice"));
      const bob = await connectAgent(agentUrl(b, "bob"));
      const agents: TestAgent[] = [alice, bob];
      try {
        await onlineEverywhere(watcher, ["alice", "bob"]);

        await t.step("XML posted to A reaches an agent connected to B", async () => {
          await follower(a, "f1", "hello", "1001");
          await alice.waitFor(isText("f1", "hello"));
          await follower(a, "f2", "hi there", "1002");
          await bob.waitFor(isAssigned("f2"));
          const got = await bob.waitFor(isText("f2", "hi there"));
          assert.equal(got.result.code, 1001);
          assert.equal(got.data["id"], "1002");
        });

        await t.step("a text with | and a line break crosses to B whole", async () => {
          // The channel's framing must not take the text's own characters for separators.
          await follower(a, "f2", "price|qty\n12|3", "1005");
          const got = await bob.waitFor(isText("f2", "price|qty\n12|3"));
          assert.equal(got.data["id"], "1005");
        });

        await t.step("four followers spread two and two across the instances", async () => {
          await follower(b, "f3", "third", "1003");
          await follower(b, "f4", "fourth", "1004");
          await alice.waitFor(isText("f3", "third"));
          await bob.waitFor(isText("f4", "fourth"));
          const assignedTo = (agent: TestAgent) =>
            agent.messages().filter((e) => e.data.msg?.["event"] === "assigned")
              .map((e) => e.data.msg?.["follower_id"]).sort();
          assert.deepEqual(assignedTo(alice), ["f1", "f3"]);
          assert.deepEqual(assignedTo(bob), ["f2", "f4"]);
        });

        await t.step("each stays with its agent whichever instance WeChat calls", async () => {
          const route: Array<[Instance, string, TestAgent]> = [
            [b, "f1", alice],
            [b, "f2", bob],
            [a, "f3", alice],
            [a, "f4", bob],
          ];
          let id = 2000;
          for (const [instance, from, agent] of route) {
            await follower(instance, from, `again from ${from}`, String(++id));
            await agent.waitFor(isText(from, `again from ${from}`));
          }
          // A retry of a message already taken (same MsgId) through the other instance.
          await follower(b, "f1", "hello", "1001");
          // Delivery to one agent keeps order: once the next message is in, so would the retry be.
          await follower(a, "f1", "marker", "2100");
          await alice.waitFor(isText("f1", "marker"));
          const count = (agent: TestAgent, pred: (e: Received) => boolean) =>
            agent.messages().filter(pred).length;
          assert.equal(count(alice, isText("f1", "hello")), 1, "the retry was not delivered again");
          for (const f of ["f2", "f4"]) {
            assert.equal(count(alice, (e) => e.data["contact_id"] === f), 0);
          }
          for (const f of ["f1", "f3"]) {
            assert.equal(count(bob, (e) => e.data["contact_id"] === f), 0);
          }
          for (const agent of agents) {
            const seqs = agent.messages().map((e) => e.data.seq);
            assert.deepEqual(seqs, seqs.map((_, i) => i + 1), "each agent's seqs are dense");
          }
        });

        await t.step("both instances list the same contacts", async () => {
          for (
            const [agent, expected] of [["alice", ["f1", "f3"]], ["bob", ["f2", "f4"]]] as const
          ) {
            const onA = await contactsOn(a, agent);
            const onB = await contactsOn(b, agent);
            // `now` is each instance's own clock at its answer.
            assert.deepEqual({ ...onA, now: 0 }, { ...onB, now: 0 });
            assert.deepEqual(onA.contacts.map((c) => c.contact_id).sort(), expected);
            assert.ok(onA.contacts.every((c) => c.agent_id === agent));
          }
        });

        await t.step("JSON for an agent posted to B reaches it on A", async () => {
          const body = {
            data: { msg_type: "text", contact_id: "alice", msg: { content: "from bob's desk" } },
            result: { code: 1001, message: "common" },
          };
          const res = await post(`${b.base}${B}/send`, JSON.stringify(body), {
            "content-type": "application/json",
          });
          assert.equal(res.status, 200, res.text);
          await alice.waitFor((e) => e.data.msg?.["content"] === "from bob's desk");
        });
      } finally {
        for (const agent of agents) await agent.close();
      }
    });
  },
});

Deno.test({
  name: "when an instance dies its agent reconnects to the other and gets what was queued",
  ignore,
  async fn(t) {
    await withInstances("failover", async (a, b, watcher) => {
      const alice = await connectAgent(agentUrl(a, "alice"));
      let again: TestAgent | undefined;
      try {
        await onlineEverywhere(watcher, ["alice"]);
        let lastSeq = 0;

        await t.step("alice on A serves a follower who writes to B", async () => {
          await follower(b, "f1", "before", "3001");
          const got = await alice.waitFor(isText("f1", "before"));
          lastSeq = got.data.seq!;
        });

        await t.step("A is killed and stops counting within two heartbeats", async () => {
          const killedAt = Date.now();
          await a.kill();
          await alice.closed;
          await onlineEverywhere(watcher, []);
          const gone = Date.now() - killedAt;
          assert.ok(gone < 3500, `alice counted online ${gone} ms after A died`);
        });

        await t.step("messages meanwhile are kept: one in alice's log, one queued", async () => {
          await follower(b, "f1", "while away", "3002");
          await follower(b, "f2", "anyone there?", "3003");
          const listed = await contactsOn(b, "alice");
          assert.deepEqual(listed.waiting.map((c) => c.contact_id), ["f2"]);
        });

        await t.step("alice reconnects to B and gets them in order", async () => {
          again = await connectAgent(agentUrl(b, "alice", lastSeq));
          const got = await again.waitForCount(3);
          assert.ok(isText("f1", "while away")(got[0]!));
          assert.ok(isAssigned("f2")(got[1]!));
          assert.ok(isText("f2", "anyone there?")(got[2]!));
          assert.deepEqual(got.map((e) => e.data.seq), [lastSeq + 1, lastSeq + 2, lastSeq + 3]);
          assert.equal((await contactsOn(b, "alice")).waiting.length, 0);
        });
      } catch (error) {
        throw new Error(`${(error as Error).message}\n--- instance A ---\n${await a.output()}`);
      } finally {
        await alice.close();
        await again?.close();
      }
    });
  },
});

Deno.test({
  name: "two instances on one Redis share one WeChat access token",
  ignore,
  async fn(t) {
    const fake = await startFakeWechat({ appId: "wxshared", secret: "shared-secret" });
    const env = {
      WECHAT_APPID: "wxshared",
      WECHAT_SECRET: "shared-secret",
      WECHAT_API_BASE: fake.url,
    };
    try {
      await withInstances("token", async (a, b, watcher) => {
        const alice = await connectAgent(agentUrl(a, "alice"));
        const bob = await connectAgent(agentUrl(b, "bob"));
        try {
          await onlineEverywhere(watcher, ["alice", "bob"]);
          // Each agent serves one follower; each replies through its own instance.
          await follower(a, "fA", "to alice", "3001");
          await alice.waitFor(isText("fA", "to alice"));
          await follower(a, "fB", "to bob", "3002");
          await bob.waitFor(isText("fB", "to bob"));
          let n = 0;
          const reply = async (i: Instance, agent: string, to: string) => {
            const text = `reply ${++n}`;
            const res = await post(
              `${i.base}${B}/send?userid=${agent}`,
              JSON.stringify({
                data: { contact_id: to, msg_type: "text", msg: { content: text } },
              }),
            );
            assert.equal(res.status, 200, res.text);
            await waitUntil(
              () => fake.sent.some((m) => JSON.stringify(m).includes(text)) || undefined,
              `${text} at WeChat`,
            );
          };

          await t.step("the second instance uses the token the first fetched", async () => {
            await reply(a, "alice", "fA");
            await reply(b, "bob", "fB");
            assert.equal(fake.tokensIssued, 1);
            // B asked WeChat for no token of its own: it read A's from Redis.
            assert.equal(fake.calls.filter((c) => c.path.includes("token")).length, 1);
          });
          await t.step("a forced refresh on one instance does not break the other", async () => {
            // WeChat refuses A's token once: A forces a refresh, which revokes the old token.
            fake.failNext("/cgi-bin/message/custom/send", 40001, "invalid credential", 1);
            await reply(a, "alice", "fA");
            assert.equal(fake.tokensIssued, 2);
            // B picks the new token from Redis: no 40001, no refresh of its own.
            const before = fake.calls.length;
            await reply(b, "bob", "fB");
            const since = fake.calls.slice(before).map((c) => c.path);
            assert.ok(!since.some((p) => p.includes("token")), since.join(", "));
            assert.equal(fake.tokensIssued, 2);
          });
        } finally {
          await alice.close();
          await bob.close();
        }
      }, env);
    } finally {
      await fake.close();
    }
  },
});

Deno.test({
  name:
    "a burst through both instances, the agent replying meanwhile, reaches its socket whole and in order",
  ignore,
  async fn() {
    // Each instance commits its own callbacks and hears the other's through Redis a moment later,
    // and a reply's echo is pushed after its own script: entries reach a socket out of seq order.
    // The hub dropped one below the last seq it had written (and counted it delivered), and an
    // agent reconnecting with since= its highest seq never got it back.
    await withInstances("order", async (a, b, watcher) => {
      const alice = await connectAgent(agentUrl(b, "alice"));
      try {
        await onlineEverywhere(watcher, ["alice"]);
        const followers = Array.from({ length: 10 }, (_, i) => `ford${i}`);
        for (const [i, f] of followers.entries()) await follower(b, f, "start", String(5000 + i));
        const burst: Promise<unknown>[] = [];
        for (let i = 0; i < 300; i++) {
          burst.push(follower(i % 2 ? a : b, followers[i % 10]!, `burst ${i}`, String(6000 + i)));
          if (i % 30 === 0) {
            const reply = {
              data: {
                msg_type: "text",
                contact_id: followers[(i / 30) % 10]!,
                client_id: `order-${i}`,
                msg: { content: `reply ${i}` },
              },
            };
            burst.push(
              post(`${b.base}${B}/send?userid=alice`, JSON.stringify(reply), {
                "content-type": "application/json",
                // Ten within a second or so: at the edge of an agent's rate, which may refuse one.
              }).then((res) => assert.ok([200, 429].includes(res.status), res.text)),
            );
          }
        }
        await Promise.all(burst);
        const isBurst = (e: Received) =>
          typeof e.data.msg?.["content"] === "string" &&
          (e.data.msg["content"] as string).startsWith("burst ");
        await waitUntil(
          () => alice.messages().filter(isBurst).length >= 300 || undefined,
          "every callback answered success on alice's socket",
          20_000,
        ).catch((error) => {
          const got = alice.messages().filter(isBurst).length;
          throw new Error(`${(error as Error).message}: ${got} of 300 arrived live`);
        });
        const live = alice.messages().map((e) => e.data.seq!);
        assert.deepEqual(live, live.map((_, i) => i + 1), "live seqs are dense and in order");
        const replay = await connectAgent(agentUrl(b, "alice", 0));
        try {
          await replay.waitForCount(live.length, 10_000);
          const logged = replay.messages().map((e) => e.data.seq!);
          assert.equal(Math.max(...logged), live.at(-1), "nothing logged after the last live");
        } finally {
          await replay.close();
        }
      } finally {
        await alice.close();
      }
    });
  },
});
