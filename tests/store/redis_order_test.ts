import assert from "node:assert/strict";
import { createAgentOrder } from "../../src/store/redis_order.ts";
import type { LogEntry } from "../../src/core/store.ts";

function entry(agentId: string, seq: number): LogEntry {
  return {
    agentId,
    seq,
    envelope: {
      data: {
        id: `${agentId}-${seq}`,
        seq,
        name: "",
        avatar: "",
        msg_type: "text",
        contact_id: "f",
        company_id: "",
        send_time: 0,
        msg: { content: String(seq) },
      },
      result: { code: 1001, message: "common" },
    },
  };
}

const seqs = (entries: LogEntry[]) => entries.map((e) => e.seq);

/** An order whose log holds `log` and whose emitted entries are collected. */
function setup(log: LogEntry[] = []) {
  const emitted: LogEntry[] = [];
  const fills: Array<[string, number]> = [];
  let onEmit = () => {};
  const order = createAgentOrder({
    fill(agentId, afterSeq) {
      fills.push([agentId, afterSeq]);
      return Promise.resolve(log.filter((e) => e.agentId === agentId && e.seq > afterSeq));
    },
    emit(entries) {
      emitted.push(...entries);
      onEmit();
    },
    gapMs: 10,
  });
  const emittedAtLeast = (n: number) =>
    new Promise<void>((resolve) => {
      onEmit = () => emitted.length >= n && resolve();
      onEmit();
    });
  return { order, emitted, fills, emittedAtLeast };
}

Deno.test("createAgentOrder() releases each agent's entries in seq order", async (t) => {
  await t.step("entries in order pass at once; old ones are dropped", () => {
    const { order } = setup();
    order.track("a");
    order.begin("a", 4);
    assert.deepEqual(seqs(order.admit([entry("a", 5), entry("a", 6)])), [5, 6]);
    assert.deepEqual(seqs(order.admit([entry("a", 6), entry("a", 3)])), []);
    order.close();
  });
  await t.step("a late entry releases the ones held behind it", () => {
    const { order } = setup();
    order.track("a");
    order.begin("a", 0);
    assert.deepEqual(seqs(order.admit([entry("a", 2), entry("a", 3)])), []);
    assert.deepEqual(seqs(order.admit([entry("a", 1)])), [1, 2, 3]);
    order.close();
  });
  await t.step("agents not connected here pass through untouched", () => {
    const { order } = setup();
    assert.deepEqual(seqs(order.admit([entry("z", 9), entry("z", 7)])), [9, 7]);
  });
  await t.step("before its start point is known everything is held", () => {
    const { order } = setup();
    order.track("a");
    assert.deepEqual(seqs(order.admit([entry("a", 3), entry("a", 4)])), []);
    order.begin("a", 3);
    // 3 came before the start (the replay sends it); 4 is due with the next admit.
    assert.deepEqual(seqs(order.admit([])), [4]);
    assert.deepEqual(seqs(order.admit([entry("a", 5)])), [5]);
    order.close();
  });
});

Deno.test("createAgentOrder() reads a gap that stays open from the log", async (t) => {
  await t.step("the missing entries come from the log, in order, once", async () => {
    const log = [1, 2, 3, 4].map((s) => entry("a", s));
    const { order, emitted, fills, emittedAtLeast } = setup(log);
    order.track("a");
    order.begin("a", 1);
    assert.deepEqual(seqs(order.admit([entry("a", 4)])), []);
    await emittedAtLeast(3);
    assert.deepEqual(seqs(emitted), [2, 3, 4]);
    assert.deepEqual(fills, [["a", 1]]);
    order.close();
  });
  await t.step("entries trimmed from the log are skipped", async () => {
    const log = [5, 6].map((s) => entry("a", s));
    const { order, emitted, emittedAtLeast } = setup(log);
    order.track("a");
    order.begin("a", 1);
    order.admit([entry("a", 6)]);
    await emittedAtLeast(2);
    assert.deepEqual(seqs(emitted), [5, 6]);
    order.close();
  });
  await t.step("catchUp() reads every tracked agent's log after what it was given", async () => {
    const log = [entry("a", 3), entry("b", 8)];
    const { order, emitted, emittedAtLeast } = setup(log);
    order.track("a");
    order.begin("a", 2);
    order.track("b");
    order.begin("b", 7);
    order.catchUp();
    await emittedAtLeast(2);
    assert.deepEqual(emitted.map((e) => `${e.agentId}${e.seq}`).sort(), ["a3", "b8"]);
    order.close();
  });
});
