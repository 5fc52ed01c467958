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
