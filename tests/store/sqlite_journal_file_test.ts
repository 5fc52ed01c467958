// The SQLite store's journal file: lines read back in order across segments, a line a crash
// cut short left out, segments deleted once applied, a new run starting clean.

import assert from "node:assert/strict";
import { openJournalDir, readJournalDir } from "../../src/store/sqlite_journal_file.ts";
import { CommitLine } from "../../src/store/sqlite_journal_line.ts";
import { withTempDir } from "./_durable_store_cases.ts";

function line(i: number): string {
  const commit = new CommitLine(i, 1000 + i);
  commit.forgotten(`follower ${i} 长`);
  return commit.text();
}
const bytes = (i: number) => new TextEncoder().encode(line(i));
const ids = (dir: string, after = 0) => readJournalDir(dir, after).map((c) => c.id);
const files = (dir: string) =>
  [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".log")).sort();

Deno.test("openJournalDir() appends lines that readJournalDir() gives back", async (t) => {
  await withTempDir(async (dir) => {
    const journalDir = `${dir}/bridge.journal`;
    // Small segments: a few lines each.
    const journal = openJournalDir(journalDir, 0, false, 100);
    try {
      for (let i = 1; i <= 10; i++) journal.append(i, bytes(i));
      await t.step("in order, across segments, after a given commit", () => {
        assert.ok(files(journalDir).length > 2, files(journalDir).join());
        assert.deepEqual(ids(journalDir), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert.deepEqual(ids(journalDir, 7), [8, 9, 10]);
        const [first] = readJournalDir(journalDir, 0);
        assert.deepEqual(first, { id: 1, t: 1001, f: ["follower 1 长"] });
      });
      await t.step("a commit out of order is refused", () => {
        assert.throws(() => journal.append(12, bytes(12)), /11 is next/);
      });
      await t.step("segments go once the tables have all of them", async () => {
        const before = files(journalDir);
        await journal.release(6);
        const after = files(journalDir);
        assert.ok(after.length < before.length);
        assert.deepEqual(ids(journalDir, 6), [7, 8, 9, 10], "nothing unapplied went");
        await journal.release(10, true);
        assert.deepEqual(files(journalDir), []);
        journal.append(11, bytes(11));
        assert.deepEqual(ids(journalDir), [11]);
      });
    } finally {
      journal.close();
    }
  });
});

Deno.test("readJournalDir() leaves out a line a crash cut short", async () => {
  await withTempDir((dir) => {
    const journal = openJournalDir(dir, 4, false);
    journal.append(5, bytes(5));
    journal.append(6, bytes(6));
    journal.close();
    const [name] = files(dir);
    // kill -9 in the middle of a write(): the line has no end.
    const cut = line(7).slice(0, 20);
    Deno.writeTextFileSync(`${dir}/${name}`, cut, { append: true });
    assert.deepEqual(ids(dir), [5, 6]);
    // A cut is no damage: no copy of the segment is kept for it (a whole bad line's is).
    assert.deepEqual([...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".unreadable")), []);
    return Promise.resolve();
  });
});

Deno.test("openJournalDir() starts clean after the tables took what was there", async () => {
  await withTempDir((dir) => {
    let journal = openJournalDir(dir, 0, false);
    journal.append(1, bytes(1));
    journal.close();
    assert.deepEqual(ids(dir), [1]);
    // A new run, after the tables took commit 1: what was there goes.
    journal = openJournalDir(dir, 1, false);
    assert.deepEqual(files(dir), []);
    journal.append(2, bytes(2));
    assert.deepEqual(ids(dir), [2]);
    journal.close();
    return Promise.resolve();
  });
});

Deno.test("openJournalDir() lets one process at a time write a journal", async () => {
  await withTempDir(async (dir) => {
    const journal = openJournalDir(dir, 0, false);
    journal.append(1, bytes(1));
    // Another process on the same DATA_DIR (an overlapping restart) waits for the first.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { openJournalDir } from ${
          JSON.stringify(new URL("../../src/store/sqlite_journal_file.ts", import.meta.url).href)
        };
         openJournalDir(${JSON.stringify(dir)}, 1, false).close();
         console.log("opened");`,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(ids(dir), [1], "the second process deleted nothing while the first ran");
    journal.close();
    const out = await child.output();
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "opened");
  });
});

Deno.test("a closed journal leaves no process id in its lock", async () => {
  // A bridge that waits on the lock names the pid it reads there. One left by a run that ended
  // would be named while something else holds the lock (a bridge of an older version, which
  // writes none): a dead process, or another one by now, that an operator might kill.
  await withTempDir((dir) => {
    const journal = openJournalDir(dir, 0, false);
    assert.equal(Deno.readTextFileSync(`${dir}/lock`), String(Deno.pid));
    journal.close();
    assert.equal(Deno.readTextFileSync(`${dir}/lock`), "");
    return Promise.resolve();
  });
});

Deno.test("a journal whose segments were deleted writes them back from its open files and goes on", async (t) => {
  // A deleted segment's lines were in no file until the tables had them: a kill -9 meanwhile
  // lost messages answered success. Now they are written back from the descriptors held.
  await withTempDir(async (dir) => {
    const journalDir = `${dir}/bridge.journal`;
    // Four lines fill a 100-byte segment.
    const journal = openJournalDir(journalDir, 0, false, 100);
    try {
      for (let i = 1; i <= 3; i++) journal.append(i, bytes(i));
      await t.step("ensure() finds nothing wrong while the segment is there", () => {
        journal.ensure();
        assert.deepEqual(ids(journalDir), [1, 2, 3]);
      });
      await t.step("the segment being written deleted: written back, and appended to", () => {
        const [name] = files(journalDir);
        Deno.removeSync(`${journalDir}/${name}`);
        journal.ensure();
        assert.deepEqual(files(journalDir), [name]);
        assert.deepEqual(ids(journalDir), [1, 2, 3]);
        journal.append(4, bytes(4));
        assert.deepEqual(ids(journalDir), [1, 2, 3, 4]);
      });
      await t.step("an older segment deleted alone: written back, the live one left", () => {
        for (let i = 5; i <= 9; i++) journal.append(i, bytes(i));
        const before = files(journalDir);
        assert.ok(before.length >= 3, before.join());
        const live = Deno.statSync(`${journalDir}/${before.at(-1)}`).ino;
        Deno.removeSync(`${journalDir}/${before[0]}`);
        journal.ensure();
        assert.deepEqual(files(journalDir), before);
        assert.deepEqual(ids(journalDir), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert.equal(Deno.statSync(`${journalDir}/${before.at(-1)}`).ino, live);
      });
      await t.step("the directory deleted: every segment not let go of is written back", () => {
        const before = files(journalDir);
        Deno.removeSync(journalDir, { recursive: true });
        journal.ensure();
        assert.deepEqual(files(journalDir), before);
        assert.deepEqual(ids(journalDir), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        // Its lock is there again, for a bridge started on the directory now.
        assert.ok(Deno.statSync(`${journalDir}/lock`).isFile);
      });
      await t.step(
        "deleted before ensure() looked: the next segment writes them back first",
        () => {
          Deno.removeSync(journalDir, { recursive: true });
          // 10 and 11 still go to the deleted segment; 12 (the next segment) makes it again.
          for (let i = 10; i <= 13; i++) journal.append(i, bytes(i));
          assert.deepEqual(ids(journalDir), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
          journal.ensure();
          assert.deepEqual(ids(journalDir, 11), [12, 13]);
        },
      );
      await t.step("deleted where it cannot be made again yet: refused until it can", () => {
        Deno.removeSync(journalDir, { recursive: true });
        // A file where the directory was: mkdir fails as it would with no room left.
        Deno.writeTextFileSync(journalDir, "");
        assert.throws(() => journal.ensure());
        assert.equal(journal.unwrittenUpTo(), 13, "lines up to 13 are in the deleted files only");
        // Not into the deleted segment, where no restart would find it: refused.
        assert.throws(() => journal.append(14, bytes(14)), /Cannot begin a journal segment/);
        assert.throws(() => journal.ensure(), "the next look tries again, and fails again");
        Deno.removeSync(journalDir);
        journal.ensure();
        assert.equal(journal.unwrittenUpTo(), 0);
        journal.append(14, bytes(14));
        assert.deepEqual(ids(journalDir, 9), [10, 11, 12, 13, 14]);
      });
      await t.step("an append writes them back before the look that failed looks again", () => {
        Deno.removeSync(journalDir, { recursive: true });
        Deno.writeTextFileSync(journalDir, "");
        assert.throws(() => journal.ensure());
        Deno.removeSync(journalDir);
        journal.append(15, bytes(15));
        assert.deepEqual(ids(journalDir, 9), [10, 11, 12, 13, 14, 15]);
        journal.ensure();
      });
      await t.step("segments the tables have are let go, not written back", async () => {
        await journal.release(15);
        Deno.removeSync(journalDir, { recursive: true });
        journal.ensure();
        assert.deepEqual(ids(journalDir), []);
        journal.append(16, bytes(16));
        assert.deepEqual(ids(journalDir), [16]);
      });
    } finally {
      journal.close();
    }
  });
});

/** Whether another process holding `lock` makes `flock -n` (util-linux, flock(2) as Deno's
 * FsFile.lock) fail: a bridge started on the directory now would wait. */
async function heldElsewhere(lock: string): Promise<boolean> {
  const { code } = await new Deno.Command("flock", { args: ["-n", lock, "true"] }).output();
  return code !== 0;
}

/** Resolves once `lock` is held (the lock is taken again off the thread); fails after 5 s. */
async function becomesHeld(lock: string): Promise<void> {
  const deadline = performance.now() + 5000;
  while (!await heldElsewhere(lock)) {
    if (performance.now() > deadline) throw new Error(`nothing holds ${lock}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("a journal whose directory was deleted holds its lock again, however it is made again", async (t) => {
  await withTempDir(async (dir) => {
    const journalDir = `${dir}/bridge.journal`;
    const lock = `${journalDir}/lock`;
    const cases: Array<[string, (journal: ReturnType<typeof openJournalDir>) => void]> = [
      ["by ensure(), a segment being written", (journal) => {
        journal.append(1, bytes(1));
        Deno.removeSync(journalDir, { recursive: true });
        journal.ensure();
      }],
      // A bridge that committed nothing since it started: ensure() has no segment to look at,
      // and the directory is made again only by its first commit, maybe long after.
      ["with nothing committed since opening", (journal) => {
        Deno.removeSync(journalDir, { recursive: true });
        journal.ensure();
        journal.append(1, bytes(1));
      }],
      // A rollover before ensure() looked: the next segment makes it again.
      ["by a new segment", (journal) => {
        journal.append(1, bytes(1));
        Deno.removeSync(journalDir, { recursive: true });
        // Four lines fill a 100-byte segment: 5 begins the next one.
        for (let i = 2; i <= 8; i++) journal.append(i, bytes(i));
        // The first segment written back, the second begun, in the directory made again.
        assert.deepEqual(ids(journalDir), [1, 2, 3, 4, 5, 6, 7, 8]);
        journal.ensure();
      }],
    ];
    for (const [name, remake] of cases) {
      await t.step(name, async () => {
        const journal = openJournalDir(journalDir, 0, false, 100);
        try {
          remake(journal);
          assert.ok(Deno.statSync(lock).isFile);
          await becomesHeld(lock);
        } finally {
          journal.close();
        }
        assert.equal(await heldElsewhere(lock), false, "closed: let go");
        await Deno.remove(journalDir, { recursive: true }).catch(() => {});
      });
    }
  });
});

/** Runs `fn` with the disk refusing one fdatasync and the truncate that undoes it (EIO, then a
 * file system remounted read-only): the refused line stays where it was written. */
function withSyncAndTruncateFailing(fn: () => void): void {
  const proto = Deno.FsFile.prototype;
  const { syncDataSync, truncateSync } = proto;
  proto.syncDataSync = () => {
    throw Object.assign(new Error("Input/output error (os error 5)"), { code: "EIO" });
  };
  proto.truncateSync = () => {
    throw Object.assign(new Error("Read-only file system (os error 30)"), { code: "EROFS" });
  };
  try {
    fn();
  } finally {
    proto.syncDataSync = syncDataSync;
    proto.truncateSync = truncateSync;
  }
}

Deno.test("a line refused with STORE_FSYNC=1 that cannot be cut off is not read for the commit written after it", async () => {
  await withTempDir((dir) => {
    const journal = openJournalDir(dir, 0, true);
    const content = (i: number, who: string) => {
      const commit = new CommitLine(i, 1000 + i);
      commit.forgotten(who);
      return new TextEncoder().encode(commit.text());
    };
    try {
      journal.append(1, content(1, "first"));
      withSyncAndTruncateFailing(() => {
        assert.throws(() => journal.append(2, content(2, "refused")), /os error 5/);
      });
      // The caller was told 2 failed (WeChat 503, the agent "send it again"): the store's next
      // commit takes the same id, in a segment of its own since the last could not be cut.
      journal.append(2, content(2, "taken"));
      journal.append(3, content(3, "after"));
      // What the worker and the next start apply: the refused line was read as commit 2, and
      // the one taken was skipped as already applied.
      const read = readJournalDir(dir, 0).map((c) => [c.id, c.f?.[0]]);
      assert.deepEqual(read, [[1, "first"], [2, "taken"], [3, "after"]]);
    } finally {
      journal.close();
    }
    return Promise.resolve();
  });
});

Deno.test("a line refused that cannot be cut off is not read by a start before the next commit", async () => {
  // Until the next commit began a segment after it, the refused line was its segment's last,
  // and a start then (kill -9, a restart on the failing disk) read it as a commit: a callback
  // answered 503 was stored and delivered, and WeChat's retry of it (or an agent's reply sent
  // again) came on top.
  await withTempDir((dir) => {
    const journal = openJournalDir(dir, 0, true);
    const content = (i: number, who: string) => {
      const commit = new CommitLine(i, 1000 + i);
      commit.forgotten(who);
      return new TextEncoder().encode(commit.text());
    };
    try {
      journal.append(1, content(1, "first"));
      withSyncAndTruncateFailing(() => {
        assert.throws(() => journal.append(2, content(2, "refused")), /os error 5/);
      });
      assert.deepEqual(readJournalDir(dir, 0).map((c) => [c.id, c.f?.[0]]), [[1, "first"]]);
      journal.append(2, content(2, "taken"));
      const read = readJournalDir(dir, 0).map((c) => [c.id, c.f?.[0]]);
      assert.deepEqual(read, [[1, "first"], [2, "taken"]]);
    } finally {
      journal.close();
    }
    return Promise.resolve();
  });
});

Deno.test("a line refused that cannot be cut off is not read after a line put in by damage either", async () => {
  await withTempDir((dir) => {
    const journal = openJournalDir(dir, 0, true);
    const content = (i: number, who: string) => {
      const commit = new CommitLine(i, 1000 + i);
      commit.forgotten(who);
      return new TextEncoder().encode(commit.text());
    };
    try {
      journal.append(1, content(1, "first"));
      // A line no reader takes, put in between: the refused one is not where its id says.
      const [name] = files(dir);
      Deno.writeTextFileSync(`${dir}/${name}`, "\0\0\0\0damaged\n", { append: true });
      withSyncAndTruncateFailing(() => {
        assert.throws(() => journal.append(2, content(2, "refused")), /os error 5/);
      });
      journal.append(2, content(2, "taken"));
      journal.append(3, content(3, "after"));
      const leftOut: number[] = [];
      const read = readJournalDir(dir, 0, { leftOut: (note) => leftOut.push(note.line) })
        .map((c) => [c.id, c.f?.[0]]);
      assert.deepEqual(read, [[1, "first"], [2, "taken"], [3, "after"]]);
      // The damage is told; the refused line, which its caller was told of, is not.
      assert.deepEqual(leftOut, [2]);
    } finally {
      journal.close();
    }
    return Promise.resolve();
  });
});
