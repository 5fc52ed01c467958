// Whether `bridge.sqlite` is still the file the store opened. Deleted while the bridge runs (a
// cleanup script, an `rm` in the wrong directory) it lives on only through the open handles:
// the journal would be let go as applied and the next start would open an empty file. So a
// deleted file is written back from an open connection (SQLite's backup, on the store's worker)
// within a second, and from then on the journal is kept until the next start; a file replaced by
// another is left alone.

import { dirname } from "node:path";
import { getLogger } from "@logtape/logtape";
import { makeDirSync, pathIdOf, syncDirSync } from "./sqlite_journal_file.ts";

const log = getLogger(["bridge", "store"]);

/**
 * How often the guard looks at the file of its own: an idle bridge commits nothing and may not
 * be probed, and a crash before the file is written back leaves no tables at all. One stat.
 */
const LOOK_MS = 1000;

/** What became of the file: `null` while it is the one opened. */
export interface FileGuard {
  /** Looks at the file (restoring it if deleted); returns what is wrong, or null. */
  check(): string | null;
  /** Whether the journal must be kept whole (the tables at `path` are not the ones written). */
  readonly keepJournal: boolean;
  /** Looks a last time and stops; resolves once a restore under way is done (before the
   * connection closes). */
  close(): Promise<void>;
}

/** What createFileGuard() does besides watching the file. */
export interface FileGuardOptions {
  /** Runs before each look of its own (the journal's segment, deleted with the directory). */
  look?: () => void;
  /** STORE_FSYNC=1: a copy written back, and a directory made again for it, reach the disk. */
  fsync?: boolean;
  /**
   * The page size and page count the open connection reads in the file's header; throws when
   * it cannot. A smaller file whose pages all fit was made smaller by SQLite (a VACUUM).
   */
  pages?: () => { size: number; count: number };
}

/** Watches the database file at `path`; `copyTo` writes the open database to a new file. */
export function createFileGuard(
  path: string,
  copyTo: (dest: string) => Promise<void>,
  options: FileGuardOptions = {},
): FileGuard {
  const { look = () => {}, fsync = false, pages } = options;
  let expected = pathIdOf(path);
  let keepJournal = false;
  let problem: string | null = null;
  let restoring: Promise<void> = Promise.resolve();
  /** The write-back failed (no room, say): the open connection holds the only whole copy. */
  let failed = false;
  /**
   * The copy written back, held open: nothing else opens it, and once deleted ext4 gave its
   * inode number straight to the next file made (`sqlite3` opening the path makes an empty
   * one), which then passed for the copy and was never written back or called replaced. (The
   * file opened at the start is held by the connections.)
   */
  let pinned: Deno.FsFile | null = null;
  /**
   * The largest the file has been: the bridge never makes it smaller (no VACUUM), so a file
   * found smaller, unless SQLite's header says its pages all fit, was cut short from outside
   * (`: > bridge.sqlite`, a copytruncate), its pages gone under the same inode, which the
   * identity check alone took for the file opened.
   */
  let largest = sizeOf(path) ?? 0;

  /** The `dev:ino` of the copy at `path`, now held open. */
  function pin(): string | null {
    pinned?.close();
    pinned = null;
    try {
      pinned = Deno.openSync(path, { read: true });
      const info = pinned.statSync();
      return `${info.dev}:${info.ino}`;
    } catch {
      return pathIdOf(path);
    }
  }

  async function restore(): Promise<void> {
    const dest = `${path}.restoring`;
    // Deleted with its directory (DATA_DIR removed whole): the copy needs it back.
    makeDirSync(dirname(path), fsync);
    await Deno.remove(dest).catch(() => {});
    // A consistent copy of what the tables hold, with the journal row they stop at: the next
    // start applies the journal after it, which is kept from now on. (VACUUM INTO would
    // attach a file, which Deno refuses without --allow-all.)
    await copyTo(dest);
    // A WAL left beside it belongs to the deleted file (the connections keep theirs open):
    // the next start would replay it into the copy.
    for (const suffix of ["-wal", "-shm"]) {
      try {
        Deno.removeSync(path + suffix);
      } catch { /* deleted with it */ }
    }
    Deno.renameSync(dest, path);
    // SQLite synced the copy's content; its name is the directory's.
    if (fsync) syncDirSync(dirname(path));
    expected = pin();
    largest = sizeOf(path) ?? 0;
  }

  const guard: FileGuard = {
    get keepJournal() {
      return keepJournal;
    },
    async close() {
      clearInterval(looking);
      try {
        // The journal too, as each second: lines it lost since the last look are copied.
        look();
      } catch (error) {
        log.warn("Cannot look at {path}: {error}", { path, error });
      }
      guard.check();
      await restoring;
      // Once more, as the message asked: the room may be there now, and nothing is after this.
      // Not over a file put there since (the operator's own copy, say).
      if (failed && pathIdOf(path) === null) {
        failed = false;
        problem = null;
        writeBack();
        await restoring;
      }
      pinned?.close();
      pinned = null;
    },
    check() {
      if (problem !== null || expected === null) return problem;
      const found = pathIdOf(path);
      if (found === expected) return cutShort();
      keepJournal = true;
      if (found !== null) {
        problem = `${path} was replaced while the bridge ran: restart it to use the new file`;
        log.error("{problem}; the journal is kept", { problem });
        return problem;
      }
      log.error("{path} was deleted while the bridge ran: writing it back from the open database", {
        path,
      });
      writeBack();
      return null;
    },
  };

  /** The problem when the file opened is smaller than it was, else null (one stat). */
  function cutShort(): string | null {
    // Gone since the look above: the next look says so.
    const size = sizeOf(path);
    if (size === null || size >= largest || whole(size)) {
      // After a VACUUM the file grows again from its new size.
      largest = size === null || size >= largest ? Math.max(largest, size ?? 0) : size;
      return null;
    }
    // Its pages are lost; what the journal still holds rebuilds them at the next start, and
    // nothing more of it is let go.
    keepJournal = true;
    problem = `${path} was emptied or cut short while the bridge ran (${largest} bytes, now ` +
      `${size}): restart the bridge, which rebuilds the tables from the journal`;
    log.error("{problem}; the journal is kept", { problem });
    return problem;
  }

  /** Whether a file of `size` bytes holds every page the header counts (an operator's VACUUM
   * shrinks it so); an empty one never does, nor one the connection cannot read. */
  function whole(size: number): boolean {
    if (pages === undefined || size === 0) return false;
    try {
      const { size: pageSize, count } = pages();
      return count > 0 && size % pageSize === 0 && count * pageSize <= size;
    } catch {
      return false;
    }
  }

  function writeBack(): void {
    // Until the copy is there the file looks deleted still: one restore at a time, after the
    // one under way (unless that one failed: then the problem stands until close).
    expected = null;
    restoring = restoring.then(() => problem === null ? copyBack() : undefined);
  }

  /** restore(), saying how it went. */
  function copyBack(): Promise<void> {
    return restore().then(() => {
      log.error("{path} is written back; the journal is kept until the next start", { path });
    }, (error) => {
      failed = true;
      problem = `${path} was deleted while the bridge ran and cannot be written back: ${
        (error as Error).message
      }`;
      log.error(
        "{problem}. Make room for it, then stop the bridge with SIGTERM: it tries again before " +
          "it exits (a kill -9 would lose every message the journal no longer holds)",
        { problem },
      );
    });
  }
  const looking = setInterval(() => {
    // Each on its own: a journal that cannot be begun again must not keep the file unwatched.
    for (const step of [look, guard.check]) {
      try {
        step();
      } catch (error) {
        // Thrown from a timer it would end the process: the next look, or /readyz, tries again.
        log.warn("Cannot look at {path}: {error}", { path, error });
      }
    }
  }, LOOK_MS);
  Deno.unrefTimer(looking);
  return guard;
}

/** The size of the file at `path`; null when there is none. */
function sizeOf(path: string): number | null {
  try {
    return Deno.statSync(path).size;
  } catch {
    return null;
  }
}
