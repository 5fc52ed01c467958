// The journal's live segment (or its whole directory) deleted under a running main.ts while
// bridge.sqlite is locked from outside, so the worker cannot write what the segment held: the
// journal began a new segment and left those commits to reach the tables from memory, and a
// kill -9 before the lock went lost messages answered `success`. Now the deleted segments are
// written back from the descriptors the journal holds, before anything more is appended.
import assert from "node:assert/strict";
import { followerPosts } from "./_follower_posts.ts";
import {
  killBridge as kill,
  type SpawnedBridge,
  spawnOnDefaultStore as spawn,
  waitReady,
} from "../helpers/spawn.ts";
import { lockFromOutside } from "../helpers/sqlite_lock.ts";
import { withTempDir } from "./_durable_store_cases.ts";

const { history, sendEach, firstFive } = followerPosts("oKilled", 85_000_000);

/** The journal's segments in `journalDir` (none while it is missing). */
function segments(journalDir: string): string[] {
  try {
    return [...Deno.readDirSync(journalDir)].map((e) => e.name).filter((n) => n.endsWith(".log"));
  } catch {
    return [];
  }
}

/** Resolves once `journalDir` holds a segment again (the file guard looks every second). */
async function segmentAgain(p: SpawnedBridge, journalDir: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (segments(journalDir).length === 0) {
    if (performance.now() > deadline) throw new Error(`No segment in ${journalDir} again`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await p.printed(/deleted while the bridge ran/);
}

const deletions: Array<[string, (journalDir: string) => Promise<void>]> = [
  ["the live segment", async (journalDir) => {
    for (const name of segments(journalDir)) await Deno.remove(`${journalDir}/${name}`);
  }],
  ["bridge.journal", (journalDir) => Deno.remove(journalDir, { recursive: true })],
];

for (const [what, remove] of deletions) {
  Deno.test(`${what} deleted while bridge.sqlite is locked elsewhere: after a kill -9 and a restart every message answered success is there`, async () => {
    await withTempDir(async (dir) => {
      const journalDir = `${dir}/bridge.journal`;
      let p = spawn(dir);
      const first = p;
      try {
        await waitReady(p);
        const expected: string[] = [];
        await firstFive(p, expected);
        assert.deepEqual(await history(p), expected);
        const unlock = await lockFromOutside(`${dir}/bridge.sqlite`);
        try {
          // Answered success; the worker cannot write them while the lock is held.
          await sendEach(p, 6, 10, expected);
          await remove(journalDir);
          await segmentAgain(p, journalDir);
          await sendEach(p, 11, 13, expected);
          await kill(p, "SIGKILL");
        } finally {
          await unlock();
        }
        p = spawn(dir);
        await waitReady(p);
        assert.deepEqual(await history(p), expected);
        // Said, as the operator must hear what became of the files.
        const { stdout, stderr } = await first.output;
        assert.match(stdout + stderr, /are written back from the open files/);
      } finally {
        await kill(p, "SIGKILL");
      }
    });
  });
}
