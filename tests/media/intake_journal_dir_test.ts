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

Deno.test("MediaIntake journals a job after its journal directory was deleted", async () => {
  const root = await Deno.makeTempDir();
  const dir = `${root}/media-jobs`;
  // The media never comes: the job stays journaled.
  const pipeline: MediaPipeline = { process: () => new Promise(() => {}) };
  const intake = createMediaIntake({
    pipeline,
    journalDir: dir,
    accept: () => Promise.resolve("delivered"),
  });
  try {
    await intake.recover();
    await Deno.remove(dir, { recursive: true });
    await intake.submit(picture, "http://bridge");
    const left = (await readJournal(dir)).map(({ job }) => job.item.envelope.data.id);
    assert.deepEqual(left, ["p1"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
