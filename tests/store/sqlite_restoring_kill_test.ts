// Review of the write-back (branch journal): a kill -9 while a deleted segment was being written
// back, once its copy was whole under `<segment>.log.restoring` and before the rename put it in
// place (strace kills the bridge at that rename). The next start neither read nor deleted the
// `.restoring` file: the messages answered success that it held were lost though every byte of
// them was on the disk, and the file stayed in bridge.journal for good.
import assert from "node:assert/strict";
import { followerPosts } from "./_follower_posts.ts";
import { killBridge as kill, spawnOnDefaultStore as spawn, waitReady } from "../helpers/spawn.ts";
import { lockFromOutside } from "../helpers/sqlite_lock.ts";
import { canTrace, mustTrace } from "../helpers/thread_hold.ts";
import { withTempDir } from "./_durable_store_cases.ts";

const { history, sendEach, firstFive } = followerPosts("oRestoring", 86_000_000);

const names = (dir: string) => {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
};

Deno.test({
  name: "a kill -9 at the rename of a segment written back: the next start reads its copy",
  ignore: !canTrace && !mustTrace,
  fn: async () => {
    await withTempDir(async (dir) => {
      const journalDir = `${dir}/bridge.journal`;
      let p = spawn(dir);
      try {
        await waitReady(p);
        const expected: string[] = [];
        await firstFive(p, expected);
        // m1..m5 in the tables (the worker writes within about 120 ms).
        await new Promise((r) => setTimeout(r, 1000));
        const unlock = await lockFromOutside(`${dir}/bridge.sqlite`);
        try {
          // Answered success; the tables cannot take them while the lock is held.
          await sendEach(p, 6, 10, expected);
          const segment = names(journalDir).filter((n) => n.endsWith(".log")).at(-1)!;
          const temp = `${journalDir}/${segment}.restoring`;
          // The main thread (the journal's look) killed at the rename of the copy into place.
          const strace = new Deno.Command("strace", {
            args: [
              "-p",
              String(p.pid),
              "-P",
              temp,
              "-e",
              "trace=rename,renameat,renameat2",
              "-e",
              "inject=rename,renameat,renameat2:signal=SIGKILL",
            ],
            stdin: "null",
            stdout: "null",
            stderr: "piped",
          }).spawn();
          const reader = strace.stderr.pipeThrough(new TextDecoderStream()).getReader();
          let said = "";
          while (!said.includes("attached")) {
            const { value, done } = await reader.read();
            if (done) throw new Error(`strace ended: ${said}`);
            said += value;
          }
          await Deno.remove(journalDir, { recursive: true });
          const status = await p.status;
          assert.equal(status.signal, "SIGKILL", "killed at the rename");
          await reader.cancel();
          await strace.status;
          assert.ok(names(journalDir).includes(`${segment}.restoring`), names(journalDir).join());
        } finally {
          await unlock();
        }
        p = spawn(dir);
        await waitReady(p);
        assert.deepEqual(await history(p), expected);
        assert.deepEqual(names(journalDir).filter((n) => n.includes(".restoring")), []);
      } finally {
        await kill(p, "SIGKILL");
      }
    });
  },
});
