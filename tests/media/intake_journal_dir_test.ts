// DATA_DIR removed whole under a running bridge took the media jobs' journal directory with it:
// every picture or voice after that failed to be journaled (500, WeChat retrying in vain) until
// a restart. Now the directory is made again and the job journaled there.

import assert from "node:assert/strict";
import { createMediaIntake, readJournal } from "../../src/media/intake.ts";
import type { MediaPipeline } from "../../src/media/pipeline.ts";
import type { InboundItem } from "../../src/core/store.ts";
import type { Envelope } from "../../src/protocol/envelope.ts";

const picture: InboundItem = {
  followerId: "oFollower",
  name: null,
  to: "gh_account",
  envelope: {
    data: { id: "p1", msg_type: "image", msg: { media_id: "media-p1" } },
    result: {},
  } as unknown as Envelope,
  kind: "message",
  receivedAt: 1_700_000_000_000,
  dedupKey: "p1",
};

/** An intake journaling into a directory of its own, whose media never comes (jobs stay). */
async function pendingIntake() {
  const root = await Deno.makeTempDir();
  const dir = `${root}/media-jobs`;
  const pipeline: MediaPipeline = { process: () => new Promise(() => {}) };
  const intake = createMediaIntake({
    pipeline,
    journalDir: dir,
    accept: () => Promise.resolve("delivered"),
  });
  return { root, dir, intake };
}

Deno.test("MediaIntake journals a job after its journal directory was deleted", async () => {
  const { root, dir, intake } = await pendingIntake();
  try {
    await intake.recover();
    await Deno.remove(dir, { recursive: true });
    await intake.submit(picture, "http://bridge");
    const left = (await readJournal(dir)).map(({ job }) => job.item.envelope.data.id);
    assert.deepEqual(left, ["p1"]);
  } finally {
    await intake.stop();
    await Deno.remove(root, { recursive: true });
  }
});

/** Resolves once `dir` holds journaled jobs again, with their ids; fails after 5 s. */
async function journaledAgain(dir: string): Promise<string[]> {
  const deadline = performance.now() + 5000;
  while (true) {
    const ids = (await readJournal(dir)).map(({ job }) => job.item.envelope.data.id);
    if (ids.length > 0) return ids;
    if (performance.now() > deadline) throw new Error(`nothing is journaled in ${dir}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test("MediaIntake journals its pending jobs again when their directory was deleted", async (t) => {
  // Answered `success` once journaled, and pending (a slow download, a follower's text behind
  // its picture): deleted with DATA_DIR, they would be gone at the next start, after a kill -9
  // or a SIGTERM, while the store wrote everything else back.
  const { root, dir, intake } = await pendingIntake();
  const text: InboundItem = {
    ...picture,
    envelope: {
      data: { id: "t1", msg_type: "text", msg: { content: "hi" } },
      result: {},
    } as unknown as Envelope,
    dedupKey: "t1",
  };
  try {
    await intake.recover();
    await intake.submit(picture, "http://bridge");
    assert.ok(intake.wants(text), "the text waits behind the picture");
    await intake.submit(text, "http://bridge");
    await t.step("within a second of the removal, as the store's file", async () => {
      await Deno.remove(dir, { recursive: true });
      assert.deepEqual(await journaledAgain(dir), ["p1", "t1"]);
    });
    await t.step("at stop, removed since the last look", async () => {
      await Deno.remove(dir, { recursive: true });
      await intake.stop();
      assert.deepEqual(
        (await readJournal(dir)).map(({ job }) => job.item.envelope.data.id),
        ["p1", "t1"],
      );
    });
  } finally {
    await intake.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("MediaIntake journals its pending jobs again at the next look when a write failed", async () => {
  // A look whose write failed (no room left) had taken the directory made again as done: the
  // jobs it had not written were in no file for good, and a restart lost them.
  const { root, dir, intake } = await pendingIntake();
  const second: InboundItem = {
    ...picture,
    followerId: "oOther",
    envelope: {
      data: { id: "p2", msg_type: "image", msg: { media_id: "media-p2" } },
      result: {},
    } as unknown as Envelope,
    dedupKey: "p2",
  };
  try {
    await intake.recover();
    await intake.submit(picture, "http://bridge");
    await intake.submit(second, "http://bridge");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.equal(names.length, 2);
    await Deno.remove(dir, { recursive: true });
    // Made again with the first job's temporary file taken by a directory: its write fails.
    await Deno.mkdir(`${dir}/.${names[0]}.tmp`, { recursive: true });
    // Two looks (one a second) fail on it.
    await new Promise((r) => setTimeout(r, 2500));
    assert.deepEqual(await readJournal(dir), [], "nothing is written past the failed one");
    await Deno.remove(`${dir}/.${names[0]}.tmp`);
    assert.deepEqual((await journaledAgain(dir)).sort(), ["p1", "p2"]);
  } finally {
    await intake.stop();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("MediaIntake journals its pending jobs again in a directory made again at once", async () => {
  // Made again before the look (a job's write, the store's copy, the operator): by inode number
  // alone it was often the same directory (ext4 gave it the deleted one's), and nothing was
  // journaled again.
  const { root, dir, intake } = await pendingIntake();
  try {
    await intake.recover();
    await intake.submit(picture, "http://bridge");
    await Deno.remove(dir, { recursive: true });
    await Deno.mkdir(dir);
    assert.deepEqual(await journaledAgain(dir), ["p1"]);
  } finally {
    await intake.stop();
    await Deno.remove(root, { recursive: true });
  }
});
