// Review of retention15: a start under a changed HISTORY_RETENTION_DAYS first applies the
// journal's tail (commits a killed bridge had not written to the tables) under the NEW value,
// then shortenToRetention() moves every history expiry by (new - old): those rows are moved a
// second time. After a cut (365 to 1 day) the conversation's newest message is already past its
// time, and the pruner deletes the whole conversation at that very start.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { followerPosts } from "./_follower_posts.ts";
import { killBridge as kill, spawnBridge, waitReady } from "../helpers/spawn.ts";
import { lockFromOutside } from "../helpers/sqlite_lock.ts";
import { withTempDir } from "./_durable_store_cases.ts";

const { sendEach } = followerPosts("oTail", 86_000_000);

function rows(dir: string): number {
  const db = new DatabaseSync(`${dir}/bridge.sqlite`, { readOnly: true });
  try {
    return Number(
      (db.prepare("SELECT count(*) AS n FROM history WHERE follower_id = 'oTail'").get() as {
        n: number;
      }).n,
    );
  } finally {
    db.close();
  }
}

Deno.test("a kill -9, then a start under a cut HISTORY_RETENTION_DAYS: today's conversation is kept", async () => {
  await withTempDir(async (dir) => {
    const env = (days: number) => ({ DATA_DIR: dir, STORE: "", HISTORY_RETENTION_DAYS: `${days}` });
    let p = spawnBridge(env(365));
    try {
      await waitReady(p);
      const expected: string[] = [];
      await sendEach(p, 1, 2, expected);
      // The tables are locked elsewhere: m3 and m4 are in the journal only when the bridge dies.
      const unlock = await lockFromOutside(`${dir}/bridge.sqlite`);
      try {
        await sendEach(p, 3, 4, expected);
        await kill(p, "SIGKILL");
      } finally {
        await unlock();
      }
      p = spawnBridge(env(1));
      await waitReady(p);
      // Written minutes ago, kept for a day: all four are there.
      assert.equal(rows(dir), 4);
    } finally {
      await kill(p, "SIGKILL");
    }
  });
});
