// One instance: a follower's new picture, journaled while a revoke deletes the follower's pending
// journal files, joined the set those files were being read from, so its own file went too. It
// was answered `success` and stored only if the process lived until its media came: a crash
// or a restart before that lost it. Now the forget deletes only the files it found.

import assert from "node:assert/strict";
import { createMediaIntake, readJournal } from "../../src/media/intake.ts";
import type { MediaPipeline, MediaResult } from "../../src/media/pipeline.ts";
import type { InboundItem } from "../../src/core/store.ts";
import type { Envelope } from "../../src/protocol/envelope.ts";

function picture(id: string): InboundItem {
  return {
    followerId: "oFollower",
    name: null,
    to: "gh_account",
    envelope: {
      data: { id, msg_type: "image", msg: { media_id: `media-${id}` } },
      result: {},
    } as unknown as Envelope,
    kind: "message",
    receivedAt: 1_700_000_000_000,
    dedupKey: id,
  };
}

/** A promise and the function that settles it. */
function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => open = resolve);
  return { promise, open };
}

/** An intake whose stored messages are noted in `calls` ("stored <id>"), in order. */
function recordingIntake(dir: string, pipeline: MediaPipeline) {
  const calls: string[] = [];
  const intake = createMediaIntake({
    pipeline,
    journalDir: dir,
    accept: (item) => {
      calls.push(`stored ${item.envelope.data.id}`);
      return Promise.resolve("delivered");
    },
  });
  return { calls, intake };
}

Deno.test("MediaIntake.forget() keeps the journal file of a picture that came while it ran", async () => {
  const dir = await Deno.makeTempDir();
  const fetches = new Map<string, ReturnType<typeof gate<MediaResult>>>();
  const pipeline: MediaPipeline = {
    process(input) {
      const fetched = gate<MediaResult>();
      fetches.set(input.mediaId!, fetched);
      return fetched.promise;
    },
  };
  const stored: unknown[] = [];
  const intake = createMediaIntake({
    pipeline,
    journalDir: dir,
    accept: (item) => {
      stored.push(item.envelope.data.id);
      return Promise.resolve("delivered");
    },
  });
  const remove = Deno.remove;
  try {
    await intake.recover();
    // Before the revoke: its media is still being fetched.
    await intake.submit(picture("before"), "http://bridge");
    // The forget's first file deletion waits until the next picture is journaled.
    const journaled = gate();
    let first = true;
    Deno.remove = async (path, options) => {
      if (first) {
        first = false;
        await journaled.promise;
      }
      return await remove(path, options);
    };
    const forgetting = intake.forget("oFollower", () => Promise.resolve());
    // The follower writes again at once; WeChat is answered once this resolves.
    await intake.submit(picture("after"), "http://bridge");
    journaled.open();
    await forgetting;
    Deno.remove = remove;

    const left = (await readJournal(dir)).map(({ job }) => job.item.envelope.data.id);
    assert.deepEqual(left, ["after"], "the picture after the revoke must stay journaled");

    fetches.get("media-before")!.open({ media_path: "/m/before" });
    while (!fetches.has("media-after")) await new Promise((r) => setTimeout(r, 10));
    fetches.get("media-after")!.open({ media_path: "/m/after" });
    await intake.drain();
    assert.deepEqual(stored, ["after"]);
    assert.deepEqual(await readJournal(dir), []);
  } finally {
    Deno.remove = remove;
    await Deno.remove(dir, { recursive: true });
  }
});

// WeChat retries a revoke the bridge is slow to answer: the retry found nothing left to drop
// and let the follower's next picture through while the first revoke had not reached the store
// yet, whose forget then deleted that picture.
Deno.test("MediaIntake.forget() twice at once: a picture after both is stored after both forgets", async () => {
  const dir = await Deno.makeTempDir();
  const before = gate<MediaResult>();
  const pipeline: MediaPipeline = {
    process: (input) =>
      input.mediaId === "media-before" ? before.promise : Promise.resolve({ media_path: "/m" }),
  };
  const { calls, intake } = recordingIntake(dir, pipeline);
  const remove = Deno.remove;
  try {
    await intake.recover();
    await intake.submit(picture("before"), "http://bridge");
    // The first revoke's file deletion waits until the rest has happened.
    const held = gate();
    let first = true;
    Deno.remove = async (path, options) => {
      if (first) {
        first = false;
        await held.promise;
      }
      return await remove(path, options);
    };
    const forget = (n: number) => () => {
      calls.push(`forget ${n}`);
      return Promise.resolve();
    };
    const revoked = intake.forget("oFollower", forget(1));
    const retried = intake.forget("oFollower", forget(2));
    await intake.submit(picture("after"), "http://bridge");
    // Whatever can run without the first revoke's deletion has run.
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
    held.open();
    await Promise.all([revoked, retried]);
    Deno.remove = remove;
    before.open({ media_path: "/m/before" });
    await intake.drain();
    assert.deepEqual(calls, ["forget 1", "forget 2", "stored after"]);
  } finally {
    Deno.remove = remove;
    await Deno.remove(dir, { recursive: true });
  }
});

// A picture still being written to the journal when the revoke came: the forget found nothing
// of it pending, ran, and then the picture was scheduled, fetched and stored, so the forgotten
// follower's conversation came back (its media file too). Now a picture is the forget's to drop
// from the moment it is submitted: its file goes once written, and it is never fetched.
Deno.test("MediaIntake.forget() drops a picture still being journaled when it runs", async () => {
  const dir = await Deno.makeTempDir();
  const fetched: string[] = [];
  const pipeline: MediaPipeline = {
    process(input) {
      fetched.push(input.mediaId!);
      return Promise.resolve({ media_path: `/m/${input.mediaId}` });
    },
  };
  const { calls, intake } = recordingIntake(dir, pipeline);
  const writeTextFile = Deno.writeTextFile;
  try {
    await intake.recover();
    // The picture's journal file is being written when the revoke comes.
    const writing = gate();
    const written = gate();
    Deno.writeTextFile = async (path, data, options) => {
      writing.open();
      await written.promise;
      return await writeTextFile(path, data, options);
    };
    const submitted = intake.submit(picture("before"), "http://bridge");
    await writing.promise;
    Deno.writeTextFile = writeTextFile;
    const forgotten = intake.forget("oFollower", () => {
      calls.push("forget");
      return Promise.resolve();
    });
    written.open();
    // WeChat was answered for the picture (it is journaled), then the forget returned.
    await submitted;
    await forgotten;
    await intake.drain();
    assert.deepEqual(calls, ["forget"], "the picture before the revoke was stored after it");
    assert.deepEqual(fetched, [], "the forgotten picture was fetched");
    assert.deepEqual(await readJournal(dir), [], "its journal file was left");
    // The follower writes again: a new picture is stored, after the forget.
    await intake.submit(picture("after"), "http://bridge");
    await intake.drain();
    assert.deepEqual(calls, ["forget", "stored after"]);
  } finally {
    Deno.writeTextFile = writeTextFile;
    await Deno.remove(dir, { recursive: true });
  }
});
