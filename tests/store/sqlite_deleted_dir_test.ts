// DATA_DIR removed whole under a running main.ts (`rm -rf data/`, a cleanup job pointed one level
// too high): bridge.sqlite could not be written back (its directory was gone), the journal's
// segment went with it, and every message answered `success`, before the removal and after,
// was gone after any restart, a clean one too ("Stopped cleanly"). Now the directory is made
// again, the journal begins a new segment there and the tables are copied back whole.
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { connectAgent } from "../helpers/agent.ts";
import { followerPosts } from "./_follower_posts.ts";
import {
  killBridge as kill,
  type SpawnedBridge,
  spawnOnDefaultStore as spawn,
  waitReady,
} from "../helpers/spawn.ts";
import { fileExists, withTempDir } from "./_durable_store_cases.ts";
import { canTrace, holdThreadIdle, mustTrace, threadsNamed } from "../helpers/thread_hold.ts";

const B = "/im_component/wx_official_account";

const { send, history, sendEach, firstFive } = followerPosts("oGone", 84_000_000);

/** Resolves once `path` exists again (the guard looks every second). */
async function reappears(path: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!await fileExists(path)) {
    if (performance.now() > deadline) throw new Error(`${path} was not written back`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const signal of ["SIGKILL", "SIGTERM"] as const) {
  Deno.test(`DATA_DIR removed whole while main.ts runs: after ${signal} and a restart every message is there`, async (t) => {
    await withTempDir(async (root) => {
      const dir = `${root}/data`;
      let p = spawn(dir);
      try {
        await waitReady(p);
        const expected: string[] = [];
        await t.step("five messages reach a1", async () => {
          await firstFive(p, expected);
        });
        await t.step("DATA_DIR goes; five more are answered success", async () => {
          await Deno.remove(dir, { recursive: true });
          await sendEach(p, 6, 10, expected);
          // A kill -9 loses what is in no file: the copy must be there first.
          if (signal === "SIGKILL") await reappears(`${dir}/bridge.sqlite`);
          assert.deepEqual(await history(p), expected);
        });
        await t.step("five more after the copy, in the new journal segment", async () => {
          await sendEach(p, 11, 15, expected);
        });
        await t.step(
          `after ${signal} and a restart: history and since= have all fifteen`,
          async () => {
            await kill(p, signal);
            p = spawn(dir);
            await waitReady(p);
            assert.deepEqual(await history(p), expected);
            const a1 = await connectAgent(`${p.wsBase}${B}/msg?userid=a1&since=1`);
            const replayed = await a1.waitForCount(15, 5000);
            await a1.close();
            assert.deepEqual(replayed.map((e) => e.data.msg?.content), expected);
          },
        );
      } finally {
        await kill(p, "SIGKILL");
      }
    });
  });
}

/** Texts `<prefix>1`, `<prefix>2`… numbered on across calls of `more`, each answered success and
 * pushed onto `expected`; `last` is the latest one sent. */
function numbered(prefix: string, expected: string[]) {
  let n = 0;
  return {
    async more(p: SpawnedBridge, count: number): Promise<void> {
      for (let i = 0; i < count; i++) {
        const content = `${prefix}${++n}`;
        assert.equal(await send(p, content), "200 success");
        expected.push(content);
      }
    },
    last: () => `${prefix}${n}`,
  };
}

/** The inode at `path`, null when there is none. */
function inode(path: string): number | null {
  try {
    return Deno.statSync(path).ino;
  } catch {
    return null;
  }
}

/** Resolves once a file other than `ino` is at `path` (written back, or again). */
async function rewritten(path: string, ino: number | null): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (inode(path) === null || inode(path) === ino) {
    if (performance.now() > deadline) throw new Error(`${path} was not written again`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether the SQLite file at `path` (copied, and the copy opened) holds a history item with
 * text `content`; false while it cannot be read (being renamed into place, say). */
function holdsItem(path: string, content: string): boolean {
  const copy = Deno.makeTempFileSync({ suffix: ".sqlite" });
  try {
    Deno.copyFileSync(path, copy);
    const db = new DatabaseSync(copy);
    try {
      const row = db.prepare("SELECT count(*) AS n FROM history WHERE item LIKE ?")
        .get(`%${JSON.stringify(content)}%`) as { n: number };
      return row.n > 0;
    } finally {
      db.close();
    }
  } catch {
    return false;
  } finally {
    for (const suffix of ["", "-wal", "-shm", "-journal"]) {
      try {
        Deno.removeSync(copy + suffix);
      } catch { /* not made */ }
    }
  }
}

for (const signal of ["SIGKILL", "SIGTERM"] as const) {
  // Once bridge.sqlite was written back, the tables the worker writes are the deleted file's:
  // every commit since is on disk in the journal only. A journal then deleted took them all
  // (the new segment holds what came after), after a kill -9 and after a clean stop alike;
  // later bridge.sqlite was written again with them. Now the journal's segments are written
  // back from the files it holds open, and the copy need not be made again.
  Deno.test(`bridge.journal removed after bridge.sqlite was written back: after ${signal} and a restart every message is there`, async () => {
    await withTempDir(async (root) => {
      const dir = `${root}/data`;
      const file = `${dir}/bridge.sqlite`;
      let p = spawn(dir);
      try {
        await waitReady(p);
        const expected: string[] = [];
        const { more, last } = numbered("w", expected);
        const a1 = await connectAgent(`${p.wsBase}${B}/msg?userid=a1`);
        await more(p, 3);
        await a1.waitForCount(4, 5000);
        await a1.close();
        const first = inode(file);
        await Deno.remove(file);
        await rewritten(file, first);
        await more(p, 3);
        assert.ok(!holdsItem(file, last()), "the copy holds only what came before it");
        await Deno.remove(`${dir}/bridge.journal`, { recursive: true });
        await more(p, 3);
        if (signal === "SIGKILL") {
          // A kill -9 loses what is in no file: the segment must be there again first.
          await p.printed(/are written back from the open files/);
          await more(p, 3);
        }
        assert.deepEqual(await history(p), expected);
        await kill(p, signal);
        p = spawn(dir);
        await waitReady(p);
        assert.deepEqual(await history(p), expected);
      } finally {
        await kill(p, "SIGKILL");
      }
    });
  });
}

Deno.test("bridge.journal deleted and not made again at once (a file in its way): refused meanwhile, then written back, and a kill -9 loses nothing", async () => {
  // The look that found the segment deleted threw while making the directory again, after it
  // had let go of the segments it wrote: every later look threw too, the appends went on into
  // the deleted segment, answered success, and bridge.sqlite was never written again.
  await withTempDir(async (root) => {
    const dir = `${root}/data`;
    const file = `${dir}/bridge.sqlite`;
    const journalDir = `${dir}/bridge.journal`;
    let p = spawn(dir);
    try {
      await waitReady(p);
      const expected: string[] = [];
      const { more } = numbered("b", expected);
      await more(p, 2);
      const first = inode(file);
      await Deno.remove(file);
      await rewritten(file, first);
      // From here the tables written are the deleted file's: these are in the journal only.
      await more(p, 2);
      await Deno.remove(journalDir, { recursive: true });
      await Deno.writeTextFile(journalDir, "in the way");
      await p.printed(/Cannot look at/);
      // Each of them, not the first only: the store's reload after a refusal read the journal's
      // directory, found a file, and threw, so the next were answered 500 Internal error.
      for (const text of ["while in the way", "and again", "WeChat's retry"]) {
        const refused = await send(p, text);
        assert.notEqual(refused, "200 success", "a message in no file answered success");
        assert.match(refused, /^503 /, `WeChat is told to send it again: ${refused}`);
      }
      const read = await fetch(`${p.base}${B}/history?userid=a1&contact_id=oGone`);
      await read.body?.cancel();
      assert.notEqual(read.status, 500, "an agent's read is no internal error");
      await Deno.remove(journalDir);
      await p.printed(/are written back from the open files/);
      await more(p, 2);
      await kill(p, "SIGKILL");
      p = spawn(dir);
      await waitReady(p);
      assert.deepEqual(await history(p), expected);
    } finally {
      await kill(p, "SIGKILL");
    }
  });
});

Deno.test("DATA_DIR removed under a bridge that committed nothing yet: a second one started on it waits for the first", async () => {
  // The journal's lock went with the directory; only a segment being written was looked at,
  // so a bridge with none (nothing committed since its start) never took the lock again.
  await withTempDir(async (root) => {
    const dir = `${root}/data`;
    const first = spawn(dir);
    let second: SpawnedBridge | null = null;
    try {
      await waitReady(first);
      await Deno.remove(dir, { recursive: true });
      // Each look takes the journal's lock again before it writes bridge.sqlite back.
      await reappears(`${dir}/bridge.sqlite`);
      const waiting = second = spawn(dir);
      // Long enough for it to start, were the lock free (it waits without a word for a second).
      const deadline = performance.now() + 3000;
      while (performance.now() < deadline) {
        const status: number | null = await fetch(`${waiting.base}/readyz`).then(async (r) => {
          await r.body?.cancel();
          return r.status;
        }, () => null);
        assert.equal(status, null, "the second bridge serves while the first runs");
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(await send(first, "still here"), "200 success");
      await kill(first, "SIGTERM");
      await waitReady(waiting);
      // Queued by the first (no agent was online), handed to the first agent by the second.
      const a1 = await connectAgent(`${waiting.wsBase}${B}/msg?userid=a1`);
      const got = await a1.waitForCount(2, 5000);
      await a1.close();
      assert.ok(got.some((e) => e.data.msg?.content === "still here"), JSON.stringify(got));
    } finally {
      await kill(first, "SIGKILL");
      if (second) await kill(second, "SIGKILL");
    }
  });
});

/** The paths `pid`'s open descriptors name, as /proc has them (read by a shell: /proc of
 * another process needs --allow-all here). */
async function openPaths(pid: number): Promise<string[]> {
  const out = await new Deno.Command("bash", {
    args: ["-c", `for f in /proc/${pid}/fd/*; do readlink "$f"; done`],
    stdout: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((line) => line !== "");
}

Deno.test("bridge.journal removed again and again under main.ts: the locks of the directories gone are let go", async () => {
  // Each directory made again took its lock again and kept the one before open until the
  // store closed: a descriptor for every removal, for as long as the bridge ran.
  await withTempDir(async (root) => {
    const dir = `${root}/data`;
    const journalDir = `${dir}/bridge.journal`;
    const p = spawn(dir);
    try {
      await waitReady(p);
      assert.equal(await send(p, "l0"), "200 success");
      for (let i = 1; i <= 5; i++) {
        await Deno.remove(journalDir, { recursive: true });
        // Taken again by the next look (every second), or by this message's new segment.
        await reappears(`${journalDir}/lock`);
        assert.equal(await send(p, `l${i}`), "200 success");
      }
      const locks = (await openPaths(p.pid)).filter((path) =>
        path.startsWith(`${journalDir}/lock`)
      );
      // The one taken at the start (the store's own) and the one in the directory there now.
      assert.ok(locks.length <= 2, `locks held after five removals: ${locks.join(", ")}`);
    } finally {
      await kill(p, "SIGKILL");
    }
  });
});

if (!canTrace && !mustTrace) {
  // deno-lint-ignore no-console
  console.log("Skipping the held-worker journal test: strace is missing or may not trace here");
}

Deno.test({
  name: "bridge.journal deleted while the worker has not written its last commits: a reload " +
    "after a refusal has them, and nothing answered success is lost",
  ignore: !canTrace && !mustTrace,
  fn: async () => {
    // A callback refused (the journal's directory not made again) reloads the store from the
    // tables and the journal on disk; the commits of the deleted segment the worker had not
    // written were in neither, so the model went back before them, and the next callback
    // answered success took their places (seq, history): one of them was gone after a restart.
    // Now they are written back into the journal on disk before the reload reads it.
    if (!canTrace) throw new Error("strace is missing or may not trace here (CI=true)");
    await withTempDir(async (root) => {
      const dir = `${root}/data`;
      const journalDir = `${dir}/bridge.journal`;
      let p = spawn(dir);
      try {
        await waitReady(p);
        const a1 = await connectAgent(`${p.wsBase}${B}/msg?userid=a1`);
        const expected: string[] = [];
        await sendEach(p, 1, 2, expected);
        await a1.waitForCount(3, 5000);
        assert.deepEqual(await history(p), expected);

        const workers = await threadsNamed(p.pid, /^worker-\d+$/);
        assert.equal(workers.length, 1, `one worker thread, found ${workers.length}`);
        // Held once it waits for work again: m3 is handed to it, not written.
        const held = await holdThreadIdle(workers[0]!);
        let after: string;
        try {
          await sendEach(p, 3, 3, expected);
          await held.entered;
          await Deno.remove(journalDir, { recursive: true });
          await Deno.writeTextFile(journalDir, "in the way");
          await p.printed(/Cannot look at/);
          assert.match(await send(p, "refused"), /^503 /);
          await Deno.remove(journalDir);
          // The journal can begin a segment again; the tables still lack m3.
          after = await send(p, "m4");
        } finally {
          await held.release();
        }
        // Taken once the journal is written back (refused at most until the look that does it):
        // WeChat sends it again.
        for (let tries = 0; after !== "200 success"; tries++) {
          assert.match(after, /^503 /, after);
          assert.ok(tries < 100, "m4 is taken once the journal is written back");
          await new Promise((r) => setTimeout(r, 50));
          after = await send(p, "m4");
        }
        expected.push("m4");
        await a1.waitFor((e) => e.data.msg?.content === "m4");
        await a1.close();
        assert.deepEqual(await history(p), expected);
        await kill(p, "SIGKILL");
        p = spawn(dir);
        await waitReady(p);
        assert.deepEqual(await history(p), expected);
        const again = await connectAgent(`${p.wsBase}${B}/msg?userid=a1&since=1`);
        const replayed = await again.waitForCount(4, 5000);
        await again.close();
        assert.deepEqual(replayed.map((e) => e.data.msg?.content), expected);
      } finally {
        await kill(p, "SIGKILL");
      }
    });
  },
});
