// The SQLite store's journal on disk: append-only segment files under `bridge.journal/`, one
// line per commit (sqlite_journal_line.ts), each written with one write() by the thread that
// answers WeChat (and fdatasync'd with STORE_FSYNC=1) before anyone is told. A segment is
// deleted once the tables have all of it, off that thread. Reading stops at the line a crash
// cut short (a segment's last, without its newline); a whole line that cannot be read is left out.

import { dirname } from "node:path";
import { getLogger } from "@logtape/logtape";
import type { Commit } from "./sqlite_journal.ts";
import { commitOfBytes, parseCommitLine } from "./sqlite_journal_line.ts";
import { copyOf, forgottenIn, keepCopy } from "./sqlite_unreadable.ts";
import { StoreRefusal } from "./disk_refusal.ts";

const log = getLogger(["bridge", "store"]);

/** A segment is closed and a new one begun past this size. */
const SEGMENT_BYTES = 16 * 1024 * 1024;
const NAME_DIGITS = 20;

/** Where the journal is written; `read` gives back what is in it. */
export interface Journal {
  /** Writes commit `id`'s line (its UTF-8 bytes, newline included); returns once they are in
   * the operating system (or on the disk, with fsync). Throws if not: nothing of it stays. */
  append(id: number, bytes: Uint8Array): void;
  /** The commits after `after`, in order. */
  read(after: number): Commit[];
  /** Deletes what holds only commits up to `applied`; `all`: the segment being written too,
   * when it is all applied (at close). Resolves once they are gone; a segment that cannot be
   * deleted is skipped by every later read, and deleted by the next start (which fails, loudly,
   * while it still cannot be: a journal it cannot delete from it cannot begin a segment in). */
  release(applied: number, all?: boolean): Promise<void>;
  /**
   * Whether the segments not yet let go of are still where they were begun. One deleted (an
   * `rm`, or an `rm -rf` of DATA_DIR taking the directory) is written back from the file this
   * journal holds open, into the directory made again, before anything more is appended: what
   * callers were told of is on the disk again. Throws while that cannot be done (no room, a
   * file in the directory's place); appends are refused until it is.
   */
  ensure(): void;
  /** The last commit that only segments deleted and not yet written back hold (0: none): until
   * it is written back or in the tables, a model read from them is behind what callers were
   * told. */
  unwrittenUpTo(): number;
  close(): void;
}

const notFound = (error: unknown) => {
  if (!(error instanceof Deno.errors.NotFound)) throw error;
};

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    notFound(error);
  }
}

/** Deletes `path` on Deno's blocking pool; one that is gone already is fine. */
const removeLater = (path: string): Promise<void> => Deno.remove(path).catch(notFound);

const segmentName = (firstId: number) => `${String(firstId).padStart(NAME_DIGITS, "0")}.log`;

/** The journal directory beside the tables' file at `path` (`bridge.sqlite`: `bridge.journal`). */
export function journalDirOf(path: string): string {
  return `${path.replace(/\.sqlite$/, "")}.journal`;
}

/** The segments of `dir`, oldest first: [first id, path]. */
function segments(dir: string): Array<[number, string]> {
  const found: Array<[number, string]> = [];
  try {
    for (const entry of Deno.readDirSync(dir)) {
      const match = /^(\d+)\.log$/.exec(entry.name);
      if (entry.isFile && match) found.push([Number(match[1]), `${dir}/${entry.name}`]);
    }
  } catch (error) {
    // A file in its place (the directory deleted, not made again yet) holds no segment either:
    // thrown, the store's reload after the refusal failed, and every request after was a 500.
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
      return [];
    }
    throw error;
  }
  return found.sort((a, b) => a[0] - b[0]);
}

/** A journal line a reader left out, as the log says it. */
export interface LeftOut {
  commit: number | "?";
  /** Whether `commit` is where the segment's lines put it (else its id is damage too). */
  placed: boolean;
  /** Its line in the segment, from 1. */
  line: number;
  segment: string;
  copy: string;
  error: string;
}

/** Logs a line left out, at error (the worker's are logged by the store's thread: a worker has
 * no logging of its own). */
export function logLeftOut(note: LeftOut): void {
  log.error(
    "Cannot read commit {commit} (line {line}) of journal segment {segment}, left out (the " +
      "segment is kept as {copy}): {error}",
    { ...note },
  );
}

/** What a reader of the journal keeps across reads, and whom it tells what it found. */
export interface ReadJournalOptions {
  /** The lines said already (a reader's own, so one that reads the same line again at the
   * next apply says nothing more). */
  reported?: Set<string>;
  /** Told each line left out; logLeftOut by default. */
  leftOut?: (note: LeftOut) => void;
  /** Told each copy kept, once it is written. */
  kept?: (copy: string) => void;
  /** Refuses (throws) a journal with a segment missing between `after` and the last one: a
   * running bridge's reader (the worker's read-back) must not apply past commits whose segment
   * was deleted and is not written back yet, as the tables would then skip them for good. */
  whole?: boolean;
}

/**
 * The commits after `after` in the journal at `dir` (another thread may be appending). A whole
 * line that cannot be read is left out, told to `leftOut` and its segment kept
 * (sqlite_unreadable.ts), once per line for each `reported`.
 */
export function readJournalDir(
  dir: string,
  after: number,
  options: ReadJournalOptions = {},
): Commit[] {
  const { reported = new Set<string>(), leftOut = logLeftOut, kept = () => {} } = options;
  const commits: Commit[] = [];
  let last = after;
  /** The journal holds a line (read or damaged) for every commit up to this one (`whole`). */
  let reach = after;
  const all = segments(dir);
  /** The lines of every segment read, and the segments with a line first left out now. */
  const read: string[][] = [];
  const damaged: Array<[string, string[]]> = [];
  for (const [i, [firstId, path]] of all.entries()) {
    // A segment ends where the next begins: one that ends by `after` need not be read.
    if (i + 1 < all.length && all[i + 1]![0] - 1 <= after) continue;
    if (options.whole && firstId > reach + 1) {
      throw new StoreRefusal(
        `Cannot read the journal: commits ${reach + 1} to ${firstId - 1} are in no segment of ` +
          `${dir} (one deleted, not written back yet)`,
      );
    }
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch (error) {
      // Deleted since it was listed: all of it was applied.
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    const lines = text.split("\n");
    // The last piece is "" after a whole line, or a line being written or cut short by a crash.
    lines.pop();
    read.push(lines);
    let copied = false;
    const next = all[i + 1]?.[0] ?? Infinity;
    // A last line at or past the next segment's first id is one refused (see below).
    const lastId = Number(lines.at(-1)?.slice(0, lines.at(-1)!.indexOf("\x1f")));
    const refusedLast = lines.length > 0 && Number.isInteger(lastId) && lastId >= next;
    reach = Math.max(reach, firstId + lines.length - (refusedLast ? 2 : 1));
    for (const [n, line] of lines.entries()) {
      const id = Number(line.slice(0, line.indexOf("\x1f")));
      const numbered = Number.isInteger(id) && id > 0;
      if (numbered && id <= last) continue;
      // A segment's last line at or past the next segment's first id: one refused and not cut
      // off (an fdatasync then a truncate failing; the segment ends there). The commit of that
      // id is the next segment's; read first, the refused one took its place, and the one its
      // caller was told of was dropped.
      if (numbered && id >= next && n === lines.length - 1) continue;
      let commit: Commit;
      try {
        // One whose id is damaged too is only that line: stopping there, as a reader did, left
        // every later commit of the segment out, and held a running worker at it for good.
        if (!numbered) throw new SyntaxError("Cannot read a journal line: no commit id");
        // A segment's lines are its commits in order from the id it is named by (a line put in
        // by something else only moves the later ones down): an id past its line's place is
        // damage still a number (a flipped bit in a digit), which read as a commit ahead of
        // the others had every later line skipped as applied.
        if (id > firstId + n || id >= next) {
          throw new SyntaxError(
            `Cannot read a journal line: commit ${id} is past its place (line ${n + 1} of a ` +
              `segment from commit ${firstId})`,
          );
        }
        commit = parseCommitLine(line);
      } catch (error) {
        // A write a crash cut short is the last piece, without its newline (popped above): a
        // whole line that cannot be read is damage. It alone is left out, loudly; stopping
        // there dropped every commit after it in silence, messages WeChat had its success for.
        const key = `${path}\n${n}`;
        if (reported.has(key)) continue;
        reported.add(key);
        leftOut({
          commit: numbered ? id : "?",
          placed: numbered && id <= firstId + n && id < next,
          line: n + 1,
          segment: path,
          copy: copyOf(path),
          error: String(error),
        });
        if (!copied) damaged.push([path, lines]);
        copied = true;
        continue;
      }
      commits.push(commit);
      last = id;
    }
  }
  if (damaged.length > 0) {
    // Lines of a follower that a line after them forgets stay out of the copy (a forget scrubs
    // the copies there are when it is made; this one is made after it).
    const forgotten = forgottenIn(read.flat());
    for (const [path, lines] of damaged) {
      if (keepCopy(path, lines, forgotten)) kept(copyOf(path));
    }
  }
  return commits;
}

/**
 * Makes `dir` and takes its writer's lock, waiting while another process holds it (a restart
 * that overlaps): taken before the journal is read, so what the other process still appends
 * is read and applied after it exits, never deleted unread.
 */
export function lockJournalDir(dir: string): Deno.FsFile {
  const lock = openLockFile(dir);
  lock.lockSync(true);
  return ownLock(lock);
}

/** How long a start waits for the lock before it says which process holds it. */
const LOCK_PATIENCE_MS = 1000;

/** lockJournalDir(), saying (at warn, after a second) which process it waits for: a second
 * bridge started on a running one's DATA_DIR waits, and would otherwise wait without a word. */
export async function waitForJournalLock(dir: string): Promise<Deno.FsFile> {
  const lock = openLockFile(dir);
  const timer = setTimeout(() => {
    let holder = "";
    try {
      holder = Deno.readTextFileSync(`${dir}/lock`).trim();
    } catch { /* unreadable: said without its pid */ }
    log.warn(
      "Another process{pid} holds {dir}: waiting for it to exit before opening the store. " +
        "One DATA_DIR serves one bridge; run several with REDIS_URL",
      { pid: /^\d+$/.test(holder) ? ` (pid ${holder})` : "", dir },
    );
  }, LOCK_PATIENCE_MS);
  try {
    await lock.lock(true);
  } catch (error) {
    lock.close();
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return ownLock(lock);
}

/** fsync()s the directory `dir`: a file made, renamed or deleted in it survives power loss
 * once this returns. */
export function syncDirSync(dir: string): void {
  const handle = Deno.openSync(dir, { read: true });
  try {
    handle.syncSync();
  } finally {
    handle.close();
  }
}

/** Makes `dir` and every parent missing; with `fsync`, each one made is synced into its parent
 * (a directory made again after an `rm -rf`, with STORE_FSYNC=1, must outlive a power cut). */
export function makeDirSync(dir: string, fsync: boolean): void {
  const missing: string[] = [];
  for (let d = dir; pathIdOf(d) === null && dirname(d) !== d; d = dirname(d)) missing.push(d);
  Deno.mkdirSync(dir, { recursive: true });
  if (fsync) { for (const made of missing.reverse()) syncDirSync(dirname(made)); }
}

/** An open file's `dev:ino`. */
function fileIdOf(file: Deno.FsFile): string {
  const info = file.statSync();
  return `${info.dev}:${info.ino}`;
}

/** The `dev:ino` of the file at `path`; null when there is none. */
export function pathIdOf(path: string): string | null {
  try {
    const info = Deno.statSync(path);
    return `${info.dev}:${info.ino}`;
  } catch (error) {
    // A file where a directory on the way was (ENOTDIR): nothing is at `path` either.
    if (!(error instanceof Deno.errors.NotADirectory)) notFound(error);
    return null;
  }
}

function openLockFile(dir: string): Deno.FsFile {
  Deno.mkdirSync(dir, { recursive: true });
  return Deno.openSync(`${dir}/lock`, { read: true, write: true, create: true });
}

/** Writes this process's id into the lock it holds, for the message of one that waits. */
function ownLock(lock: Deno.FsFile): Deno.FsFile {
  lock.truncateSync(0);
  lock.writeSync(new TextEncoder().encode(String(Deno.pid)));
  return lock;
}

/** Lets go of the lock, its process id first: a waiter would otherwise name an ended process
 * while another holds the lock (a bridge of an older version writes none). */
export function unlockJournalDir(lock: Deno.FsFile): void {
  try {
    lock.truncateSync(0);
  } catch { /* closed already, or read-only: the lock still goes */ }
  try {
    lock.close();
  } catch { /* closed already */ }
}

/** A segment this journal wrote and has not let go of, held open: deleted while the bridge runs,
 * its lines are still read through `file` (Linux keeps a deleted file's data while it is open),
 * and held, its inode number is not handed to a file made at its path since. */
interface Held {
  firstId: number;
  path: string;
  file: Deno.FsFile;
  /** `file` as `dev:ino`: another (or none) at `path` means it was deleted. */
  id: string;
}

/** Copy buffer: a 16 MiB segment written back is not held in memory whole. */
const COPY_CHUNK = 1 << 20;

/**
 * Writes what `from` holds (its first `length` bytes) to a new file at `path`, under another
 * name until whole: a reader (the worker, between our writes) sees all of it or none, never a
 * segment that stops early while a later one goes on, whose commits it would apply past the
 * rest. Returns the new file, open for appending, and its `dev:ino`.
 */
function copyHeld(
  from: Deno.FsFile,
  path: string,
  length: number,
  fsync: boolean,
): [Deno.FsFile, string] {
  const temp = `${path}.restoring`;
  removeIfThere(temp);
  const to = Deno.openSync(temp, { read: true, append: true, createNew: true });
  try {
    const buffer = new Uint8Array(COPY_CHUNK);
    from.seekSync(0, Deno.SeekMode.Start);
    let left = length;
    while (left > 0) {
      const n = from.readSync(buffer.subarray(0, Math.min(buffer.length, left)));
      if (n === null) throw new Error(`Cannot write back ${path}: ${left} bytes short`);
      let done = 0;
      while (done < n) done += to.writeSync(buffer.subarray(done, n));
      left -= n;
    }
    if (fsync) to.syncDataSync();
    Deno.renameSync(temp, path);
    return [to, fileIdOf(to)];
  } catch (error) {
    to.close();
    try {
      removeIfThere(temp);
    } catch { /* the directory went again: nothing to leave behind */ }
    throw error;
  }
}

/**
 * Puts in place the copies a write-back left under `<segment>.log.restoring` (a kill -9 before
 * its rename, or a crash before its directory reached the disk): every whole line in one is a
 * commit answered success, its original deleted, so it is read as that segment; one whose
 * segment is there (put back by other means) is deleted. Run at a start, with the writer's
 * lock held, before the journal is read. Ignored, they were lost and left in the directory for
 * good.
 */
export function adoptRestoring(dir: string, fsync: boolean): void {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return;
    throw error;
  }
  let changed = false;
  for (const entry of entries) {
    const match = /^(\d+\.log)\.restoring$/.exec(entry.name);
    if (!entry.isFile || !match) continue;
    const temp = `${dir}/${entry.name}`;
    const path = `${dir}/${match[1]}`;
    if (pathIdOf(path) === null) {
      Deno.renameSync(temp, path);
      log.error(
        "The journal segment {path} was being written back when the last run ended: read from " +
          "its copy {temp} (a line it cut short is its last)",
        { path, temp },
      );
    } else {
      Deno.removeSync(temp);
    }
    changed = true;
  }
  if (changed && fsync) syncDirSync(dir);
}

/** Opens the journal at `dir` (creating it) for appending after commit `lastId`, which the
 * tables have, like every one before it: what the directory holds is deleted. `lock` is the
 * writer's lock when the caller took it already (else it is taken here). */
export function openJournalDir(
  dir: string,
  lastId: number,
  fsync: boolean,
  segmentBytes = SEGMENT_BYTES,
  lock: Deno.FsFile = lockJournalDir(dir),
): Journal {
  /** The segment being appended to (the last of `written`); null before the next begins. */
  let current: Held | null = null;
  let size = 0;
  let next = lastId + 1;
  /** The last commit release() was told the tables have. */
  let applied = lastId;
  /** The lock taken again in the directory made last (see relock); the first is the store's. */
  let relocked: Deno.FsFile | null = null;
  /** The lock file held, as `dev:ino`: another (or none) at its path means it was deleted. */
  let lockId = fileIdOf(lock);
  /** Segments this journal wrote and has not let go of, oldest first. */
  const written: Held[] = [];
  /** The lines read() found it could not read, said once each. */
  const reported = new Set<string>();
  /** Held segments were found deleted and are not all written back yet: until they are, no
   * commit is appended (it would be answered while earlier ones are in no file). */
  let lost = false;

  const syncDir = () => {
    // A new file survives power loss once its directory entry is on the disk too.
    if (fsync) syncDirSync(dir);
  };
  /** Whatever made the directory again (ensure, or a segment begun before it looked): the
   * lock went with it, and a bridge started on the directory now would take a new one. */
  const relock = () => {
    makeDirSync(dir, fsync);
    const again = openLockFile(dir);
    // The one before is in a directory deleted: it guards nothing, and kept open until close
    // it held a descriptor for every removal.
    if (relocked !== null) unlockJournalDir(relocked);
    relocked = again;
    lockId = fileIdOf(again);
    // Let go before it is granted (the directory gone again), ownLock finds it closed.
    again.lock(true).then(() => ownLock(again)).catch(() => {});
  };
  const lockGone = () => pathIdOf(`${dir}/lock`) !== lockId;
  const missing = () => written.filter((held) => pathIdOf(held.path) !== held.id);

  /**
   * Writes every held segment that is no longer at its path back from its open file, oldest
   * first, into the directory (made again if it went): the commits answered are on the disk
   * again. Throws while it cannot (no room, a file in the directory's place); `lost` stands
   * and the next look, or append, tries again, the copies done so far kept.
   */
  const writeBack = () => {
    if (lockGone()) relock();
    const done: string[] = [];
    for (const held of missing()) {
      if (held === current && next - 1 <= applied) {
        // All of it in the tables already: nothing to write back, a new segment is begun.
        written.pop();
        held.file.close();
        current = null;
        continue;
      }
      // The one being written up to what it took (a refused line was cut off); a retired one
      // whole, a refused line it could not cut off included, as readers know to skip it.
      const length = held === current ? size : held.file.statSync().size;
      const [file, id] = copyHeld(held.file, held.path, length, fsync);
      held.file.close();
      held.file = file;
      held.id = id;
      done.push(held.path);
    }
    syncDir();
    lost = false;
    if (done.length > 0) {
      log.error("The journal segments {paths} are written back from the open files", {
        paths: done,
      });
    }
  };

  /** Notices held segments deleted (or put in the way of): logged once, then `lost`. */
  const look = () => {
    if (lost) return;
    const gone = missing();
    if (gone.length === 0) return;
    log.error(
      "The journal segments {paths} were deleted while the bridge ran: writing them back from " +
        "the open files before anything more is appended",
      { paths: gone.map((held) => held.path) },
    );
    lost = true;
  };

  const begin = (firstId: number) => {
    // Kept open (written) until let go: it may have to be written back.
    current = null;
    const path = `${dir}/${segmentName(firstId)}`;
    // A segment by this name can only hold a line that was refused: nothing to keep.
    if (written.at(-1)?.path === path) written.pop()!.file.close();
    removeIfThere(path);
    // Appending: after a refused write is cut off, the next one starts where it did. Readable:
    // a deleted segment is written back through it.
    const open = () => Deno.openSync(path, { read: true, append: true, createNew: true });
    let file: Deno.FsFile;
    try {
      file = open();
    } catch (error) {
      // The directory was deleted (ensure had not looked yet): made again, as at the start, and
      // the segments before this one written back into it first.
      notFound(error);
      log.error("The journal's directory {dir} was deleted while the bridge ran: made again", {
        dir,
      });
      look();
      writeBack();
      file = open();
    }
    current = { firstId, path, file, id: fileIdOf(file) };
    size = 0;
    written.push(current);
    syncDir();
  };
  // Every commit up to lastId is in the tables (the store applied them before opening). One
  // may be going already: a journal before this one, closed in this process, was deleting it.
  for (const [, path] of segments(dir)) removeIfThere(path);

  return {
    append(id, bytes) {
      if (id !== next) {
        throw new Error(`Cannot append commit ${id} to the journal: ${next} is next`);
      }
      try {
        if (lost) writeBack();
        if (current === null || size >= segmentBytes) begin(id);
      } catch (error) {
        // Nothing of it was written: WeChat is told to send it again (503), not an error.
        throw new StoreRefusal(`Cannot begin a journal segment in ${dir}: ${error}`, {
          cause: error,
        });
      }
      const file = current!.file;
      const length = bytes.length;
      try {
        let done = 0;
        while (done < length) done += file.writeSync(bytes.subarray(done));
        if (fsync) file.syncDataSync();
      } catch (error) {
        // Nothing of a refused commit may stay: cut the line off, or leave this segment.
        try {
          file.truncateSync(size);
        } catch {
          // Begun now, not at the next commit: a segment from this id marks the line left as
          // refused (readJournalDir), also to a start before that commit. A disk that takes no
          // file either leaves it to that commit (which is then refused too).
          try {
            begin(id);
          } catch { /* the refusal is said already */ }
        }
        throw error;
      }
      size += length;
      next = id + 1;
    },
    read(after) {
      // Not a line this journal refused (its caller told so) and could not cut off: a reload
      // after that refusal read it as a commit, and the next one, given its id, as applied.
      return readJournalDir(dir, after, { reported, whole: true }).filter((commit) =>
        commit.id < next
      );
    },
    release(upTo, all = false) {
      applied = Math.max(applied, upTo);
      const gone: Promise<void>[] = [];
      // A segment ends where the next begins; the last one is being written. Deleted by
      // Deno's blocking pool, not here: unlinking a 16 MiB file took 3-15 ms on this thread
      // (measured on ext4), a pause in answering WeChat every few seconds at 2,000/s.
      while (written.length > 1 && written[1]!.firstId - 1 <= applied) {
        const held = written.shift()!;
        held.file.close();
        gone.push(removeLater(held.path));
      }
      if (all && written.length === 1 && next - 1 <= applied) {
        const held = written.shift()!;
        held.file.close();
        current = null;
        gone.push(removeLater(held.path));
      }
      return Promise.all(gone).then(() => {});
    },
    ensure() {
      look();
      // Either may throw (the directory cannot be made: no room, a file in its place); the loss
      // stands and the next look tries again.
      if (lost) {
        writeBack();
        // What was being written was all in the tables: the directory gets a segment again.
        if (current === null && written.length === 0) begin(next);
      }
      // Nothing of the journal went (nothing committed since the start, say), but the lock may
      // have.
      if (lockGone()) relock();
    },
    unwrittenUpTo() {
      if (!lost) return 0;
      const gone = missing();
      const last = gone.length === 0 ? -1 : written.lastIndexOf(gone.at(-1)!);
      if (last < 0) return 0;
      return last + 1 < written.length ? written[last + 1]!.firstId - 1 : next - 1;
    },
    close() {
      for (const held of written.splice(0)) held.file.close();
      current = null;
      if (relocked !== null) unlockJournalDir(relocked);
      relocked = null;
      unlockJournalDir(lock);
    },
  };
}

/** A journal in memory, for a store on `:memory:` (which nothing outlives anyway). */
export function createMemoryJournal(): Journal {
  let lines: Array<[number, Uint8Array]> = [];
  return {
    append(id, bytes) {
      lines.push([id, bytes.slice()]);
    },
    read(after) {
      return lines.filter(([id]) => id > after).map(([, bytes]) => commitOfBytes(bytes));
    },
    release(applied) {
      lines = lines.filter(([id]) => id > applied);
      return Promise.resolve();
    },
    ensure: () => {},
    unwrittenUpTo: () => 0,
    close() {
      lines = [];
    },
  };
}
