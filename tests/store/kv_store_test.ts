// The Deno KV store: the durable store cases (_durable_store_cases.ts) and what is its own.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { agentKey } from "../../src/store/kv_keys.ts";
import { type KvStoreOptions, openKvStore } from "../../src/store/kv_store.ts";
import { type AgentRecord, MessageTooLargeError } from "../../src/core/store.ts";
import {
  baseStoreOptions,
  describe,
  presenceOf,
  readAll,
  testDurableStore,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";

const DAY_MS = 24 * 3600_000;

function storeOptions(overrides: Partial<KvStoreOptions> = {}): KvStoreOptions {
  return { ...baseStoreOptions(), ...overrides };
}

testDurableStore({
  label: "openKvStore()",
  open: (path) => openKvStore(path, storeOptions()),
  file: "bridge.kv",
  logSource: "from KV",
  async cursorCommitted(path) {
    // A second handle on the same file sees what the first committed.
    const other = await Deno.openKv(path);
    try {
      const record = await other.get<AgentRecord>(agentKey("a1"));
      assert.equal(record.value?.cursor, 3);
      assert.equal(record.value?.seq, 6);
    } finally {
      other.close();
    }
  },
});

Deno.test("openKvStore() rolls back a failed commit and rejects", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.kv`;
    const store = await openKvStore(path, storeOptions());
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      await store.acceptInbound([textItem("f0", "before")], online);
      const good = textItem("f1", "fine");
      // Deno KV refuses a key over 2 KiB: the whole commit fails. (A message too large for one
      // value is refused before the model runs: see the last step.)
      const poisonId = "f2" + "x".repeat(3000);
      const poison = textItem(poisonId, "poison");

      await t.step("the batch is rejected", async () => {
        await assert.rejects(store.acceptInbound([good, poison], online), /too large/i);
      });
      await t.step("the model is back where KV is", async () => {
        assert.equal(await store.getContact("f1"), null);
        assert.equal(await store.getContact(poisonId), null);
        assert.equal((await store.getAgent("a1"))?.seq, 2);
        assert.equal((await store.getAgent("a1"))?.load, 1);
        assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f0", "before"]);
      });
      await t.step("WeChat's retry of the good message is accepted, not a duplicate", async () => {
        const applied = await store.acceptInbound([good], online);
        assert.deepEqual(applied.value, ["delivered"]);
        assert.deepEqual(applied.deliveries.map((e) => e.seq), [3, 4]);
        assert.deepEqual(describe(await readAll(store, "a1")), [
          "assigned:f0",
          "before",
          "assigned:f1",
          "fine",
        ]);
      });
      await t.step(
        "a batch split over several commits that fails late keeps its head",
        async () => {
          const long = (i: number) => `${i}:` + "长".repeat(8000);
          const items = Array.from({ length: 30 }, (_, i) => textItem("f3", long(i)));
          await assert.rejects(store.acceptInbound([...items, poison], online), /too large/i);
          // Whole messages went in, in order, before the failing commit: no gaps, no halves.
          const stored = (await store.getContact("f3"))?.history_seq ?? 0;
          assert.ok(stored > 0 && stored < 30, `stored ${stored}`);
          const log = describe(await readAll(store, "a1"));
          assert.deepEqual(log.slice(4), [
            "assigned:f3",
            ...items.slice(0, stored).map((_, i) => long(i)),
          ]);
          // They were committed but never handed out: the next operation delivers them.
          const retry = await store.acceptInbound(items, online);
          assert.deepEqual(
            retry.value,
            items.map((_, i) => i < stored ? "duplicate" : "delivered"),
          );
          assert.deepEqual(
            retry.deliveries.map((e) => e.seq),
            Array.from({ length: 31 }, (_, i) => i + 5),
          );
          assert.equal((await store.getContact("f3"))?.history_seq, 30);
        },
      );
      await t.step(
        "a message too large for one value is refused before the model runs",
        async () => {
          // A follower's message puts its contact in memory.
          await store.acceptInbound([textItem("f0", "again")], online);
          const known = await store.getContact("f0");
          const big = textItem("f4", "x".repeat(70_000));
          await assert.rejects(store.acceptInbound([good, big], online), MessageTooLargeError);
          assert.equal(await store.getContact("f4"), null);
          // Nothing was reloaded (a reload at 60,000 contacts held every other webhook ~2 s):
          // the model in memory is the very same.
          assert.equal(await store.getContact("f0"), known);
        },
      );
    } finally {
      await store.close();
    }
  });
});

Deno.test("openKvStore() splits what KV cannot take in one commit", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.kv`;
    let store = await openKvStore(path, storeOptions());
    try {
      await t.step("100 long messages: over 800 KiB, still all stored in order", async () => {
        const online = presenceOf("a1");
        await store.agentOnline("a1", online);
        const long = (i: number) => `${i}:` + "长".repeat(8000);
        const items = Array.from({ length: 100 }, (_, i) => textItem(`f${i % 3}`, long(i)));
        const applied = await store.acceptInbound(items, online);
        assert.equal(applied.value.filter((o) => o === "delivered").length, 100);
        assert.equal(applied.deliveries.length, 103);
        const contents = describe(await readAll(store, "a1")).filter((c) => !c.includes(":f"));
        assert.deepEqual(contents, items.map((_, i) => long(i)));
      });
      await t.step(
        "a backlog of 400 followers (2,800 mutations) is handed over whole",
        async () => {
          const items = Array.from({ length: 800 }, (_, i) => textItem(`w${i % 400}`, `w${i}`));
          for (let i = 0; i < items.length; i += 100) {
            await store.acceptInbound(items.slice(i, i + 100), presenceOf());
          }
          assert.equal(await store.queueDepth(), 800);
          const applied = await store.agentOnline("a2", presenceOf("a2"));
          assert.equal(applied.deliveries.length, 1200);
          await store.close();
          store = await openKvStore(path, storeOptions());
          assert.equal(await store.queueDepth(), 0);
          const log = describe(await readAll(store, "a2"));
          assert.equal(log.length, 1200);
          // Follower by follower: the notice, then its two messages in order.
          assert.deepEqual(log.slice(0, 6), [
            "assigned:w0",
            "w0",
            "w400",
            "assigned:w1",
            "w1",
            "w401",
          ]);
          assert.equal((await store.getAgent("a2"))?.load, 400);
          const w399 = await store.getContact("w399");
          assert.equal(w399?.agent_id, "a2");
        },
      );
    } finally {
      await store.close();
    }
  });
});

Deno.test("openKvStore() writes history to expire after retentionMs, logs after 48 h at least", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.kv`;
    // One day of history; agents' logs are kept for 48 hours whatever the setting.
    const retentionMs = 1 * DAY_MS;
    const store = await openKvStore(path, storeOptions({ retentionMs }));
    const before = Date.now();
    try {
      await store.acceptInbound([textItem("f0", "queued")], presenceOf());
      await store.agentOnline("a1", presenceOf("a1"));
      await store.acceptInbound([textItem("f1", "delivered")], presenceOf("a1"));
    } finally {
      await store.close();
    }
    // KV deletes expired keys in the background about once a minute; what it will delete is
    // the expiration_ms column of its SQLite file, so that is what this reads.
    const db = new DatabaseSync(path, { readOnly: true });
    const expiries = new Map<string, number[]>();
    try {
      const rows = db.prepare("SELECT k, expiration_ms FROM kv").all() as Array<
        { k: Uint8Array; expiration_ms: number }
      >;
      for (const row of rows) {
        // A key's first part is a string: 0x02, its UTF-8 bytes, 0x00.
        const prefix = new TextDecoder().decode(row.k.subarray(1, row.k.indexOf(0)));
        expiries.set(prefix, [...expiries.get(prefix) ?? [], row.expiration_ms]);
      }
    } finally {
      db.close();
    }
    const after = Date.now();
    const within = (ms: number, ttl: number) => ms >= before + ttl && ms <= after + ttl;
    assert.deepEqual([...expiries.keys()].sort(), [
      "agents",
      "contacts",
      "dedup",
      "history",
      "log",
      "meta",
      "served",
      "windows",
    ]);
    for (const ms of expiries.get("history")!) {
      assert.ok(within(ms, retentionMs), `history expires at ${ms}`);
    }
    for (const ms of expiries.get("log")!) {
      assert.ok(within(ms, 2 * DAY_MS), `log expires at ${ms}`);
    }
    for (const ms of expiries.get("dedup")!) assert.ok(within(ms, 3600_000), `expires at ${ms}`);
    const kept = ["contacts", "agents", "meta", "served", "windows"];
    for (const ms of kept.flatMap((prefix) => expiries.get(prefix)!)) {
      assert.equal(ms, -1);
    }
  });
});

Deno.test("openKvStore() writes new agents with the cursors, not a commit each", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/bridge.kv`;
  try {
    let store = await openKvStore(path, storeOptions());
    const peek = await Deno.openKv(path);
    try {
      for (let i = 0; i < 50; i++) await store.agentOnline(`storm${i}`, presenceOf());
      // Known at once to this process, but no commit was made for them yet.
      assert.equal(await store.isKnownAgent("storm49"), true);
      assert.equal((await peek.get(agentKey("storm0"))).value, null);
      // A message commits them with it; so would the cursor timer or close().
      await store.acceptInbound([textItem("fStorm", "hi", "storm7")], presenceOf("storm7"));
      assert.notEqual((await peek.get(agentKey("storm49"))).value, null);
      await store.agentOnline("late", presenceOf());
      await store.close();
      store = await openKvStore(path, storeOptions());
      assert.equal(await store.isKnownAgent("late"), true, "close() writes pending agents");
    } finally {
      peek.close();
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
