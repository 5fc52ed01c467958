// What every durable store (Deno KV, SQLite) must do alike, run by kv_store_test.ts and
// sqlite_store_test.ts on their own store: routing, numbering and logging inbound messages, and
// the state kept across a close and a reopen. The shared test data lives here too.

import assert from "node:assert/strict";
import type { Envelope } from "../../src/protocol/envelope.ts";
import type { InboundItem, LogEntry, Presence, Store } from "../../src/core/store.ts";

const DAY_MS = 24 * 3600_000;

/** The options every durable store's tests start from. */
export function baseStoreOptions() {
  return {
    companyId: "acme",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 3600_000,
    retentionMs: 30 * DAY_MS,
  };
}

export function presenceOf(...agents: string[]): Presence {
  return { isOnline: (id) => agents.includes(id), onlineAgents: () => agents };
}

let nextMsgId = 1;

/** A follower's text message to the account, with a WeChat MsgId as its dedup key. */
export function textItem(followerId: string, content: string, to = "gh_account"): InboundItem {
  const id = String(nextMsgId++);
  const envelope: Envelope = {
    data: {
      id,
      name: followerId,
      avatar: "",
      msg_type: "text",
      contact_id: followerId,
      company_id: "acme",
      send_time: 1_700_000_000,
      msg: { content },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId,
    name: null,
    to,
    envelope,
    kind: "message",
    receivedAt: Date.now(),
    dedupKey: `msg:${id}`,
  };
}

/** What an agent's log says, in words: contents, or `event:follower` for system notices. */
export function describe(entries: LogEntry[]): string[] {
  return entries.map((e) => {
    const msg = e.envelope.data.msg;
    return e.envelope.data.msg_type === "system"
      ? `${msg["event"]}:${msg["follower_id"]}`
      : String(msg["content"]);
  });
}

/** Whether `path` is there now (a file the store deletes or writes back). */
export function fileExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

export async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "store_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

export async function readAll(store: Store, agentId: string): Promise<LogEntry[]> {
  return await store.readLog(agentId, 0, 100_000);
}

/** How a durable store's shared tests open it and look into its file. */
export interface DurableStoreCase {
  /** The opener's name in test names, e.g. `openKvStore()`. */
  label: string;
  /** Opens the store at `path` (":memory:" for a store in memory) with the base options. */
  open(path: string): Promise<Store>;
  /** The file name under a temporary directory. */
  file: string;
  /** Where `readLog()` reads from, in words. */
  logSource: string;
  /** Asserts, through a second handle on the file, that a1's cursor 3 was committed. */
  cursorCommitted(path: string): Promise<void>;
}

/** Registers the shared tests for one durable store. */
export function testDurableStore(c: DurableStoreCase): void {
  Deno.test(`${c.label} routes, numbers and logs inbound messages`, async (t) => {
    const store = await c.open(":memory:");
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      const batch = [textItem("f1", "one"), textItem("f1", "two"), textItem("f2", "three")];

      await t.step("one batch: outcomes in order, deliveries with increasing seqs", async () => {
        const applied = await store.acceptInbound(batch, online);
        assert.deepEqual(applied.value, ["delivered", "delivered", "delivered"]);
        assert.deepEqual(describe(applied.deliveries), [
          "assigned:f1",
          "one",
          "two",
          "assigned:f2",
          "three",
        ]);
        assert.deepEqual(applied.deliveries.map((e) => e.seq), [1, 2, 3, 4, 5]);
        assert.deepEqual(applied.deliveries.map((e) => e.envelope.data.seq), [1, 2, 3, 4, 5]);
      });

      await t.step(`readLog() returns what came after a seq, ${c.logSource}`, async () => {
        assert.deepEqual(describe(await store.readLog("a1", 0, 100)), [
          "assigned:f1",
          "one",
          "two",
          "assigned:f2",
          "three",
        ]);
        const after3 = await store.readLog("a1", 3, 100);
        assert.deepEqual(after3.map((e) => e.seq), [4, 5]);
        assert.deepEqual((await store.readLog("a1", 1, 2)).map((e) => e.seq), [2, 3]);
        assert.deepEqual(await store.readLog("a1", 5, 100), []);
        assert.deepEqual(await store.readLog("nobody", 0, 100), []);
      });

      await t.step("a WeChat retry is a duplicate and changes nothing", async () => {
        const applied = await store.acceptInbound([batch[0]!], online);
        assert.deepEqual(applied.value, ["duplicate"]);
        assert.deepEqual(applied.deliveries, []);
        assert.equal((await store.getAgent("a1"))?.seq, 5);
      });

      await t.step("contacts and history reflect the messages", async () => {
        const f1 = await store.getContact("f1");
        assert.equal(f1?.agent_id, "a1");
        assert.equal(f1?.unread, 2);
        assert.equal(f1?.history_seq, 2);
        assert.deepEqual((await store.listContacts("a1")).map((c) => c.follower_id).sort(), [
          "f1",
          "f2",
        ]);
        const history = await store.readHistory("f1", null, 50);
        assert.deepEqual(history.items.map((i) => i.msg["content"]), ["one", "two"]);
        assert.deepEqual(history.items.map((i) => i.direction), ["in", "in"]);
        assert.equal(history.nextBefore, null);
      });
    } finally {
      await store.close();
    }
  });

  Deno.test(`${c.label} keeps its state across close and reopen`, async (t) => {
    await withTempDir(async (dir) => {
      const path = `${dir}/${c.file}`;
      const retried = textItem("f1", "first from f1");
      let store = await c.open(path);
      try {
        await t.step("followers with no agent online wait", async () => {
          const applied = await store.acceptInbound([
            retried,
            textItem("f2", "first from f2"),
            textItem("f1", "second from f1"),
          ], presenceOf());
          assert.deepEqual(applied.value, ["waiting", "waiting", "waiting"]);
          assert.equal(await store.queueDepth(), 3);
        });
        await t.step("...until reopened", async () => {
          await store.close();
          store = await c.open(path);
          assert.equal(await store.queueDepth(), 3);
          assert.deepEqual((await store.listWaiting()).map((c) => c.follower_id), ["f1", "f2"]);
        });
        await t.step("a WeChat retry after reopening is still a duplicate", async () => {
          const applied = await store.acceptInbound([retried], presenceOf());
          assert.deepEqual(applied.value, ["duplicate"]);
        });
        await t.step(
          "the first agent gets the waiting followers, longest-waiting first",
          async () => {
            const applied = await store.agentOnline("a1", presenceOf("a1"));
            assert.deepEqual(describe(applied.deliveries), [
              "assigned:f1",
              "first from f1",
              "second from f1",
              "assigned:f2",
              "first from f2",
            ]);
            assert.equal(await store.queueDepth(), 0);
            assert.deepEqual(await store.listWaiting(), []);
          },
        );
        await t.step("the cursor is written with the next commit, without a close", async () => {
          store.markDelivered("a1", 3);
          await store.acceptInbound([textItem("f2", "after the cursor")], presenceOf("a1"));
          await c.cursorCommitted(path);
        });
        await t.step("after reopening: seqs go on, cursor and log are there", async () => {
          store.markDelivered("a1", 5);
          await store.close();
          store = await c.open(path);
          const a1 = await store.getAgent("a1");
          assert.equal(a1?.seq, 6);
          assert.equal(a1?.cursor, 5);
          assert.equal(a1?.load, 2);
          assert.deepEqual(describe(await store.readLog("a1", 5, 100)), ["after the cursor"]);
          assert.equal(await store.queueDepth(), 0);
          const applied = await store.acceptInbound([textItem("f1", "next")], presenceOf());
          assert.deepEqual(applied.value, ["delivered"]);
          assert.deepEqual(applied.deliveries.map((e) => [e.agentId, e.seq]), [["a1", 7]]);
        });
      } finally {
        await store.close();
      }
    });
  });

  Deno.test(`${c.label} keeps a forget's cut across close and reopen`, async () => {
    await withTempDir(async (dir) => {
      const path = `${dir}/${c.file}`;
      let store = await c.open(path);
      try {
        await store.agentOnline("a1", presenceOf("a1"));
        const old = await store.acceptInbound([textItem("f1", "before")], presenceOf("a1"));
        const notice = textItem("f1", "forgotten").envelope;
        await store.forgetFollower("f1", { ...notice, data: { ...notice.data, contact_id: "" } });
        await store.close();
        store = await c.open(path);
        const back = await store.acceptInbound([textItem("f1", "after")], presenceOf("a1"));
        const cut = (await store.forgetCuts("a1", ["f1"])).get("f1");
        assert.ok(cut !== undefined, "the cut is still there");
        assert.ok(old.deliveries.every((e) => e.seq <= cut), "the old entry is below it");
        assert.ok(back.deliveries.every((e) => e.seq > cut), "the new one above it");
      } finally {
        await store.close();
      }
    });
  });

  Deno.test(`${c.label} pages history and rewrites a reply's status`, async (t) => {
    const store = await c.open(":memory:");
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      await store.acceptInbound(
        Array.from({ length: 5 }, (_, i) => textItem("f1", `m${i + 1}`)),
        online,
      );
      const reply = await store.recordReply("a1", "f1", {
        id: "r1",
        name: "a1",
        avatar: "",
        msg_type: "text",
        contact_id: "f1",
        company_id: "acme",
        send_time: 1_700_000_100,
        msg: { content: "an answer" },
        direction: "out",
        status: "sending",
      });

      await t.step("recordReply() numbers the reply and echoes it to the agent", () => {
        assert.equal(reply.value.n, 6);
        assert.deepEqual(describe(reply.deliveries), ["an answer"]);
      });

      await t.step("readHistory() pages backwards, oldest first within a page", async () => {
        const last = await store.readHistory("f1", null, 4);
        assert.deepEqual(last.items.map((i) => i.msg["content"]), ["m3", "m4", "m5", "an answer"]);
        assert.equal(last.nextBefore, 3);
        const first = await store.readHistory("f1", last.nextBefore, 4);
        assert.deepEqual(first.items.map((i) => i.msg["content"]), ["m1", "m2"]);
        assert.equal(first.nextBefore, null);
        assert.deepEqual(await store.readHistory("nobody", null, 4), {
          items: [],
          nextBefore: null,
        });
      });

      await t.step("updateReply() rewrites that one entry", async () => {
        await store.updateReply("f1", { n: 6, id: "r1" }, "failed", "45015 window closed");
        const page = await store.readHistory("f1", null, 2);
        assert.equal(page.items[1]?.status, "failed");
        assert.equal(page.items[1]?.error, "45015 window closed");
        assert.equal(page.items[0]?.status, undefined);
      });
    } finally {
      await store.close();
    }
  });

  Deno.test(`${c.label} transfers, closes and respects capacity`, async (t) => {
    const store = await c.open(":memory:");
    try {
      const both = presenceOf("a1", "a2");
      await store.agentOnline("a1", both);
      await store.agentOnline("a2", both);
      await store.acceptInbound([textItem("f1", "hello", "a1")], both);

      await t.step("transfer() moves the follower and tells both agents", async () => {
        const applied = await store.transfer("f1", "a1", "a2");
        assert.deepEqual(
          applied.deliveries.map((e) => [e.agentId, e.envelope.data.msg["event"]]),
          [["a2", "transferred_in"], ["a1", "transferred_out"]],
        );
        assert.equal((await store.getContact("f1"))?.agent_id, "a2");
        assert.equal((await store.getAgent("a1"))?.load, 0);
        assert.equal((await store.getAgent("a2"))?.load, 1);
      });

      await t.step("a refused command changes nothing and the store goes on", async () => {
        await assert.rejects(store.transfer("f1", "a1", "a2"), /not served by a1/);
        assert.equal((await store.getContact("f1"))?.agent_id, "a2");
      });

      await t.step("close() unbinds; the next message goes to the last agent", async () => {
        await store.closeConversation("f1", "a2");
        assert.equal((await store.getContact("f1"))?.status, "closed");
        assert.equal((await store.getAgent("a2"))?.load, 0);
        const applied = await store.acceptInbound([textItem("f1", "again")], both);
        assert.deepEqual(applied.deliveries.map((e) => e.agentId), ["a2", "a2"]);
      });

      await t.step("capacity 0 keeps followers waiting until it is raised", async () => {
        await store.setCapacity("a1", 0);
        await store.setCapacity("a2", 0);
        const applied = await store.acceptInbound([textItem("f9", "anyone?")], both);
        assert.deepEqual(applied.value, ["waiting"]);
        await store.setCapacity("a1", 1);
        const online = await store.agentOnline("a1", both);
        const mine = online.deliveries.filter((e) => e.agentId === "a1");
        assert.deepEqual(describe(mine), ["assigned:f9", "anyone?"]);
        // a2, online too, hears that the queue it saw was taken.
        const theirs = online.deliveries.filter((e) => e.agentId === "a2");
        assert.deepEqual(theirs.map((e) => e.envelope.data.msg["follower_ids"]), [["f9"]]);
        assert.equal((await store.getAgent("a1"))?.capacity, 1);
      });
    } finally {
      await store.close();
    }
  });
}
