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
   * Whether the segment being written is still where it was begun. One deleted with its
   * directory (an `rm -rf` of DATA_DIR) takes every later line with it: then a new segment is
   * begun in the directory made again, and its first commit id returned (lines before it are
   * in the deleted files only); the same id, once, when an append began that segment first (a
   * new segment due before ensure looked); else null.
   */
  ensure(): number | null;
  /** The last commit that only segments deleted while the bridge ran held (0: none): until the
   * tables have it, they and the journal on disk lack it, and a model read from them is behind
   * what callers were told. */
  unfiledUpTo(): number;
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
  const all = segments(dir);
  /** The lines of every segment read, and the segments with a line first left out now. */
  const read: string[][] = [];
  const damaged: Array<[string, string[]]> = [];
  for (const [i, [firstId, path]] of all.entries()) {
    // A segment ends where the next begins: one that ends by `after` need not be read.
    if (i + 1 < all.length && all[i + 1]![0] - 1 <= after) continue;
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
  let file: Deno.FsFile | null = null;
  /** The segment being written, as `dev:ino`: another (or none) at its path means deleted. */
  let fileId = "";
  let size = 0;
  let next = lastId + 1;
  /** The lock taken again in the directory made last (see relock); the first is the store's. */
  let relocked: Deno.FsFile | null = null;
  /** The lock file held, as `dev:ino`: another (or none) at its path means it was deleted. */
  let lockId = fileIdOf(lock);
  /** The first commit of a segment an append began in the directory made again, until ensure
   * says so: lines before it went with the deleted one. */
  let remadeAt: number | null = null;
  /** Segments this journal wrote, oldest first: [first id, path]; the last is being written. */
  const written: Array<[number, string]> = [];
  /** The lines read() found it could not read, said once each. */
  const reported = new Set<string>();
  /** ensure() found the segment deleted and has not yet returned the new one's first id. */
  let lost = false;
  /** See Journal.unfiledUpTo. */
  let unfiled = 0;

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
  const begin = (firstId: number) => {
    file?.close();
    file = null;
    const path = `${dir}/${segmentName(firstId)}`;
    // A segment by this name can only hold a line that was refused: nothing to keep.
    if (written.at(-1)?.[1] === path) written.pop();
    removeIfThere(path);
    // Appending: after a refused write is cut off, the next one starts where it did.
    const open = () => Deno.openSync(path, { append: true, createNew: true });
    try {
      file = open();
    } catch (error) {
      // The directory was deleted (ensure had not looked yet): made again, as at the start.
      notFound(error);
      log.error("The journal's directory {dir} was deleted while the bridge ran: made again", {
        dir,
      });
      unfiled = Math.max(unfiled, firstId - 1);
      relock();
      file = open();
      remadeAt = firstId;
    }
    fileId = fileIdOf(file);
    size = 0;
    written.push([firstId, path]);
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
      if (file === null || size >= segmentBytes) {
        try {
          begin(id);
        } catch (error) {
          // Nothing of it was written: WeChat is told to send it again (503), not an error.
          throw new StoreRefusal(`Cannot begin a journal segment in ${dir}: ${error}`, {
            cause: error,
          });
        }
      }
      const written = bytes.length;
      try {
        let done = 0;
        while (done < written) done += file!.writeSync(bytes.subarray(done));
        if (fsync) file!.syncDataSync();
      } catch (error) {
        // Nothing of a refused commit may stay: cut the line off, or leave this segment.
        try {
          file!.truncateSync(size);
        } catch {
          file!.close();
          file = null;
          // Begun now, not at the next commit: a segment from this id marks the line left as
          // refused (readJournalDir), also to a start before that commit. A disk that takes no
          // file either leaves it to that commit (which is then refused too).
          try {
            begin(id);
          } catch { /* the refusal is said already */ }
        }
        throw error;
      }
      size += written;
      next = id + 1;
    },
    read(after) {
      // Not a line this journal refused (its caller told so) and could not cut off: a reload
      // after that refusal read it as a commit, and the next one, given its id, as applied.
      return readJournalDir(dir, after, { reported }).filter((commit) => commit.id < next);
    },
    release(applied, all = false) {
      const gone: Promise<void>[] = [];
      // A segment ends where the next begins; the last one is being written. Deleted by
      // Deno's blocking pool, not here: unlinking a 16 MiB file took 3-15 ms on this thread
      // (measured on ext4), a pause in answering WeChat every few seconds at 2,000/s.
      while (written.length > 1 && written[1]![0] - 1 <= applied) {
        gone.push(removeLater(written.shift()![1]));
      }
      if (all && written.length === 1 && next - 1 <= applied) {
        file?.close();
        file = null;
        gone.push(removeLater(written.shift()![1]));
      }
      return Promise.all(gone).then(() => {});
    },
    ensure() {
      if (!lost) {
        if (remadeAt !== null && file !== null && pathIdOf(written.at(-1)![1]) === fileId) {
          const at = remadeAt;
          remadeAt = null;
          return at;
        }
        // No segment begun since the start (nothing committed) or one begun in the directory
        // made again: nothing of the journal went, but the lock may have.
        if (file === null || pathIdOf(written.at(-1)![1]) === fileId) {
          if (lockGone()) relock();
          return null;
        }
        log.error(
          "The journal segment {path} was deleted while the bridge ran: a new one is begun; " +
            "what the deleted one held reaches the tables from memory",
          { path: written.at(-1)![1] },
        );
        // Said until a new segment holds the next commit. Nothing more goes to the deleted
        // file: an append now begins that segment, or is refused while it cannot.
        lost = true;
        unfiled = Math.max(unfiled, next - 1);
        written.length = 0;
        remadeAt = null;
        file.close();
        file = null;
      }
      // Either may throw (the directory cannot be made: no room, a file in its place); the loss
      // stands and the next look tries again. Clearing the list first and then throwing left
      // every later look throwing too, its appends going to the deleted file for good.
      if (lockGone()) relock();
      if (file === null) begin(next);
      lost = false;
      remadeAt = null;
      // The first segment begun since (by an append, when one came first): lines before it
      // are in the deleted files only.
      return written[0]![0];
    },
    unfiledUpTo: () => unfiled,
    close() {
      file?.close();
      file = null;
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
    ensure: () => null,
    unfiledUpTo: () => 0,
    close() {
      lines = [];
    },
  };
}
