// Who writes the SQLite store's commits to its tables, seen from the store: the worker
// (sqlite_worker.ts) for a file, or the main thread itself for `:memory:` and when the worker
// has died. The store encodes each journal line with encode(), writes it, says so with
// written(); lines reach the tables a little later, in one batch, or at once when a read waits.

import { backup, type DatabaseSync } from "node:sqlite";
import { getLogger } from "@logtape/logtape";
import {
  applyHanded,
  applyJournal,
  type ApplyStatements,
  pruneExpired,
  type ReadJournal,
  type Retention,
} from "./sqlite_journal.ts";
import { commitOfBytes } from "./sqlite_journal_line.ts";
import { logLeftOut } from "./sqlite_journal_file.ts";
import type { WorkerReport, WorkerRequest, WorkerStart } from "./sqlite_worker.ts";

const log = getLogger(["bridge", "store"]);

/** Lines are encoded one after another into a buffer of this size, handed over whole (a
 * post costs more the larger its buffer: 256 KiB is about 20 ms of lines at 10,000 msg/s). */
const ARENA_BYTES = 1 << 18;
/** Lines a failed write keeps for the next, at most (bytes), by default: past it they are
 * dropped and read back from the journal (a segment deleted meanwhile is written back there). */
export const KEEP_FAILED_BYTES = 64 * 1024 * 1024;

/** Writes journal lines to the tables, soon or when asked. */
export interface Applier {
  /** The UTF-8 bytes of `line`, to be written to the journal and then passed to written()
   * before the next encode(). */
  encode(line: string): Uint8Array;
  /** Commit `id`'s line is in the journal as `bytes` (from encode()): apply it soon. */
  written(id: number, bytes: Uint8Array): void;
  /** Resolves once the tables have every commit up to `id`. */
  applied(id: number): Promise<void>;
  /** Deletes expired rows, after applying what was written. */
  prune(now: number): void;
  /** Copies the tables to a new database file at `dest` (SQLite's backup): on the worker's
   * thread while there is one, for it holds its thread for as long as it takes. */
  backup(dest: string): Promise<void>;
  /** Applies what was written and lets go of the file. */
  close(): Promise<void>;
}

/** The main thread's connection and what the applier needs to know. */
export interface ApplierOptions {
  db: DatabaseSync;
  st: ApplyStatements;
  read: ReadJournal;
  retention: Retention;
  /** How long written lines wait before they go to the tables, ms. */
  applyDelayMs: number;
  /** The last commit the tables have now. */
  applied: number;
  /** Told each time the tables have more of the journal. */
  onApplied(id: number): void;
  /** Lines a failed write keeps for the next, at most (bytes; KEEP_FAILED_BYTES). */
  keepFailedBytes?: number;
}

const encoder = new TextEncoder();

/** Applies on the main thread: for `:memory:`, and in place of a worker that died (`lost`:
 * lines were handed to it, to be read back from the journal). */
export function createInlineApplier(options: ApplierOptions, lost = false): Applier {
  let applied = options.applied;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let queue: Uint8Array[] = [];
  let queuedBytes = 0;
  const applyNow = () => {
    clearTimeout(timer);
    timer = undefined;
    const lines = queue;
    const bytes = queuedBytes;
    queue = [];
    queuedBytes = 0;
    const { db, st, read, retention } = options;
    let id: number;
    try {
      id = lost
        ? applyJournal(db, st, read, retention)
        : applyHanded(db, st, read, retention, lines.map(commitOfBytes));
      lost = false;
    } catch (error) {
      // Kept for the next write: read back, those of a segment deleted and not yet written back
      // would be missed.
      if (!lost && bytes <= (options.keepFailedBytes ?? KEEP_FAILED_BYTES)) {
        queue = lines;
        queuedBytes = bytes;
      } else {
        lost = true;
      }
      throw error;
    }
    if (id > applied) options.onApplied(applied = id);
  };
  return {
    encode: (line) => encoder.encode(line),
    written(_id, bytes) {
      queue.push(bytes);
      queuedBytes += bytes.length;
      if (timer !== undefined) return;
      timer = setTimeout(() => {
        try {
          applyNow();
        } catch (error) {
          log.error("Cannot write the journal to the tables: {error}", { error });
        }
      }, options.applyDelayMs);
      Deno.unrefTimer(timer);
    },
    applied(id) {
      try {
        if (id > applied) applyNow();
        return Promise.resolve();
      } catch (error) {
        return Promise.reject(error);
      }
    },
    prune(now) {
      applyNow();
      pruneExpired(options.db, now);
    },
    backup: (dest) => backup(options.db, dest).then(() => {}),
    close() {
      clearTimeout(timer);
      timer = undefined;
      return Promise.resolve();
    },
  };
}

/** What the worker is started with, besides the applier's options. */
export interface WorkerApplierOptions extends ApplierOptions {
  path: string;
  journalDir: string;
  fsync: boolean;
  checkpointMs: number;
  /** The worker kept the copy `copy` of a segment, from a read of the commits after `after`
   * (told before the apply it was read for). */
  onCopied?(copy: string, after: number): void;
}

/** A copy asked of the worker and not yet reported. */
interface PendingBackup {
  dest: string;
  resolve(): void;
  reject(error: Error): void;
}

interface Waiter {
  id: number;
  /** The flush whose answer settles it, if the rows it waits for have not come by then. */
  flush: number;
  resolve(): void;
  reject(error: Error): void;
}

/** Applies in the store's worker, on its own connection. Lines are encoded into one buffer
 * (an arena) and handed over with it, transferred, not copied: one message per batch. */
export function startWorkerApplier(options: WorkerApplierOptions): Applier {
  const worker = new Worker(new URL("./sqlite_worker.ts", import.meta.url).href, {
    type: "module",
  });
  const post = (request: WorkerRequest, transfer: ArrayBuffer[] = []) =>
    worker.postMessage(request, transfer);
  const start: WorkerStart = {
    type: "start",
    path: options.path,
    journalDir: options.journalDir,
    fsync: options.fsync,
    retention: options.retention,
    checkpointMs: options.checkpointMs,
    keepFailedBytes: options.keepFailedBytes ?? KEEP_FAILED_BYTES,
  };
  post(start);
  let applied = options.applied;
  let arena = new Uint8Array(ARENA_BYTES);
  let used = 0;
  /** Where each line written to the arena ends. */
  let ends: number[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** The highest commit a flush was posted for, and the last flush's number. */
  let flushAsked = 0;
  let flushes = 0;
  let waiters: Waiter[] = [];
  let failing = false;
  let onClosed: (() => void) | null = null;
  /** The main thread's applier, once the worker died. */
  let fallback: Applier | null = null;
  let closed = false;
  let backups = 0;
  const pendingBackups = new Map<number, PendingBackup>();
  /** Commits past `applied` the worker left out as damage: no apply will ever bring them. */
  const leftOut = new Set<number>();
  /** The commit a read may stop waiting at: `applied`, and the damage right after it. A read
   * waiting for a last commit left out waited for the next commit of any kind, and failed at
   * each flush ('the tables stop at') until then. */
  const passed = () => {
    let id = applied;
    while (leftOut.has(id + 1)) id++;
    return id;
  };

  /** Posts the lines written so far (and, with `request`, asks for more after them). */
  const handOver = (request?: WorkerRequest) => {
    clearTimeout(timer);
    timer = undefined;
    if (ends.length > 0) {
      const buffer = arena.buffer as ArrayBuffer;
      post({ type: "lines", buffer, ends }, [buffer]);
      arena = new Uint8Array(ARENA_BYTES);
      used = 0;
      ends = [];
    }
    if (request) post(request);
  };

  const onReport = (report: WorkerReport) => {
    if (report.type === "closed") return onClosed?.();
    if (report.type === "leftOut") {
      const { commit: id, placed } = report.note;
      // Not one whose id is damaged too: that number may be a commit still to come.
      if (typeof id === "number" && placed && id > applied) leftOut.add(id);
      return logLeftOut(report.note);
    }
    if (report.type === "copied") return options.onCopied?.(report.copy, report.after);
    if (report.type === "backedUp") {
      const pending = pendingBackups.get(report.backup);
      pendingBackups.delete(report.backup);
      if (report.error === undefined) pending?.resolve();
      else pending?.reject(new Error(report.error));
      return;
    }
    let error: Error;
    if (report.type === "failed") {
      // The journal keeps the lines; the next batch (or read) tries again.
      if (!failing) log.error("Cannot write the journal to the tables: {message}", report);
      failing = true;
      flushAsked = 0;
      error = new Error(`Cannot write the journal to the tables: ${report.message}`);
    } else {
      failing = false;
      if (report.id > applied) options.onApplied(applied = report.id);
      for (const id of leftOut) if (id <= applied) leftOut.delete(id);
      const upTo = passed();
      waiters = waiters.filter((w) => w.id > upTo || (w.resolve(), false));
      error = new Error(`Cannot read: the tables stop at ${applied}`);
    }
    // A flush answers for everything handed over before it: a read it was posted for that
    // still waits is owed what the worker could not write or find, and must not wait for ever.
    const flush = report.flush;
    if (flush === undefined) return;
    waiters = waiters.filter((w) => w.flush > flush || (w.reject(error), false));
  };
  worker.onmessage = (event: MessageEvent<WorkerReport>) => onReport(event.data);
  worker.onerror = (event) => {
    event.preventDefault();
    log.warn("The SQLite worker stopped: {message}; the journal is applied on the main thread", {
      message: event.message,
    });
    clearTimeout(timer);
    worker.terminate();
    onClosed?.();
    // It reads what the worker had not applied from the journal.
    fallback = createInlineApplier({ ...options, applied }, true);
    for (const w of waiters.splice(0)) fallback.applied(w.id).then(w.resolve, w.reject);
    // A copy it was making is made again, here.
    for (const b of pendingBackups.values()) fallback.backup(b.dest).then(b.resolve, b.reject);
    pendingBackups.clear();
  };

  return {
    encode(line) {
      if (fallback) return fallback.encode(line);
      // UTF-8 takes at most 3 bytes per UTF-16 unit.
      const most = line.length * 3;
      if (most > arena.length - used) {
        handOver();
        if (most > arena.length) arena = new Uint8Array(most);
      }
      const { written } = encoder.encodeInto(line, arena.subarray(used));
      return arena.subarray(used, used + written);
    },
    written(id, bytes) {
      if (fallback) return fallback.written(id, bytes);
      used += bytes.length;
      ends.push(used);
      if (timer !== undefined) return;
      timer = setTimeout(() => handOver(), options.applyDelayMs);
      Deno.unrefTimer(timer);
    },
    applied(id) {
      if (id <= passed()) return Promise.resolve();
      if (fallback) return fallback.applied(id);
      return new Promise<void>((resolve, reject) => {
        if (flushAsked < id) {
          flushAsked = id;
          handOver({ type: "flush", flush: ++flushes });
        }
        waiters.push({ id, flush: flushes, resolve, reject });
      });
    },
    prune(now) {
      if (fallback) return fallback.prune(now);
      handOver({ type: "prune", now });
    },
    backup(dest) {
      // Once the worker is gone the main thread's connection copies (at close nothing else
      // is waiting for the thread).
      if (fallback || closed) return backup(options.db, dest).then(() => {});
      return new Promise<void>((resolve, reject) => {
        const id = ++backups;
        pendingBackups.set(id, { dest, resolve, reject });
        post({ type: "backup", backup: id, dest });
      });
    },
    async close() {
      closed = true;
      if (fallback) return await fallback.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        onClosed = resolve;
        // The worker applies what is handed over first; the store applies anything it could not.
        timer = setTimeout(resolve, 5000);
        handOver({ type: "close" });
      });
      clearTimeout(timer);
      worker.terminate();
      const error = new Error("The store is closed");
      for (const w of waiters.splice(0)) w.reject(error);
      // Cut off before the worker reported it: the caller may copy again, on this thread.
      for (const b of pendingBackups.values()) b.reject(error);
      pendingBackups.clear();
    },
  };
}
