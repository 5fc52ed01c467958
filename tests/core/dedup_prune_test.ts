// WeChat's retries are recognised by keys the model holds for one TTL. A busy hour holds
// millions: pruning must cost what has expired, not what is held, and keep the keys in the
// order they expire so that it can stop early.

import assert from "node:assert/strict";
import type { Envelope } from "../../src/protocol/envelope.ts";
import type { InboundItem, Presence } from "../../src/core/store.ts";
import { Model } from "../../src/core/model.ts";

const TTL = 1_000;
const nobody: Presence = { isOnline: () => false, onlineAgents: () => [] };

function model(): Model {
  return new Model({ companyId: "", now: () => 0, newId: () => "id", dedupTtlMs: TTL });
}

function item(id: string, at: number): InboundItem {
  const envelope: Envelope = {
    data: {
      id,
      name: "oA",
      avatar: "",
      msg_type: "text",
      contact_id: "oA",
      company_id: "",
      send_time: 1_700_000_000,
      msg: { content: id },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId: "oA",
    name: null,
    to: "",
    envelope,
    kind: "message",
    receivedAt: at,
    dedupKey: `m|${id}`,
  };
}

/** Counts the entries `m.seen` yields while `run` iterates it. */
function visits(m: Model, run: () => void): number {
  let visited = 0;
  const entries = Map.prototype.entries;
  Object.defineProperty(m.seen, Symbol.iterator, {
    configurable: true,
    value: function* (this: Map<string, number>) {
      for (const e of entries.call(this)) {
        visited++;
        yield e;
      }
    },
  });
  run();
  delete (m.seen as unknown as Record<symbol, unknown>)[Symbol.iterator];
  return visited;
}

Deno.test("Model.pruneSeen() costs what expired, not what is held", async (t) => {
  await t.step("one expired key among 100,000 live ones: two visited", () => {
    const m = model();
    m.restoreSeen([
      ["old", 10],
      ...Array.from({ length: 100_000 }, (_, i) => [`k${i}`, 5_000 + i] as [string, number]),
    ], 0);
    assert.equal(visits(m, () => m.pruneSeen(100)), 2);
    assert.equal(m.seen.has("old"), false);
    assert.equal(m.seen.size, 100_000);
  });

  await t.step("keys read back out of order are held in the order they expire", () => {
    const m = model();
    m.restoreSeen([["b", 700], ["a", 500], ["gone", 50], ["c", 900]], 100);
    assert.deepEqual([...m.seen.keys()], ["a", "b", "c"]);
    m.pruneSeen(600);
    assert.deepEqual([...m.seen.keys()], ["b", "c"]);
  });

  await t.step("keys written under a longer TTL are held one TTL from now, no longer", () => {
    const m = model();
    m.restoreSeen([["old", 86_400_000]], 100);
    assert.equal(m.seen.get("old"), 100 + TTL);
  });

  await t.step(
    "a retry within the TTL is a duplicate; an expired key seen again moves last",
    () => {
      const m = model();
      assert.equal(m.inbound(item("1", 0), nobody), "waiting");
      assert.equal(m.inbound(item("2", 500), nobody), "waiting");
      assert.equal(m.inbound(item("1", 900), nobody), "duplicate");
      // Key 1 expired at 1,000 but is still held (not pruned yet): seen again, it starts over.
      assert.equal(m.inbound(item("1", 1_200), nobody), "waiting");
      assert.deepEqual([...m.seen.keys()], ["m|2", "m|1"]);
      m.pruneSeen(1_600);
      assert.deepEqual([...m.seen.keys()], ["m|1"]);
    },
  );
});

// From the review of 7db0d8d: a key recorded while the clock was a day ahead sat first with a far
// expiry, and every key recorded after the correction stayed held behind it, expired.
Deno.test("Model.pruneSeen() forgets expired keys after a clock set back a day", () => {
  const m = model();
  const day = 86_400_000;
  assert.equal(m.inbound(item("ahead", day), nobody), "waiting");
  for (let i = 0; i < 1_000; i++) {
    assert.equal(m.inbound(item(`k${i}`, i), nobody), "waiting");
  }
  // Two TTLs past the last of those keys' expiry (1,999), with the prune run every "minute".
  for (let now = 0; now <= 4_000; now += 100) m.pruneSeen(now);
  const held = [...m.seen.keys()].filter((k) => k !== "m|ahead").length;
  assert.equal(held, 0, `${held} keys past their time still held, two TTLs after they expired`);
});
