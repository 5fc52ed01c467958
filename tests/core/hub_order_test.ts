// A live frame can reach the hub before a seq below it (Redis: another instance's commit comes
// through its channel a moment after this one's; a reply's echo is pushed a turn after its
// script): the hub dropped the lower one as a repeat, and the agent, reconnecting with since=
// the highest it saw, never got it. Now it holds the higher until the lower comes, and past a
// short wait reads what is missing from the log.

import assert from "node:assert/strict";
import { CLOSE_RECONNECT, createHub, type GapReader } from "../../src/core/hub.ts";

/** A socket that keeps the seqs of what it is sent. */
function socket() {
  const s = {
    seqs: [] as number[],
    closedWith: 0,
    readyState: 1,
    bufferedAmount: 0,
    send(data: string) {
      s.seqs.push(JSON.parse(data).seq);
    },
    close(code?: number) {
      s.closedWith = code ?? 1000;
      s.readyState = 3;
    },
  };
  return s;
}

const frame = (seq: number) => JSON.stringify({ seq });
const later = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A hub whose log read is `reader`, with one socket of agent "a" past its replay at `readTo`. */
function hubWith(reader: GapReader | null, readTo = 0) {
  const hub = createHub({ gapWaitMs: 20 });
  if (reader) hub.readGapsWith(reader);
  const s = socket();
  const conn = hub.add("a", s);
  hub.finishReplay(conn, readTo);
  return { hub, s, conn };
}

Deno.test("createHub() writes a frame that came before the seq below it after that one", async () => {
  const asked: Array<[number, number]> = [];
  const { hub, s, conn } = hubWith((_agent, after, upTo) => {
    asked.push([after, upTo]);
    return Promise.resolve([]);
  });
  try {
    hub.deliver("a", 1, frame(1));
    assert.equal(hub.deliver("a", 3, frame(3)), 1, "held counts as taken");
    assert.equal(hub.deliver("a", 4, frame(4)), 1);
    assert.deepEqual(s.seqs, [1]);
    hub.deliver("a", 2, frame(2));
    assert.deepEqual(s.seqs, [1, 2, 3, 4]);
    hub.deliver("a", 3, frame(3));
    assert.deepEqual(s.seqs, [1, 2, 3, 4], "a repeat is still dropped");
    await later(60);
    assert.deepEqual(asked, [], "nothing was missing: the log is not read");
  } finally {
    hub.remove(conn);
  }
});

Deno.test("createHub() reads seqs that never came live from the log, in order", async () => {
  const asked: Array<[number, number]> = [];
  const { hub, s, conn } = hubWith((_agent, after, upTo) => {
    asked.push([after, upTo]);
    // 6 is one the replay leaves out (a forgotten follower's): passed over.
    return Promise.resolve([[5, frame(5)], [7, frame(7)]]);
  }, 4);
  try {
    hub.deliver("a", 8, frame(8));
    hub.deliver("a", 10, frame(10));
    assert.deepEqual(s.seqs, []);
    await later(80);
    assert.deepEqual(asked[0], [4, 10]);
    assert.deepEqual(s.seqs, [5, 7, 8, 10]);
    hub.deliver("a", 11, frame(11));
    assert.deepEqual(s.seqs, [5, 7, 8, 10, 11], "live again once the gap is read");
  } finally {
    hub.remove(conn);
  }
});

Deno.test("createHub() closes a socket 4001 when the log cannot be read for a gap", async () => {
  const { hub, s, conn } = hubWith(() => Promise.reject(new Error("store down")));
  try {
    hub.deliver("a", 1, frame(1));
    hub.deliver("a", 3, frame(3));
    await later(80);
    assert.deepEqual(s.seqs, [1], "nothing above the gap is written past it");
    assert.equal(s.closedWith, CLOSE_RECONNECT);
  } finally {
    hub.remove(conn);
  }
});

Deno.test("createHub() writes frames that came during the replay below where it read", () => {
  // A replay from the cursor those frames moved reads none of them.
  const hub = createHub({ gapWaitMs: 20 });
  const s = socket();
  const conn = hub.add("a", s);
  try {
    for (const seq of [2, 1, 3]) hub.deliver("a", seq, frame(seq));
    hub.finishReplay(conn, 3);
    assert.deepEqual(s.seqs, [1, 2, 3]);
    hub.deliver("a", 4, frame(4));
    assert.deepEqual(s.seqs, [1, 2, 3, 4]);
  } finally {
    hub.remove(conn);
  }
});

Deno.test("createHub() bounds what a socket holds while the log read for its gap hangs", async () => {
  // A store read that hangs (Redis busy) while a busy agent's frames keep coming: each was
  // held, unsent and uncounted, so one agent's gap could grow the bridge's memory without end.
  let release = () => {};
  const hub = createHub({ gapWaitMs: 5, maxBufferedBytes: 64 * 1024 });
  hub.readGapsWith(() => new Promise((r) => release = () => r([])));
  const s = socket();
  const conn = hub.add("a", s);
  hub.finishReplay(conn, 0);
  const big = (seq: number) => JSON.stringify({ seq, pad: "x".repeat(1000) });
  try {
    hub.deliver("a", 1, big(1));
    hub.deliver("a", 3, big(3));
    await later(30);
    for (let seq = 4; seq <= 1_000 && s.readyState === 1; seq++) hub.deliver("a", seq, big(seq));
    assert.equal(s.closedWith, CLOSE_RECONNECT, "held ~1 MB for a 64 KiB limit");
    assert.equal(conn.held, null, "what it held is let go");
  } finally {
    release();
    hub.remove(conn);
  }
});

Deno.test("createHub() reads a gap above 130,000 held frames without throwing", async () => {
  // The highest held seq was found with Math.max(...keys): past ~125,000 arguments V8 throws
  // RangeError in the timer's promise, unhandled, and Deno exits (every agent's socket).
  const asked: Array<[number, number]> = [];
  const { hub, s, conn } = hubWith((_agent, after, upTo) => {
    asked.push([after, upTo]);
    return Promise.resolve([]);
  });
  try {
    for (let seq = 2; seq <= 130_001; seq++) hub.deliver("a", seq, frame(seq));
    await later(80);
    assert.deepEqual(asked[0], [0, 130_001]);
    assert.equal(s.seqs.length, 130_000);
    assert.equal(s.seqs.at(-1), 130_001);
  } finally {
    hub.remove(conn);
  }
});

Deno.test("createHub() writes every seq once and in order whatever order they come in", async () => {
  // Shuffled arrivals with some never coming live (read from the log): no seq twice, none
  // missing, and nothing left held (what it holds counts against the unsent limit).
  let state = 7;
  const random = () => (state = (state * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
  for (let round = 0; round < 10; round++) {
    const n = 200;
    const never = new Set<number>();
    // The last comes live: a hub learns of a missing seq only from one above it.
    for (let seq = 1; seq < n; seq++) if (random() < 0.05) never.add(seq);
    const { hub, s, conn } = hubWith((_agent, after, upTo) => {
      const found: Array<[number, string]> = [];
      for (let seq = after + 1; seq <= upTo; seq++) found.push([seq, frame(seq)]);
      return Promise.resolve(found);
    });
    try {
      const order = [...Array(n).keys()].map((i) => i + 1).filter((seq) => !never.has(seq));
      // Each arrives at most a few places early.
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.max(0, i - Math.floor(random() * 4));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      for (const seq of order) {
        hub.deliver("a", seq, frame(seq));
        if (random() < 0.02) await later(30);
      }
      await later(80);
      assert.deepEqual(s.seqs, [...Array(n).keys()].map((i) => i + 1), `round ${round}`);
      assert.equal(conn.held, null);
      assert.equal(conn.heldChars, 0);
    } finally {
      hub.remove(conn);
    }
  }
});

Deno.test("createHub() bounds the frames a replaying socket buffers for a reader that stopped", () => {
  // A replay paced by a reader that stopped waits up to 30 s; an agent's live frames queued
  // behind it without end.
  const hub = createHub({ maxBufferedBytes: 64 * 1024 });
  const s = socket();
  const conn = hub.add("a", s);
  try {
    const big = JSON.stringify({ seq: 0, pad: "x".repeat(1000) });
    let seq = 0;
    while (s.readyState === 1 && seq < 1000) hub.deliver("a", ++seq, big);
    assert.equal(s.closedWith, CLOSE_RECONNECT);
    assert.ok(seq < 100, `closed after ${seq} frames of 1 KB`);
    assert.equal(conn.backlog?.length, 0, "nothing kept for the closed socket");
  } finally {
    hub.remove(conn);
  }
});
