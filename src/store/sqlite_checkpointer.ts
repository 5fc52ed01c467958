// The SQLite store's checkpointer: a worker with its own connection that copies the WAL into
// the database file every interval, so that copy (tens of ms at a few thousand messages a
// second) never holds the thread that answers WeChat. A worker's entry: it runs on message.

import { DatabaseSync } from "node:sqlite";

/** What the store posts to the worker: the file, and how often to checkpoint. */
export interface CheckpointerStart {
  path: string;
  intervalMs: number;
}

interface WorkerScope {
  onmessage: ((event: MessageEvent<CheckpointerStart | "close">) => void) | null;
  postMessage(message: "closed"): void;
  close(): void;
}

const scope = globalThis as unknown as WorkerScope;
let db: DatabaseSync | null = null;
let timer: ReturnType<typeof setInterval> | undefined;

scope.onmessage = (event) => {
  if (event.data === "close") {
    // Closed here, not left to terminate(): an open connection would keep its locks.
    clearInterval(timer);
    db?.close();
    db = null;
    scope.postMessage("closed");
    scope.close();
    return;
  }
  const { path, intervalMs } = event.data;
  db = new DatabaseSync(path);
  db.exec("PRAGMA busy_timeout = 5000");
  timer = setInterval(() => {
    try {
      // PASSIVE: copies what it can without waiting for, or blocking, the writer.
      db?.exec("PRAGMA wal_checkpoint(PASSIVE)");
    } catch {
      // Busy or closing: the next interval tries again; the store checkpoints at close.
    }
  }, intervalMs);
};
