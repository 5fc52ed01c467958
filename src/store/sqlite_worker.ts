// The SQLite store's worker: writes the journal to the tables (applyJournal) and copies both
// files' WALs into their database files, on connections of its own, so neither holds the
// thread that answers WeChat. A worker's entry: it runs on messages from sqlite_applier.ts.

import type { DatabaseSync } from "node:sqlite";
import { JOURNAL_SCHEMA, openSqliteDatabase } from "./sqlite_schema.ts";
import {
  applyJournal,
  prepareApply,
  prepareJournal,
  pruneExpired,
  type Retention,
} from "./sqlite_journal.ts";

/** What the store posts first: the files, and how the worker keeps them. */
export interface WorkerStart {
  type: "start";
  path: string;
  journalPath: string;
  fsync: boolean;
  retention: Retention;
  /** How long after a row is written it is applied, unless a read asks sooner. */
  applyDelayMs: number;
  checkpointMs: number;
}

/** The store's requests: rows were written (apply soon), apply now, prune, close. */
export type WorkerRequest =
  | WorkerStart
  | { type: "apply" }
  | { type: "flush" }
  | { type: "prune"; now: number }
  | { type: "close" };

/** The worker's answers: the last journal row the tables have, a failure, closed. */
export type WorkerReport =
  | { type: "applied"; id: number }
  | { type: "failed"; message: string }
  | { type: "closed" };

interface WorkerScope {
  onmessage: ((event: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReport): void;
  close(): void;
}

const scope = globalThis as unknown as WorkerScope;
let state: {
  start: WorkerStart;
  tables: DatabaseSync;
  journal: DatabaseSync;
  apply: () => number;
  checkpointer: ReturnType<typeof setInterval>;
} | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;

/** Applies what the journal holds; then `after` (a prune), then tells the store. */
function applyNow(after?: () => void): void {
  clearTimeout(timer);
  timer = undefined;
  if (!state) return;
  try {
    const id = state.apply();
    after?.();
    scope.postMessage({ type: "applied", id });
  } catch (error) {
    // The journal keeps the rows: the next request (or the next start) applies them.
    scope.postMessage({ type: "failed", message: String(error) });
  }
}

function start(request: WorkerStart): void {
  const tables = openSqliteDatabase(request.path, request.fsync);
  const journal = openSqliteDatabase(request.journalPath, request.fsync, JOURNAL_SCHEMA);
  const st = prepareApply(tables);
  const jst = prepareJournal(journal);
  const checkpointer = setInterval(() => {
    for (const db of [tables, journal]) {
      try {
        // PASSIVE: copies what it can without waiting for, or blocking, a writer.
        db.exec("PRAGMA wal_checkpoint(PASSIVE)");
      } catch {
        // Busy or closing: the next interval tries again; the store checkpoints at close.
      }
    }
  }, request.checkpointMs);
  state = {
    start: request,
    tables,
    journal,
    apply: () => applyJournal(tables, st, jst, request.retention),
    checkpointer,
  };
}

function close(): void {
  if (state) {
    applyNow();
    clearInterval(state.checkpointer);
    // Closed here, not left to terminate(): an open connection would keep its locks.
    state.tables.close();
    state.journal.close();
    state = null;
  }
  scope.postMessage({ type: "closed" });
  scope.close();
}

scope.onmessage = (event) => {
  const request = event.data;
  switch (request.type) {
    case "start":
      try {
        start(request);
      } catch (error) {
        scope.postMessage({ type: "failed", message: String(error) });
      }
      return;
    case "apply":
      // Rows wait a little, so one transaction takes many commits.
      if (timer === undefined && state) {
        timer = setTimeout(() => applyNow(), state.start.applyDelayMs);
      }
      return;
    case "flush":
      return applyNow();
    case "prune":
      return applyNow(() => state && pruneExpired(state.tables, request.now));
    case "close":
      return close();
  }
};
