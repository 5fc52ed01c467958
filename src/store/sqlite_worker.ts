// The SQLite store's worker: writes the commits the store hands it to the tables (from the
// journal when a hand-over was lost), copies the WAL into the database file, and writes a
// deleted file back, on a connection of its own, so none of them holds the thread that answers
// WeChat. A worker's entry: it runs on messages from sqlite_applier.ts.

import { backup, type DatabaseSync } from "node:sqlite";
import { getPriority, setPriority } from "node:os";
import { openSqliteDatabase } from "./sqlite_schema.ts";
import {
  applyHanded,
  applyJournal,
  type Commit,
  prepareApply,
  pruneExpired,
  type Retention,
} from "./sqlite_journal.ts";
import { type LeftOut, readJournalDir } from "./sqlite_journal_file.ts";
import { commitOfBytes } from "./sqlite_journal_line.ts";

/** What the store posts first: the files, and how the worker keeps them. */
export interface WorkerStart {
  type: "start";
  path: string;
  journalDir: string;
  fsync: boolean;
  retention: Retention;
  checkpointMs: number;
  /** Lines a failed write keeps for the next, at most (bytes); past it they are dropped and
   * read back from the journal, which lacks those of a segment deleted meanwhile. */
  keepFailedBytes: number;
}

/** The store's requests: lines it wrote to the journal (a buffer, and where each line in it
 * ends), apply everything now (a read waits for commit `upTo`), prune, copy the tables to a
 * new file at `dest` (the write-back of a deleted file), close. */
export type WorkerRequest =
  | WorkerStart
  | { type: "lines"; buffer: ArrayBuffer; ends: number[] }
  | { type: "flush"; flush: number }
  | { type: "prune"; now: number }
  | { type: "backup"; backup: number; dest: string }
  | { type: "close" };

/** The worker's answers: the last journal row the tables have, a failure, a journal line it
 * left out (for the store's thread to log), a segment's copy kept from a read after commit
 * `after`, a copy of the tables made (or why not), closed. */
export type WorkerReport =
  | { type: "applied"; id: number; flush?: number }
  | { type: "leftOut"; note: LeftOut }
  | { type: "copied"; copy: string; after: number }
  | { type: "failed"; message: string; flush?: number }
  | { type: "backedUp"; backup: number; error?: string }
  | { type: "closed" };

interface WorkerScope {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReport): void;
  close(): void;
}

const scope = globalThis as unknown as WorkerScope;

/** How much nicer this thread is than the process: the thread that answers WeChat wins the
 * CPU whenever both want it, as background compaction does in RocksDB. Its batches took a few
 * ms of CPU at a time, long enough to hold the other thread off a core on a busy machine. */
const WORKER_NICER_BY = 10;
/** The lowest priority Linux has. */
const MAX_NICE = 19;
try {
  // On Linux a nice value is a thread's: pid 0 is this thread alone (it starts at the value of
  // the thread that made it, the process's). Elsewhere it would be the whole process's, the
  // thread that answers too. Relative, not set outright: under `nice -n 15`, 10 would put this
  // thread above the one that answers (root may raise a priority).
  if (Deno.build.os === "linux") setPriority(Math.min(MAX_NICE, getPriority() + WORKER_NICER_BY));
} catch {
  // Not permitted here (a sandbox): the thread runs at the process's priority.
}
let state: {
  start: WorkerStart;
  tables: DatabaseSync;
  apply: (commits: Commit[]) => number;
  replay: () => number;
  checkpointer: ReturnType<typeof setInterval>;
} | null = null;
/** How long lines handed over wait here before they go to the tables, ms (besides the
 * store's own wait): one transaction for more messages writes each page it changes (an agent's
 * log, a follower's history, a contact) once for all of them, and that write, not the SQL, is
 * most of the cost (bench/apply_bench.ts). Reads do not wait for it: they ask for a flush. */
const COALESCE_MS = 100;
/** Lines are applied at once when this many bytes of them wait. */
const COALESCE_BYTES = 4 * 1024 * 1024;

/** Journal lines handed over and not yet applied, in journal order, and their size. */
let queue: Uint8Array[] = [];
let queuedBytes = 0;
let timer: ReturnType<typeof setTimeout> | undefined;
/** Handed-over commits were dropped (a failed write held more than KEEP_FAILED_BYTES): read
 * them back from the journal. */
let lost = false;
/** The last commit handed over. A read-back takes nothing after it: the store hands over every
 * commit the journal took, and a line after them is one it refused and could not cut off (an
 * fdatasync then a truncate failing), applied once it was the journal's last. */
let handedUpTo = 0;

/** The commit id a journal line begins with (its digits before the first US). */
function idOfLine(line: Uint8Array): number {
  let id = 0;
  for (const byte of line) {
    if (byte < 0x30 || byte > 0x39) break;
    id = id * 10 + byte - 0x30;
  }
  return id;
}

/** Applies what was handed over; then `after` (a prune), then tells the store (and which
 * flush this answers). */
function applyNow(after?: () => void, flush?: number): void {
  clearTimeout(timer);
  timer = undefined;
  if (!state) return;
  const lines = queue;
  const bytes = queuedBytes;
  queue = [];
  queuedBytes = 0;
  try {
    const id = lost ? state.replay() : state.apply(lines.map(commitOfBytes));
    lost = false;
    after?.();
    scope.postMessage({
      type: "applied",
      id,
      ...(flush === undefined ? {} : { flush }),
    });
  } catch (error) {
    // Kept for the next write, not read back from the journal then: a segment deleted since
    // (bridge.journal removed while bridge.sqlite was locked) is missing until the journal's
    // next look writes it back, and a read-back meanwhile could skip past its lines for good.
    if (!lost && bytes <= state.start.keepFailedBytes) {
      queue = lines;
      queuedBytes = bytes;
    } else {
      lost = true;
    }
    const message = String(error);
    scope.postMessage({
      type: "failed",
      message,
      ...(flush === undefined ? {} : { flush }),
    });
  }
}

function start(request: WorkerStart): void {
  const tables = openSqliteDatabase(request.path, request.fsync);
  const st = prepareApply(tables);
  // One for the worker's life: a line it cannot read is logged once, not at every apply.
  const reported = new Set<string>();
  const read = (after: number) =>
    readJournalDir(request.journalDir, after, {
      reported,
      // A segment deleted and not yet written back by the store's thread: refused (the write
      // fails and is made again), not applied past.
      whole: true,
      leftOut: (note) => scope.postMessage({ type: "leftOut", note }),
      // Made from what was read: a forget committed since then scrubbed the copies there
      // were, not this one. The store's thread takes its follower out (reports keep order:
      // before this apply's).
      kept: (copy) => scope.postMessage({ type: "copied", copy, after }),
    }).filter((commit) => commit.id <= handedUpTo);
  const checkpointer = setInterval(() => {
    try {
      // PASSIVE: copies what it can without waiting for, or blocking, a writer.
      tables.exec("PRAGMA wal_checkpoint(PASSIVE)");
    } catch {
      // Busy or closing: the next interval tries again; the store checkpoints at close.
    }
  }, request.checkpointMs);
  state = {
    start: request,
    tables,
    apply: (commits) => applyHanded(tables, st, read, request.retention, commits),
    replay: () => applyJournal(tables, st, read, request.retention),
    checkpointer,
  };
}

/** Copies the tables to `dest`. node:sqlite's backup() runs whole within the call in Deno
 * (864 ms at 100 MB): here it holds this thread, not the one that answers. */
async function backUp(request: { backup: number; dest: string }): Promise<void> {
  try {
    if (!state) throw new Error("The worker has no tables open");
    await backup(state.tables, request.dest);
    scope.postMessage({ type: "backedUp", backup: request.backup });
  } catch (error) {
    scope.postMessage({ type: "backedUp", backup: request.backup, error: String(error) });
  }
}

function close(): void {
  if (state) {
    applyNow();
    clearInterval(state.checkpointer);
    // Closed here, not left to terminate(): an open connection would keep its locks.
    state.tables.close();
    state = null;
  }
  scope.postMessage({ type: "closed" });
  scope.close();
}

scope.onmessage = (event) => {
  const request = event.data;
  switch (request.type) {
    case "start":
      // A worker without its tables can serve nothing: thrown, it stops, and the store applies
      // the journal on its own thread instead (a read must never wait on it for ever).
      start(request);
      return;
    case "lines": {
      // The store waited a little before handing them over, and they wait a little more here:
      // one transaction takes them all.
      const bytes = new Uint8Array(request.buffer);
      let start = 0;
      for (const end of request.ends) {
        const line = bytes.subarray(start, end);
        queue.push(line);
        handedUpTo = Math.max(handedUpTo, idOfLine(line));
        start = end;
      }
      queuedBytes += start;
      if (queuedBytes >= COALESCE_BYTES) return applyNow();
      timer ??= setTimeout(() => applyNow(), COALESCE_MS);
      return;
    }
    case "flush":
      return applyNow(undefined, request.flush);
    case "prune":
      return applyNow(() => state && pruneExpired(state.tables, request.now));
    case "backup":
      backUp(request);
      return;
    case "close":
      return close();
  }
};
