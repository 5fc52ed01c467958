// bridge.sqlite deleted under a running main.ts (a cleanup script, an `rm` in the wrong
// directory): the process wrote on to the deleted file, let the journal go as applied, and the
// next start opened an empty file, every message answered `success` gone. Now the file is
// written back from the open database and the journal kept until the next start.
import assert from "node:assert/strict";
import { followerPosts, notReady, readiness } from "./_follower_posts.ts";

const { history, sendEach, hasAll, withFiveRead } = followerPosts("oDeleted", 83_000_000);

// SIGTERM: a clean stop let the last segment go too. (After kill -9 the segments a run had not
// yet let go were what a restart found, which with one segment happened to be everything.)
const signal = "SIGTERM";
Deno.test("bridge.sqlite deleted while main.ts runs: after SIGTERM and a restart every message is there", async (t) => {
  await withFiveRead(async (run) => {
    const { dir, expected } = run;
    await t.step("five messages reach a1 and the tables", async () => {
      assert.deepEqual(await history(run.p), expected);
    });
    await t.step("the file goes; five more are answered success while a1 is away", async () => {
      for (const name of ["bridge.sqlite", "bridge.sqlite-wal", "bridge.sqlite-shm"]) {
        await Deno.remove(`${dir}/${name}`);
      }
      await sendEach(run.p, 6, 10, expected);
      // Read from the tables: every commit is applied, as before a clean stop.
      assert.deepEqual(await history(run.p), expected);
    });
    await t.step(`after ${signal} and a restart: history and since= have all ten`, async () => {
      await run.restart(signal);
      assert.equal(expected.length, 10);
      await hasAll(run.p, expected);
    });
  });
});

/** The inode at `path`, null when there is none. */
function inode(path: string): number | null {
  try {
    return Deno.statSync(path).ino;
  } catch {
    return null;
  }
}

Deno.test("the copy written back deleted, and another file put there at once: called replaced, not taken for the copy", async () => {
  // The copy was held by nothing, so ext4 gave its inode number to the next file made at the
  // path (an operator's `cp`, `sqlite3` opening it): by number that was still the copy, never
  // written back nor said, and a restart opened that file with the messages before the copy gone.
  await withFiveRead(async ({ file, p }) => {
    const first = inode(file);
    await Deno.remove(file);
    const deadline = performance.now() + 10_000;
    while (inode(file) === null || inode(file) === first) {
      assert.ok(performance.now() < deadline, "bridge.sqlite was not written back");
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await readiness(p)).status, 200);
    // Deleted, and a file made there before the next look.
    await Deno.remove(file);
    await Deno.writeTextFile(file, "");
    await notReady(p);
    // Said at error, as when the operator's own file is moved in with the first one there.
    await p.printed(/replaced while the bridge ran: restart it to use the new file/);
    assert.equal(await Deno.readTextFile(file), "", "never written over");
  });
});
