import assert from "node:assert/strict";
import type { Envelope } from "../../src/protocol/envelope.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import {
  createRedisStore,
  parseRedisUrl,
  type RedisStore,
  type RedisStoreOptions,
} from "../../src/store/redis_store.ts";
import {
  type Applied,
  type HistoryItem,
  type InboundItem,
  type LogEntry,
  type Presence,
  type Store,
  StoreError,
} from "../../src/core/store.ts";
import {
  findTestRedis,
  flushPrefix,
  rawClient,
  uniquePrefix,
  waitUntil,
} from "./_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const ignore = REDIS_URL === null;
const url = REDIS_URL ?? "";

/** A clock the test moves. */
function clock(start = 1_700_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

function presenceOf(...agents: string[]): Presence {
  const set = new Set(agents);
  return { isOnline: (id) => set.has(id), onlineAgents: () => set };
}

let counter = 0;
function openRedis(
  prefix: string,
  overrides: Partial<RedisStoreOptions> = {},
): Promise<RedisStore> {
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

function envelope(from: string, content: string, id: string): Envelope {
  return {
    data: {
      id,
      name: from,
      avatar: "",
      msg_type: "text",
      contact_id: from,
      company_id: "acme",
      send_time: 1_700_000_000,
      msg: { content },
    },
    result: { code: 1001, message: "common" },
  };
}

function item(
  from: string,
  content: string,
  at: number,
  extra: Partial<InboundItem> = {},
): InboundItem {
  const id = `m-${from}-${content}`;
  return {
    followerId: from,
    name: null,
    to: "gh_account",
    envelope: envelope(from, content, id),
    kind: "message",
    receivedAt: at,
    dedupKey: id,
    ...extra,
  };
}

/** System notices get ids from each store's generator: compare everything else. */
function normalize(entries: LogEntry[]): LogEntry[] {
  return entries.map(({ frame, ...e }) => {
    // A frame a store made is its envelope's JSON, whatever the key order.
    if (frame !== undefined) assert.deepEqual(JSON.parse(frame), e.envelope);
    return e.envelope.data.contact_id === "system01"
      ? { ...e, envelope: { ...e.envelope, data: { ...e.envelope.data, id: "<id>" } } }
      : e;
  });
}

/** Runs one operation on both stores and checks they answer the same. */
async function same<T>(
  what: string,
  op: (s: Store) => Promise<Applied<T>>,
  memory: Store,
  redis: Store,
): Promise<Applied<T>> {
  const expected = await op(memory);
  const actual = await op(redis);
  assert.deepEqual(actual.value, expected.value, `${what}: value`);
  assert.deepEqual(normalize(actual.deliveries), normalize(expected.deliveries), `${what}: log`);
  return actual;
}

Deno.test("parseRedisUrl() takes the key prefix off the URL", async (t) => {
  await t.step("a prefix parameter is removed and returned", () => {
    assert.deepEqual(parseRedisUrl("redis://:pw@h:6380/2?prefix=shop1:"), {
      url: "redis://:pw@h:6380/2",
      prefix: "shop1:",
    });
  });
  await t.step("a Sentinel URL names the sentinels and the primary", () => {
    assert.deepEqual(
      parseRedisUrl(
        "redis+sentinel://:p%40ss@s1:26379,s2/mymaster/3?prefix=a:&sentinelPassword=sp",
      ),
      {
        sentinel: {
          sentinels: [{ host: "s1", port: 26379 }, { host: "s2", port: 26379 }],
          name: "mymaster",
          password: "p@ss",
          db: 3,
          sentinelPassword: "sp",
        },
        prefix: "a:",
      },
    );
  });
  await t.step("without one the prefix is null", () => {
    assert.equal(parseRedisUrl("rediss://h:6380").prefix, null);
  });
  await t.step("another scheme is refused with the variable's name", () => {
    assert.throws(() => parseRedisUrl("http://h:6379"), /REDIS_URL/);
  });
});

Deno.test({
  name: "createRedisStore() fails clearly when Redis cannot be reached",
  async fn() {
    // Port 1 is never a Redis.
    await assert.rejects(
      createRedisStore({
        url: "redis://127.0.0.1:1",
        companyId: "",
        now: Date.now,
        newId: () => "x",
        dedupTtlMs: 1000,
        heartbeatMs: 1000,
      }),
      /Cannot connect to Redis/,
    );
  },
});

Deno.test({
  name: "createRedisStore() finds the primary through Sentinel",
  ignore,
  async fn() {
    const { hostname, port } = new URL(url);
    const dir = await Deno.makeTempDir();
    const sentinelPort = (() => {
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      l.close();
      return l.addr.port;
    })();
    await Deno.writeTextFile(
      `${dir}/sentinel.conf`,
      `port ${sentinelPort}\nbind 127.0.0.1\nsentinel monitor primary ${hostname} ${
        port || 6379
      } 1\n`,
    );
    const sentinel = new Deno.Command("redis-server", {
      args: [`${dir}/sentinel.conf`, "--sentinel"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const prefix = uniquePrefix("sentinel");
    let store: RedisStore | undefined;
    try {
      store = await waitUntil(
        () =>
          openRedis(prefix, { url: `redis+sentinel://127.0.0.1:${sentinelPort}/primary` })
            .catch(() => undefined),
        "a store opened through Sentinel",
      );
      await store.agentOnline("a1", presenceOf("a1"));
      assert.deepEqual(await store.onlineAgents(), ["a1"]);
    } finally {
      await store?.close();
      sentinel.kill("SIGTERM");
      await sentinel.status;
      await Deno.remove(dir, { recursive: true });
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "the Redis store routes exactly as the memory store does",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("parity");
    const time = clock();
    const newIds = () => {
      let n = 0;
      return () => `n${++n}`;
    };
    const memory = createMemoryStore({
      companyId: "acme",
      now: time.now,
      newId: newIds(),
      dedupTtlMs: 3600_000,
    });
    const redis = await openRedis(prefix, { now: time.now, newId: newIds() });
    let online = presenceOf();
    const at = () => time.advance(1000);
    try {
      await t.step("agents come online with nobody waiting", async () => {
        online = presenceOf("a1", "a2");
        await same("a1", (s) => s.agentOnline("a1", online), memory, redis);
        await same("a2", (s) => s.agentOnline("a2", online), memory, redis);
      });
      await t.step("new followers go to the least-loaded agent, then stay", async () => {
        for (const [from, text] of [["f1", "hi"], ["f2", "yo"], ["f3", "hey"], ["f1", "again"]]) {
          const it = item(from!, text!, at());
          await same(`${from} ${text}`, (s) => s.acceptInbound([it], online), memory, redis);
        }
      });
      await t.step("a batch with a retry, a named agent, an event and a name", async () => {
        const batch = [
          item("f4", "to a2", at(), { to: "a2", name: "小明" }),
          item("f2", "yo", at()),
          item("f5", "subscribe", at(), { kind: "event", event: "subscribe", dedupKey: null }),
          item("f5", "bye", at(), { kind: "none", event: "unsubscribe", dedupKey: null }),
        ];
        const applied = await same("batch", (s) => s.acceptInbound(batch, online), memory, redis);
        assert.deepEqual(applied.value, ["delivered", "duplicate", "delivered", "delivered"]);
      });
      await t.step("replies, reads, transfers and closes", async () => {
        const reply: HistoryItem = {
          ...envelope("f1", "hello from a1", "r1").data,
          direction: "out",
          status: "sending",
          agent_id: "a1",
        };
        time.advance(1000);
        await same("reply", (s) => s.recordReply("a1", "f1", reply), memory, redis);
        await memory.updateReply("f1", { n: 3, id: reply.id }, "failed", "48h window closed");
        await redis.updateReply("f1", { n: 3, id: reply.id }, "failed", "48h window closed");
        await memory.markRead("a2", "f2");
        await redis.markRead("a2", "f2");
        time.advance(1000);
        await same("transfer", (s) => s.transfer("f1", "a1", "a2"), memory, redis);
        await same("close", (s) => s.closeConversation("f3", "a1"), memory, redis);
      });
      await t.step("with nobody online followers wait, then go to who comes", async () => {
        online = presenceOf();
        await redis.agentOffline("a1");
        await redis.agentOffline("a2");
        for (const [from, text] of [["f6", "anyone?"], ["f7", "hello?"], ["f6", "still?"]]) {
          const it = item(from!, text!, at());
          await same(`${from} ${text}`, (s) => s.acceptInbound([it], online), memory, redis);
        }
        assert.equal(await redis.queueDepth(), 3);
        assert.deepEqual(
          (await redis.listWaiting()).map((c) => c.follower_id),
          ["f6", "f7"],
        );
        await memory.setCapacity("a3", 1);
        await redis.setCapacity("a3", 1);
        online = presenceOf("a3");
        const applied = await same("a3", (s) => s.agentOnline("a3", online), memory, redis);
        // Capacity 1: only the longest-waiting follower, with both of its messages.
        assert.deepEqual(
          applied.deliveries.map((e) =>
            e.envelope.data.msg["content"] ?? e.envelope.data.msg["event"]
          ),
          ["assigned", "anyone?", "still?"],
        );
      });
      await t.step("contacts, agents, logs, history and queue agree", async () => {
        for (const agent of ["a1", "a2", "a3"]) {
          assert.deepEqual(await redis.listContacts(agent), await memory.listContacts(agent));
          assert.deepEqual(await redis.getAgent(agent), await memory.getAgent(agent));
          assert.deepEqual(
            normalize(await redis.readLog(agent, 0, 100)),
            normalize(await memory.readLog(agent, 0, 100)),
          );
          assert.deepEqual(
            normalize(await redis.readLog(agent, 2, 3)),
            normalize(await memory.readLog(agent, 2, 3)),
          );
        }
        for (const f of ["f1", "f2", "f3", "f4", "f5", "f6", "f7", "nobody"]) {
          assert.deepEqual(await redis.getContact(f), await memory.getContact(f));
          assert.deepEqual(
            await redis.readHistory(f, null, 100),
            await memory.readHistory(f, null, 100),
          );
        }
        assert.deepEqual(await redis.listWaiting(), await memory.listWaiting());
        assert.equal(await redis.queueDepth(), await memory.queueDepth());
        assert.equal(await redis.isKnownAgent("a3"), true);
        assert.equal(await redis.isKnownAgent("zz"), false);
      });
    } finally {
      await redis.close();
      await memory.close();
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "the Redis store refuses bad agent commands with StoreError and changes nothing",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("refuse");
    const store = await openRedis(prefix);
    try {
      await store.agentOnline("a1", presenceOf("a1"));
      await store.agentOnline("a2", presenceOf("a1", "a2"));
      await store.acceptInbound([item("f1", "hi", Date.now(), { to: "a1" })], presenceOf());
      const before = await store.getContact("f1");
      const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
        [
          "transfer of an unknown contact",
          () => store.transfer("zz", "a1", "a2"),
          /unknown contact/,
        ],
        [
          "transfer by an agent who does not serve it",
          () => store.transfer("f1", "a2", "a1"),
          /not served by a2/,
        ],
        [
          "transfer to an unknown agent",
          () => store.transfer("f1", "a1", "nobody"),
          /unknown agent nobody/,
        ],
        ["transfer to oneself", () => store.transfer("f1", "a1", "a1"), /yourself/],
        ["close by another agent", () => store.closeConversation("f1", "a2"), /not served by a2/],
        ["reply to an unknown contact", () =>
          store.recordReply("a1", "zz", {
            ...envelope("zz", "x", "r").data,
            direction: "out",
          }), /unknown contact zz/],
      ];
      for (const [what, op, message] of cases) {
        await t.step(what, async () => {
          await assert.rejects(op(), (e) => e instanceof StoreError && message.test(e.message));
        });
      }
      await t.step("the contact and the logs are untouched", async () => {
        assert.deepEqual(await store.getContact("f1"), before);
        assert.equal((await store.getAgent("a2"))?.seq, 0);
        assert.equal((await store.getAgent("a1"))?.seq, 2);
      });
    } finally {
      await store.close();
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "two Redis stores make one assignment decision under concurrent batches",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("race");
    const a = await openRedis(prefix);
    const b = await openRedis(prefix);
    try {
      await a.agentOnline("a1", presenceOf("a1"));
      await b.agentOnline("a2", presenceOf("a2"));
      const followers = Array.from({ length: 40 }, (_, i) => `f${i}`);
      await t.step("each follower's first messages race through both stores", async () => {
        const now = Date.now();
        const calls = followers.flatMap((f) => [
          a.acceptInbound([item(f, "via A", now)], presenceOf("a1")),
          b.acceptInbound([item(f, "via B", now)], presenceOf("a2")),
        ]);
        const results = await Promise.all(calls);
        assert.ok(results.every((r) => r.value[0] === "delivered"));
      });
      await t.step(
        "every follower is bound to exactly one agent, who got both messages",
        async () => {
          const logs = {
            a1: await a.readLog("a1", 0, 1000),
            a2: await a.readLog("a2", 0, 1000),
          };
          for (const f of followers) {
            const contact = await b.getContact(f);
            assert.ok(contact?.agent_id === "a1" || contact?.agent_id === "a2");
            const owner = contact.agent_id as "a1" | "a2";
            const other = owner === "a1" ? "a2" : "a1";
            const mine = (l: LogEntry[]) =>
              l.filter((e) =>
                e.envelope.data.contact_id === f || e.envelope.data.msg["follower_id"] === f
              );
            assert.equal(mine(logs[owner]).length, 3, `${f}: assigned notice and two messages`);
            assert.equal(mine(logs[other]).length, 0, `${f} reached ${other} too`);
          }
        },
      );
      await t.step("the load is split evenly and the seqs are dense", async () => {
        const r1 = await a.getAgent("a1");
        const r2 = await b.getAgent("a2");
        assert.equal(r1?.load, 20);
        assert.equal(r2?.load, 20);
        const seqs = (await b.readLog("a1", 0, 1000)).map((e) => e.seq);
        assert.deepEqual(seqs, Array.from({ length: 60 }, (_, i) => i + 1));
      });
    } finally {
      await a.close();
      await b.close();
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "presence in Redis is global and ends with its instance",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("presence");
    const a = await openRedis(prefix, { heartbeatMs: 200 });
    const b = await openRedis(prefix, { heartbeatMs: 200 });
    const redis = rawClient(url);
    try {
      await t.step("an agent online on A takes a follower who writes to B", async () => {
        await a.agentOnline("a1", presenceOf("a1"));
        assert.deepEqual(await b.onlineAgents(), ["a1"]);
        const applied = await b.acceptInbound([item("f1", "hi", Date.now())], presenceOf());
        assert.deepEqual(applied.value, ["delivered"]);
        assert.equal((await b.getContact("f1"))?.agent_id, "a1");
      });
      await t.step("A's presence key lives two heartbeats", async () => {
        const ttl = await redis.pttl(`${prefix}instance:${a.instanceId}`);
        assert.ok(ttl > 0 && ttl <= 400, `ttl ${ttl}`);
      });
      await t.step("when A's key is gone its agents stop counting", async () => {
        // As if A had died and its key expired.
        await redis.del(`${prefix}instance:${a.instanceId}`);
        assert.deepEqual(await b.onlineAgents(), []);
        const applied = await b.acceptInbound([item("f2", "hi", Date.now())], presenceOf());
        assert.deepEqual(applied.value, ["waiting"]);
        // The dead instance's set was removed by the script on the way.
        assert.equal(await redis.exists(`${prefix}online:${a.instanceId}`), 0);
      });
      await t.step("A's next heartbeat brings its agents back", async () => {
        await waitUntil(
          async () => (await b.onlineAgents()).includes("a1") || undefined,
          "a1 online again",
        );
      });
      await t.step("agentOffline and close() take agents off at once", async () => {
        await b.agentOnline("b1", presenceOf("b1"));
        await b.agentOnline("b2", presenceOf("b1", "b2"));
        await b.agentOffline("b1");
        assert.deepEqual(await a.onlineAgents(), ["a1", "b2"]);
        await b.close();
        assert.deepEqual(await a.onlineAgents(), ["a1"]);
      });
    } finally {
      await a.close();
      await b.close();
      await redis.quit();
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "entries committed on one Redis store reach the other's listeners",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("remote");
    const a = await openRedis(prefix);
    const b = await openRedis(prefix);
    const gotA: LogEntry[] = [];
    const gotB: LogEntry[] = [];
    a.onRemoteEntries((entries) => gotA.push(...entries));
    b.onRemoteEntries((entries) => gotB.push(...entries));
    try {
      await b.agentOnline("a1", presenceOf("a1"));
      await a.agentOnline("a1", presenceOf("a1"));
      await t.step("a message accepted on A reaches B's listener with its seq", async () => {
        const applied = await a.acceptInbound([item("f1", "hi", Date.now())], presenceOf("a1"));
        await waitUntil(() => (gotB.length >= 2 ? true : undefined), "two entries on B");
        assert.deepEqual(gotB, applied.deliveries);
        assert.deepEqual(gotB.map((e) => e.seq), [1, 2]);
      });
      await t.step("A's listener does not get A's own commits", () => {
        assert.deepEqual(gotA, []);
      });
      await t.step("B's commits reach A", async () => {
        await b.appendToAgents([{ agentId: "a1", envelope: envelope("a2", "psst", "x1") }]);
        await waitUntil(() => (gotA.length === 1 ? true : undefined), "one entry on A");
        assert.equal(gotA[0]?.seq, 3);
        assert.equal(gotA[0]?.envelope.data.msg["content"], "psst");
      });
      await t.step("an agent that went offline on B is not pushed there", async () => {
        await b.agentOffline("a1");
        gotA.length = 0;
        const before = gotB.length;
        await a.acceptInbound([item("f1", "more", Date.now())], presenceOf("a1"));
        // A second agent online on B tells us when B has seen later publications.
        await b.agentOnline("a9", presenceOf("a9"));
        await a.appendToAgents([{ agentId: "a9", envelope: envelope("x", "marker", "x2") }]);
        await waitUntil(
          () => gotB.some((e) => e.agentId === "a9") || undefined,
          "the marker on B",
        );
        assert.equal(gotB.filter((e) => e.agentId === "a1").length, before);
      });
      await t.step("a subscriber that reconnects catches up from the log", async () => {
        const redis = rawClient(url);
        try {
          const clients = await redis.client("LIST") as string;
          const line = clients.split("\n").find((l) =>
            l.includes(`name=bridge-${b.instanceId}-sub`)
          );
          const id = line?.match(/\bid=(\d+)/)?.[1];
          assert.ok(id, "B's subscriber connection");
          const before = gotB.length;
          await redis.client("KILL", "ID", id);
          await a.appendToAgents([{ agentId: "a9", envelope: envelope("x", "gap", "x3") }]);
          await waitUntil(
            () => gotB.slice(before).find((e) => e.envelope.data.id === "x3"),
            "the entry committed while B's subscriber was away",
          );
        } finally {
          await redis.quit();
        }
      });
    } finally {
      await a.close();
      await b.close();
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "an agent gets every seq in order when both stores commit for it at once",
  ignore,
  async fn() {
    const prefix = uniquePrefix("order");
    const a = await openRedis(prefix);
    const b = await openRedis(prefix);
    // What A's sockets would get, in the order the switchboard would write it: its own
    // commits as they resolve, B's as they arrive. The hub drops a seq at or below the last.
    const written: number[] = [];
    let dropped = 0;
    const write = (entries: LogEntry[]) => {
      for (const e of entries) {
        if (e.seq <= (written.at(-1) ?? 0)) dropped++;
        else written.push(e.seq);
      }
    };
    a.onRemoteEntries(write);
    try {
      await a.agentOnline("a1", presenceOf("a1"));
      const now = Date.now();
      const calls: Array<Promise<unknown>> = [];
      for (let i = 0; i < 200; i++) {
        const store = i % 2 === 0 ? a : b;
        const applied = store.acceptInbound([item(`f${i % 7}`, `m${i}`, now)], presenceOf());
        calls.push(store === a ? applied.then((r) => write(r.deliveries)) : applied);
      }
      await Promise.all(calls);
      const total = (await a.getAgent("a1"))!.seq;
      await waitUntil(() => written.length === total || undefined, `${total} entries written`);
      assert.equal(dropped, 0);
      assert.deepEqual(written, Array.from({ length: total }, (_, i) => i + 1));
    } finally {
      await a.close();
      await b.close();
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "agent logs in Redis are trimmed by count and by age",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("trim");
    const time = clock();
    const store = await openRedis(prefix, { now: time.now, logMax: 5, logRetentionMs: 60_000 });
    const append = (n: number) =>
      store.appendToAgents(
        Array.from({ length: n }, (_, i) => ({
          agentId: "a1",
          envelope: envelope("x", `m${i}`, `x${i}`),
        })),
      );
    try {
      await t.step("past the count the oldest entries go", async () => {
        await append(8);
        assert.deepEqual((await store.readLog("a1", 0, 100)).map((e) => e.seq), [4, 5, 6, 7, 8]);
        assert.deepEqual((await store.readLog("a1", 6, 1)).map((e) => e.seq), [7]);
      });
      await t.step("past the retention the old entries go and seqs go on", async () => {
        time.advance(30_000);
        await append(1);
        time.advance(40_000);
        await append(1);
        assert.deepEqual((await store.readLog("a1", 0, 100)).map((e) => e.seq), [9, 10]);
        assert.equal((await store.getAgent("a1"))?.seq, 10);
      });
    } finally {
      await store.close();
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "conversation history in Redis pages backwards and keeps reply status",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("history");
    const store = await openRedis(prefix, { historyMax: 4 });
    try {
      await store.agentOnline("a1", presenceOf("a1"));
      const now = Date.now();
      await store.acceptInbound(
        Array.from({ length: 5 }, (_, i) => item("f1", `m${i + 1}`, now)),
        presenceOf("a1"),
      );
      const { value } = await store.recordReply("a1", "f1", {
        ...envelope("f1", "answer", "r1").data,
        direction: "out",
        status: "sending",
      });
      await t.step("the newest page first, then older, up to what is kept", async () => {
        assert.equal(value.n, 6);
        const page1 = await store.readHistory("f1", null, 3);
        assert.deepEqual(page1.items.map((i) => i.msg["content"]), ["m4", "m5", "answer"]);
        assert.equal(page1.nextBefore, 4);
        const page2 = await store.readHistory("f1", page1.nextBefore, 3);
        assert.deepEqual(page2.items.map((i) => i.msg["content"]), ["m3"]);
        assert.equal(page2.nextBefore, null);
      });
      await t.step("a reply's status is updated in place", async () => {
        await store.updateReply("f1", { n: 6, id: "r1" }, "failed", "out of window");
        const last = (await store.readHistory("f1", null, 1)).items[0];
        assert.equal(last?.status, "failed");
        assert.equal(last?.error, "out of window");
      });
      await t.step("an unknown follower has no history", async () => {
        assert.deepEqual(await store.readHistory("nobody", null, 10), {
          items: [],
          nextBefore: null,
        });
      });
    } finally {
      await store.close();
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "Redis stores share the access token and the delivery cursor",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("shared");
    const a = await openRedis(prefix);
    const b = await openRedis(prefix);
    const redis = rawClient(url);
    try {
      await t.step("a token set on A is read on B and expires with it", async () => {
        assert.equal(await b.tokenCache.get(), null);
        const entry = { token: "TOKEN-1", expiresAt: Date.now() + 7200_000 };
        await a.tokenCache.set(entry);
        assert.deepEqual(await b.tokenCache.get(), entry);
        const ttl = await redis.pttl(`${prefix}wechat_token`);
        assert.ok(ttl > 7100_000 && ttl <= 7200_000, `ttl ${ttl}`);
      });
      await t.step("a cursor marked on A is seen on B", async () => {
        await a.agentOnline("a1", presenceOf("a1"));
        await a.appendToAgents([1, 2, 3].map((i) => ({
          agentId: "a1",
          envelope: envelope("x", `m${i}`, `x${i}`),
        })));
        a.markDelivered("a1", 2);
        a.markDelivered("a1", 3);
        a.markDelivered("a1", 1);
        await waitUntil(
          async () => (await b.getAgent("a1"))?.cursor === 3 || undefined,
          "cursor 3 on B",
        );
      });
      await t.step("ping answers while Redis is there", async () => {
        await a.ping();
      });
    } finally {
      await a.close();
      await b.close();
      await redis.quit();
      await flushPrefix(url, prefix);
    }
  },
});
