// Redis batching, as an outside review attacked it: an instance gets other instances' entries on its own
// channel only while Redis lists its agents in its online set, so whatever rebuilds that set
// must also make the instance read what it missed. Then what held: Redis killed mid-batch and
// restarted (with its data, and empty), an agent hopping between bridges under traffic.

import assert from "node:assert/strict";
import type { Envelope } from "../../src/protocol/envelope.ts";
import { createRedisStore, type RedisStoreOptions } from "../../src/store/redis_store.ts";
import type { LogEntry, Presence } from "../../src/core/store.ts";
import { findTestRedis, flushPrefix, uniquePrefix, waitUntil } from "./_redis_test_env.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";

const REDIS_URL = await findTestRedis();
const ignore = REDIS_URL === null;
const url = REDIS_URL ?? "";

let counter = 0;
function openRedis(prefix: string, overrides: Partial<RedisStoreOptions> = {}) {
  return createRedisStore({
    url,
    prefix,
    companyId: "acme",
    now: Date.now,
    newId: () => `id${++counter}`,
    dedupTtlMs: 3600_000,
    heartbeatMs: 60_000,
    ...overrides,
  });
}

function presenceOf(...agents: string[]): Presence {
  const set = new Set(agents);
  return { isOnline: (id) => set.has(id), onlineAgents: () => set };
}

function envelope(content: string, id: string): Envelope {
  return {
    data: {
      id,
      name: "a2",
      avatar: "",
      msg_type: "text",
      contact_id: "a2",
      company_id: "acme",
      send_time: 1_700_000_000,
      msg: { content },
    },
    result: { code: 1001, message: "common" },
  };
}

/** Blocks this process's event loop, as a long GC pause or a CPU-starved container does. */
function stall(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* stalled */ }
}

Deno.test({
  name:
    "an entry committed while an instance's presence lapsed reaches it when an agent connects first",
  ignore,
  async fn() {
    const prefix = uniquePrefix("lapse");
    // A's presence lives 300 ms; B's is long, so B keeps publishing to whoever Redis lists.
    const a = await openRedis(prefix, { heartbeatMs: 150 });
    const b = await openRedis(prefix);
    const gotA: LogEntry[] = [];
    a.onRemoteEntries((entries) => gotA.push(...entries));
    try {
      await a.agentOnline("y", presenceOf("y"));
      // A stalls past its presence TTL: Redis forgets instance:A and online:A.
      stall(600);
      // Before any of A's timers run: B commits for y (A is not listed, so no publication),
      // and another agent's socket on A comes online (which writes A's presence again).
      const committed = b.appendToAgents([{ agentId: "y", envelope: envelope("psst", "x1") }]);
      const online = a.agentOnline("x", presenceOf("x", "y"));
      await Promise.all([committed, online]);
      // A's heartbeat then finds its presence there and reads nothing from the log; y's entry
      // must still reach A's sockets (nothing else is committed for y to reveal the gap).
      await waitUntil(
        () => gotA.find((e) => e.envelope.data.id === "x1"),
        "y's entry committed during the lapse, on A",
        3000,
      );
    } finally {
      await a.close();
      await b.close();
      await flushPrefix(url, prefix);
    }
  },
});

// ---- Real bridges: a Redis of the test's own killed and restarted, agents moving. ----

const B = "/im_component/wx_official_account";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** A redis-server of the test's own (append-only, fsync always), which it can kill -9. */
async function ownRedis(dir: string, persist = true) {
  const port = freePort();
  let child: Deno.ChildProcess;
  const start = async () => {
    child = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        persist ? "yes" : "no",
        "--appendfsync",
        "always",
        "--dir",
        dir,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitUntil(
      async () => {
        try {
          const c = await Deno.connect({ hostname: "127.0.0.1", port });
          c.close();
          return true;
        } catch {
          return undefined;
        }
      },
      "redis-server up",
      5000,
    );
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    async restart() {
      child.kill("SIGKILL");
      await child.status;
      await start();
    },
    async stop() {
      child.kill("SIGKILL");
      await child.status;
    },
  };
}

const textsFrom = (agent: TestAgent, from: string) =>
  agent.messages().filter((e) => e.data["contact_id"] === from && e.result.code === 1001)
    .map((e) => String(e.data.msg?.["content"]));

function seqsOf(received: Received[]): number[] {
  return received.map((e) => e.data.seq ?? 0);
}

Deno.test({
  name:
    "a Redis killed and restarted mid-traffic: every answered message reaches its agent once, in order",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    const redis = await ownRedis(dir);
    const env = { REDIS_URL: `${redis.url}?prefix=restart:`, HEARTBEAT_INTERVAL_S: "1" };
    const bridges: TestBridge[] = [];
    const agents: TestAgent[] = [];
    try {
      bridges.push(await startBridge({ env }), await startBridge({ env }));
      const [a, b] = bridges as [TestBridge, TestBridge];
      const onA = await connectAgent(`${a.wsBase}${B}/msg?userid=alice`);
      const onB = await connectAgent(`${b.wsBase}${B}/msg?userid=bob`);
      agents.push(onA, onB);
      const per = 40;
      let id = 50_000;
      const answered = new Map<string, string[]>();
      await Promise.all(["g1", "g2", "g3", "g4"].map(async (from, f) => {
        const [to, via] = f < 2 ? ["alice", b] : ["bob", a];
        const mine: string[] = [];
        answered.set(from, mine);
        for (let i = 0; i < per; i++) {
          const text = `${from} #${i}`;
          const msgId = String(id++);
          // WeChat retries a message not answered "success" with the same MsgId.
          for (let attempt = 0;; attempt++) {
            if (f === 0 && i % 10 === 5 && attempt === 0) {
              // Mid-batch: a flood of other followers' messages is in flight as Redis dies.
              const flood = Array.from(
                { length: 50 },
                (_, j) =>
                  post(
                    `${(j % 2 ? a : b).base}${B}/send_xml`,
                    textXml(
                      `h${j}`,
                      "alice",
                      `h ${90_000 + i * 100 + j}`,
                      String(90_000 + i * 100 + j),
                    ),
                    {
                      "content-type": "text/xml",
                    },
                  ).catch(() => null),
              );
              await new Promise((r) => setTimeout(r, 5));
              await redis.restart();
              await Promise.all(flood);
            }
            const res = await post(`${via.base}${B}/send_xml`, textXml(from, to, text, msgId), {
              "content-type": "text/xml",
            }).catch(() => ({ status: 0, text: "" }));
            if (res.status === 200 && res.text === "success") break;
            assert.ok(attempt < 200, `${text} never answered success`);
            await new Promise((r) => setTimeout(r, 50));
          }
          mine.push(text);
        }
      }));
      for (const [agent, mine] of [[onA, ["g1", "g2"]], [onB, ["g3", "g4"]]] as const) {
        for (const from of mine) {
          await waitUntil(
            () => textsFrom(agent, from).length >= per || undefined,
            `${per} texts from ${from} (got ${textsFrom(agent, from).length})`,
            10_000,
          ).catch(() => {});
          assert.deepEqual(
            textsFrom(agent, from),
            answered.get(from),
            `${from}: once each, in order`,
          );
        }
        const seqs = seqsOf(agent.messages());
        assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), "seqs increase");
        assert.equal(new Set(seqs).size, seqs.length, "no seq twice");
        await waitUntil(
          () => seqsOf(agent.messages()).at(-1) === seqs.length || undefined,
          "no seq missing",
          5000,
        ).catch(() => {});
        const all = seqsOf(agent.messages());
        assert.deepEqual(all, all.map((_, i) => i + 1), "gapless");
      }
      const floods = onA.messages().filter((e) => /^h\d+$/.test(String(e.data["contact_id"])))
        .filter((e) => e.result.code === 1001).map((e) => String(e.data.msg?.["content"]));
      assert.equal(new Set(floods).size, floods.length, "no flood message twice");
    } finally {
      for (const agent of agents) await agent.close().catch(() => {});
      for (const bridge of bridges) await bridge.close().catch(() => {});
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "after Redis comes back empty, agents connected on both bridges get what either accepts",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir();
    const redis = await ownRedis(dir, false);
    const env = { REDIS_URL: `${redis.url}?prefix=empty:`, HEARTBEAT_INTERVAL_S: "1" };
    const bridges: TestBridge[] = [];
    const agents: TestAgent[] = [];
    const send = async (via: TestBridge, from: string, to: string, text: string, msgId: string) => {
      for (let attempt = 0;; attempt++) {
        const res = await post(`${via.base}${B}/send_xml`, textXml(from, to, text, msgId), {
          "content-type": "text/xml",
        }).catch(() => ({ status: 0, text: "" }));
        if (res.status === 200 && res.text === "success") return;
        assert.ok(attempt < 200, `${text} never answered success`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      bridges.push(await startBridge({ env }), await startBridge({ env }));
      const [a, b] = bridges as [TestBridge, TestBridge];
      const onA = await connectAgent(`${a.wsBase}${B}/msg?userid=alice`);
      const onB = await connectAgent(`${b.wsBase}${B}/msg?userid=bob`);
      agents.push(onA, onB);
      await send(a, "g1", "bob", "before", "1");
      await send(b, "g2", "alice", "before", "2");
      await onB.waitFor((e) => e.data.msg?.["content"] === "before");
      await onA.waitFor((e) => e.data.msg?.["content"] === "before");
      await redis.restart();
      for (let i = 0; i < 20; i++) {
        await send(a, "g1", "bob", `after ${i}`, String(100 + i));
        await send(b, "g2", "alice", `after ${i}`, String(200 + i));
      }
      const want = Array.from({ length: 20 }, (_, i) => `after ${i}`);
      for (const [agent, from] of [[onB, "g1"], [onA, "g2"]] as const) {
        await waitUntil(
          () => textsFrom(agent, from).length >= 21 || undefined,
          `texts from ${from}`,
          5000,
        ).catch(() => {});
        assert.deepEqual(
          textsFrom(agent, from),
          ["before", ...want],
          `${from}'s texts on its agent`,
        );
      }
    } finally {
      for (const agent of agents) await agent.close().catch(() => {});
      for (const bridge of bridges) await bridge.close().catch(() => {});
      await redis.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "an agent moving between bridges mid-traffic gets every seq once, in order",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const prefix = uniquePrefix("move");
    const env = { REDIS_URL: `${url}${url.includes("?") ? "&" : "?"}prefix=${prefix}` };
    const bridges: TestBridge[] = [];
    const sockets: TestAgent[] = [];
    try {
      bridges.push(await startBridge({ env }), await startBridge({ env }));
      const [a, b] = bridges as [TestBridge, TestBridge];
      let current = await connectAgent(`${a.wsBase}${B}/msg?userid=alice`);
      sockets.push(current);
      let stop = false;
      let id = 70_000;
      const sent: string[] = [];
      const traffic = Promise.all(["g1", "g2", "g3"].map(async (from, f) => {
        for (let i = 0; !stop; i++) {
          const text = `${from} #${i}`;
          const res = await post(
            `${(i + f) % 2 ? a.base : b.base}${B}/send_xml`,
            textXml(from, "alice", text, String(id++)),
            { "content-type": "text/xml" },
          );
          assert.equal(res.text, "success");
          sent.push(text);
        }
      }));
      for (let hop = 0; hop < 8; hop++) {
        await new Promise((r) => setTimeout(r, 60));
        const last = current.messages().at(-1)?.data.seq ?? 0;
        await current.close();
        const next = hop % 2 ? a : b;
        current = await connectAgent(`${next.wsBase}${B}/msg?userid=alice&since=${last}`);
        sockets.push(current);
      }
      stop = true;
      await traffic;
      const total = (await a.store.getAgent("alice"))!.seq;
      await waitUntil(
        () => (current.messages().at(-1)?.data.seq ?? 0) >= total || undefined,
        `seq ${total} on the last socket`,
        5000,
      ).catch(() => {});
      const seqs = sockets.flatMap((s) => seqsOf(s.messages()));
      // A socket's replay may repeat what the one before got after `since`: count per seq.
      const unique = [...new Set(seqs)].sort((x, y) => x - y);
      assert.deepEqual(unique, Array.from({ length: total }, (_, i) => i + 1), "every seq");
      for (const s of sockets) {
        const mine = seqsOf(s.messages());
        assert.deepEqual(
          mine,
          [...new Set(mine)].sort((x, y) => x - y),
          "one socket: once, in order",
        );
      }
      const got = sockets.flatMap((s) => s.messages()).filter((e) => e.result.code === 1001)
        .map((e) => String(e.data.msg?.["content"]));
      assert.deepEqual(new Set(got), new Set(sent));
    } finally {
      for (const s of sockets) await s.close().catch(() => {});
      for (const bridge of bridges) await bridge.close().catch(() => {});
      await flushPrefix(url, prefix);
    }
  },
});
