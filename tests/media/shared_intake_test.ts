// The shared media intake (several instances on Redis) against a queue whose head cannot be
// read: a head that fails again and again is set aside, so the follower's later messages go
// on; while the store cannot be reached nothing is ever set aside, however long it lasts.

import assert from "node:assert/strict";
import type { InboundItem, MediaQueue, QueuedItem } from "../../src/core/store.ts";
import type { MediaPipeline } from "../../src/media/pipeline.ts";
import { createSharedMediaIntake } from "../../src/media/shared_intake.ts";

const text: InboundItem = {
  followerId: "oQ",
  name: "",
  to: "gh_account",
  envelope: {
    data: {
      id: "1",
      name: "oQ",
      avatar: "",
      msg_type: "text",
      contact_id: "oQ",
      company_id: "",
      send_time: 1_700_000_000,
      msg: { content: "after the bad one" },
    },
    result: { code: 1001, message: "common" },
  },
  kind: "message",
  receivedAt: 0,
  dedupKey: "m|oQ|1",
};

/** A queue of one follower: a head that throws `error` until set aside, then `text`. */
function queueWithBadHead(error: Error) {
  let entries: ("bad" | QueuedItem)[] = ["bad", {
    item: text,
    publicBase: null,
    stored: false,
    raw: "t",
  }];
  const calls = { heads: 0, asides: 0 };
  const queue: MediaQueue = {
    push: () => Promise.resolve(),
    followers: () => Promise.resolve(entries.length > 0 ? ["oQ"] : []),
    lease: () => Promise.resolve(true),
    renew: () => Promise.resolve(true),
    head() {
      calls.heads++;
      const head = entries[0];
      if (head === undefined) return Promise.resolve(null);
      return head === "bad" ? Promise.reject(error) : Promise.resolve(head);
    },
    pop() {
      entries = entries.slice(1);
      return Promise.resolve(entries.length);
    },
    release: () => Promise.resolve(),
    setAside() {
      calls.asides++;
      entries = entries.slice(1);
      return Promise.resolve(entries.length);
    },
  };
  /** What the store does with an entry stored from the queue: pops it in the same step. */
  const stored = (raw: string | undefined) => {
    const head = entries[0];
    if (head !== undefined && head !== "bad" && head.raw === raw) entries = entries.slice(1);
  };
  return { queue, calls, stored };
}

/** Runs the intake on that queue until `done` says so (10 s at most), then stops it. */
async function run(
  error: Error,
  unreachable: boolean,
  done: (calls: { heads: number; asides: number }, accepted: InboundItem[]) => boolean,
) {
  const { queue, calls, stored } = queueWithBadHead(error);
  const accepted: InboundItem[] = [];
  const intake = createSharedMediaIntake({
    pipeline: {} as MediaPipeline,
    queue,
    accept: (item) => {
      accepted.push(item);
      stored(item.fromQueue);
      return Promise.resolve({ kind: "stored" } as never);
    },
    unreachable: () => unreachable,
    sweepMs: 5,
  });
  await intake.recover();
  const deadline = Date.now() + 10_000;
  while (!done(calls, accepted) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  intake.stop();
  await intake.drain();
  return { calls, accepted };
}

Deno.test("a media queue's head that keeps failing is set aside; the follower's next message goes on", async () => {
  const { calls, accepted } = await run(
    new SyntaxError("Unexpected token"),
    false,
    (_, accepted) => accepted.length > 0,
  );
  assert.equal(calls.asides, 1);
  assert.ok(calls.heads >= 10, `${calls.heads} tries`);
  assert.deepEqual(accepted.map((i) => i.envelope.data.msg["content"]), ["after the bad one"]);
});

Deno.test("while the store cannot be reached, a media queue's head is never set aside", async () => {
  // Three times the tries after which any other failure sets the head aside.
  const { calls, accepted } = await run(
    new Error("Connection is closed."),
    true,
    (calls) => calls.heads >= 30,
  );
  assert.equal(calls.asides, 0);
  assert.ok(calls.heads >= 30, `${calls.heads} tries`);
  assert.deepEqual(accepted, []);
});
