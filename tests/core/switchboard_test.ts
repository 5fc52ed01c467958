import assert from "node:assert/strict";
import type { Envelope } from "../../src/protocol/envelope.ts";
import { createHub } from "../../src/core/hub.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import type { InboundItem, Store } from "../../src/core/store.ts";
import { createSwitchboard } from "../../src/core/switchboard.ts";

function item(followerId: string, id: string): InboundItem {
  const envelope: Envelope = {
    data: {
      id,
      name: followerId,
      avatar: "",
      msg_type: "text",
      contact_id: followerId,
      company_id: "",
      send_time: 1_700_000_000,
      msg: { content: id },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId,
    name: null,
    to: "",
    envelope,
    kind: "message",
    receivedAt: Date.now(),
    dedupKey: `m|${id}`,
  };
}

Deno.test("createSwitchboard() refuses only the message its store cannot take", async () => {
  const memory = createMemoryStore({
    companyId: "",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 60_000,
  });
  const batches: number[] = [];
  // A store that cannot take one follower's messages (as Deno KV cannot take a value over
  // 64 KiB): the whole commit fails whenever that message is in it.
  const store: Store = {
    ...memory,
    acceptInbound(items, presence) {
      batches.push(items.length);
      if (items.some((i) => i.followerId === "oPoison")) {
        return Promise.reject(new Error("value too large"));
      }
      return memory.acceptInbound(items, presence);
    },
  };
  const switchboard = createSwitchboard({ store, hub: createHub() });
  try {
    // Accepted in one turn, so they share a commit.
    const results = await Promise.allSettled([
      switchboard.accept(item("oA", "1")),
      switchboard.accept(item("oPoison", "2")),
      switchboard.accept(item("oB", "3")),
    ]);
    assert.deepEqual(batches[0], 3, "the three were grouped");
    assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
    assert.equal((results[0] as PromiseFulfilledResult<string>).value, "waiting");
    assert.match(String((results[1] as PromiseRejectedResult).reason), /value too large/);
    assert.equal((await memory.getContact("oB"))?.follower_id, "oB");
  } finally {
    await memory.close();
  }
});
