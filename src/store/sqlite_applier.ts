// Who writes the SQLite store's commits to its tables, seen from the store: the worker
// (sqlite_worker.ts) for a file, or the main thread itself for `:memory:` and when the worker
// has died. Either way the store hands over each commit once its journal row is written, and
// waits, when a read needs the tables, until they have it.

import type { DatabaseSync } from "node:sqlite";
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
import type { WorkerReport, WorkerRequest, WorkerStart } from "./sqlite_worker.ts";

const log = getLogger(["bridge", "store"]);

/** Writes journal rows to the tables, soon or when asked. */
export interface Applier {
  /** Commit `id`'s journal line is written, as `bytes` (handed over: not to be used after):
   * apply it soon. */
  written(id: number, bytes: Uint8Array): void;
  /** Resolves once the tables have every journal row up to `id`. */
  applied(id: number): Promise<void>;
  /** Deletes expired rows, after applying the journal. */
  prune(now: number): void;
  /** Applies what is written and lets go of the files. */
  close(): Promise<void>;
}

/** The main thread's connections and what the applier needs to know. */
export interface ApplierOptions {
  db: DatabaseSync;
  st: ApplyStatements;
  read: ReadJournal;
  retention: Retention;
  applyDelayMs: number;
  /** The last row the tables have now. */
  applied: number;
  /** Told each time the tables have more of the journal. */
  onApplied(id: number): void;
}

/** Applies on the main thread: for `:memory:`, and in place of a worker that died (`lost`:
 * commits were handed to it, to be read back from the journal). */
export function createInlineApplier(options: ApplierOptions, lost = false): Applier {
  let applied = options.applied;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let queue: Uint8Array[] = [];
  const applyNow = () => {
    clearTimeout(timer);
    timer = undefined;
    const commits = queue.map(commitOfBytes);
    queue = [];
    const { db, st, read, retention } = options;
    let id: number;
    try {
      id = lost
        ? applyJournal(db, st, read, retention)
        : applyHanded(db, st, read, retention, commits);
      lost = false;
    } catch (error) {
      lost = true;
      throw error;
    }
    if (id > applied) options.onApplied(applied = id);
  };
  return {
    written(_id, bytes) {
      queue.push(bytes);
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
}

interface Waiter {
  id: number;
  resolve(): void;
  reject(error: Error): void;
}

/** Applies in the store's worker, on its own connections. */
export function startWorkerApplier(options: WorkerApplierOptions): Applier {
  const worker = new Worker(new URL("./sqlite_worker.ts", import.meta.url).href, {
    type: "module",
  });
  const post = (request: WorkerRequest) => worker.postMessage(request);
  const start: WorkerStart = {
    type: "start",
    path: options.path,
    journalDir: options.journalDir,
    fsync: options.fsync,
    retention: options.retention,
    applyDelayMs: options.applyDelayMs,
    checkpointMs: options.checkpointMs,
  };
  post(start);
  let applied = options.applied;
  /** The highest row a "flush" was posted for. */
  let flushAsked = 0;
  let waiters: Waiter[] = [];
  let failing = false;
  let onClosed: (() => void) | null = null;
  /** The main thread's applier, once the worker died. */
  let fallback: Applier | null = null;

  const onReport = (report: WorkerReport) => {
    if (report.type === "closed") return onClosed?.();
    if (report.type === "failed") {
      // The journal keeps the rows; reads waiting for them fail, the next write tries again.
      if (!failing) log.error("Cannot write the journal to the tables: {message}", report);
      failing = true;
      flushAsked = 0;
      const error = new Error(`Cannot write the journal to the tables: ${report.message}`);
      for (const w of waiters.splice(0)) w.reject(error);
      return;
    }
    failing = false;
    if (report.id > applied) options.onApplied(applied = report.id);
    waiters = waiters.filter((w) => w.id > applied || (w.resolve(), false));
    // A flush applies everything handed over before it: a read still waiting is owed rows
    // the worker could not find, and must not wait for ever.
    const flush = report.flush;
    if (flush === undefined) return;
    const behind = new Error(`Cannot read: the tables stop at ${applied}, before ${flush}`);
    waiters = waiters.filter((w) => w.id > flush || (w.reject(behind), false));
  };
  worker.onmessage = (event: MessageEvent<WorkerReport>) => onReport(event.data);
  worker.onerror = (event) => {
    event.preventDefault();
    log.warn("The SQLite worker stopped: {message}; the journal is applied on the main thread", {
      message: event.message,
    });
    worker.terminate();
    onClosed?.();
    // It reads what the worker had not applied from the journal file.
    fallback = createInlineApplier({ ...options, applied }, true);
    for (const w of waiters.splice(0)) fallback.applied(w.id).then(w.resolve, w.reject);
  };

  return {
    written(id, bytes) {
      if (fallback) return fallback.written(id, bytes);
      // Transferred, not copied: the worker reads the line the journal has.
      worker.postMessage({ type: "commit", bytes } satisfies WorkerRequest, [
        bytes.buffer as ArrayBuffer,
      ]);
    },
    applied(id) {
      if (id <= applied) return Promise.resolve();
      if (fallback) return fallback.applied(id);
      return new Promise<void>((resolve, reject) => {
        waiters.push({ id, resolve, reject });
        if (flushAsked >= id) return;
        flushAsked = id;
        post({ type: "flush", upTo: id });
      });
    },
    prune(now) {
      if (fallback) return fallback.prune(now);
      post({ type: "prune", now });
    },
    async close() {
      if (fallback) return await fallback.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        onClosed = resolve;
        // The worker applies what is left first; the store applies anything it could not.
        timer = setTimeout(resolve, 5000);
        post({ type: "close" });
      });
      clearTimeout(timer);
      worker.terminate();
      const error = new Error("The store is closed");
      for (const w of waiters.splice(0)) w.reject(error);
    },
  };
}
