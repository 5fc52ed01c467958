// A live frame held for a seq below it (hub: another instance's commit late) was counted as
// delivered at once, moving the agent's cursor past it and past the missing seq: a socket that
// closed before they were written, reconnecting without since= ("what was queued while you had
// no socket open"), got neither, though no socket ever had them.

import assert from "node:assert/strict";
import { SYSTEM_CONTACT } from "../../src/protocol/envelope.ts";
import { type AgentConnection, createHub } from "../../src/core/hub.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import type { Store } from "../../src/core/store.ts";
import { createSwitchboard, type Switchboard } from "../../src/core/switchboard.ts";

/** A socket that keeps the data.seq of what it is sent. */
function socket() {
  const s = {
    seqs: [] as number[],
    readyState: 1,
    bufferedAmount: 0,
    send(data: string) {
      s.seqs.push(JSON.parse(data).data.seq);
    },
    close() {
      s.readyState = 3;
    },
  };
  return s;
}

function notice(text: string) {
  return {
    data: {
      id: crypto.randomUUID(),
      name: "system",
      avatar: "",
      msg_type: "system",
      contact_id: SYSTEM_CONTACT,
      company_id: "",
      send_time: 1_700_000_000,
      msg: { content: text },
    },
    result: { code: 102, message: "system" },
  };
}

/** A memory store, its dedup window longer than any test here. */
function memoryStore() {
  return createMemoryStore({
    companyId: "",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 60_000,
  });
}

/** Appends notices "one" and "two" to ag1's log; the two entries, seqs 1 and 2 on a new store. */
async function oneAndTwo(store: Pick<Store, "appendToAgents">) {
  const applied = await store.appendToAgents([
    { agentId: "ag1", envelope: notice("one") },
    { agentId: "ag1", envelope: notice("two") },
  ]);
  return applied.value;
}

/** A switchboard whose hub holds a frame for a missing seq longer than any test here waits. */
function holding(store: Store): Switchboard {
  // Long enough that the gap is not read before the socket goes.
  return createSwitchboard({ store, hub: createHub({ gapWaitMs: 60_000 }) });
}

/** Asserts that `first` got nothing (2 held for 1), closes it, and that ag1's next socket,
 * without since=, gets both 1 and 2. */
async function heldThenBothOnReconnect(
  switchboard: Switchboard,
  first: ReturnType<typeof socket>,
  conn: AgentConnection,
) {
  assert.deepEqual(first.seqs, [], "2 is held for 1");
  first.close();
  switchboard.disconnect(conn);
  const again = socket();
  const conn2 = await switchboard.connect("ag1", again, null);
  assert.deepEqual(again.seqs, [1, 2], "queued while no socket was open: both, no socket had them");
  switchboard.disconnect(conn2);
}

Deno.test("createSwitchboard() does not count a held frame delivered before it is written", async () => {
  const store = memoryStore();
  const switchboard = holding(store);
  try {
    const first = socket();
    const conn = await switchboard.connect("ag1", first, null);
    const [one, two] = await oneAndTwo(store);
    assert.deepEqual([one!.seq, two!.seq], [1, 2]);
    // 2 comes live first; 1 (another instance's) has not come yet when the socket closes.
    switchboard.push([two!]);
    await heldThenBothOnReconnect(switchboard, first, conn);
  } finally {
    await store.close();
  }
});

Deno.test("createSwitchboard() does not count a frame delivered that came during a replay and is held after it", async () => {
  const memory = memoryStore();
  // The replay's read answers what the log had when it was asked, a moment later.
  let open = () => {};
  const gate = new Promise<void>((r) => open = r);
  let gated = true;
  const store = {
    ...memory,
    async readLog(agentId: string, afterSeq: number, limit: number) {
      const page = await memory.readLog(agentId, afterSeq, limit);
      if (gated) await gate;
      return page;
    },
  };
  const switchboard = holding(store);
  try {
    const first = socket();
    const connecting = switchboard.connect("ag1", first, null);
    await new Promise((r) => setTimeout(r, 10));
    const [, two] = await oneAndTwo(memory);
    // 2 comes live during the replay, 1 (another instance's) not yet: buffered, then held.
    switchboard.push([two!]);
    gated = false;
    open();
    const conn = await connecting;
    await heldThenBothOnReconnect(switchboard, first, conn);
  } finally {
    await memory.close();
  }
});

Deno.test("createSwitchboard() gives a second socket the seq another socket holds a frame for", async () => {
  // The agent's second tab, opened without since= while its first held 2 for 1, started past
  // both (the cursor said 2 was delivered) and dropped 1 as a repeat when it came: the defect
  // the hold was made for, on the second socket.
  const store = memoryStore();
  const switchboard = holding(store);
  try {
    const first = socket();
    const conn = await switchboard.connect("ag1", first, null);
    const [one, two] = await oneAndTwo(store);
    switchboard.push([two!]);
    const second = socket();
    const conn2 = await switchboard.connect("ag1", second, null);
    switchboard.push([one!]);
    assert.deepEqual(first.seqs, [1, 2]);
    assert.deepEqual(second.seqs, [1, 2], "the second socket got 1 too");
    switchboard.disconnect(conn);
    switchboard.disconnect(conn2);
  } finally {
    await store.close();
  }
});
