// The SQLite store's tables, on one screen, and how their file is opened. They are written
// from the journal (sqlite_journal_file.ts, the durable record each commit writes before
// anyone is told) by the store's worker, and are what reads and a restart use.

import { DatabaseSync } from "node:sqlite";

/** Creates every table and index of `bridge.sqlite` that is missing; safe on every open. Rows
 * are JSON text, so `sqlite3 bridge.sqlite` shows them as is. `meta` 'applied' is the last
 * journal row written to the tables. (Before issue 17 the journal was a table here too: a row
 * left in it is applied at the next start and the table dropped.) */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contacts (
  follower_id TEXT PRIMARY KEY, json TEXT NOT NULL,
  -- The list it is in (the agent serving it, or that last did) and its place there.
  agent_key TEXT, at INTEGER NOT NULL DEFAULT 0,
  -- While an agent serves it and its 48-hour window may still need a notice: when it closes.
  closes_at INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contacts_served ON contacts (agent_key, at DESC, follower_id DESC);
CREATE INDEX IF NOT EXISTS contacts_windows ON contacts (closes_at) WHERE closes_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS agents (agent_id TEXT PRIMARY KEY, json TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
  id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, seq INTEGER NOT NULL, frame TEXT NOT NULL,
  expires_at INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS log_by_agent ON log (agent_id, seq);
CREATE TABLE IF NOT EXISTS history (
  id INTEGER PRIMARY KEY, follower_id TEXT NOT NULL, n INTEGER NOT NULL, item TEXT NOT NULL,
  expires_at INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS history_by_follower ON history (follower_id, n);
CREATE TABLE IF NOT EXISTS queue (
  follower_id TEXT NOT NULL, n INTEGER NOT NULL, stamp INTEGER NOT NULL, envelope TEXT NOT NULL,
  PRIMARY KEY (follower_id, n)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dedup (id INTEGER PRIMARY KEY, keys TEXT NOT NULL,
  expires_at INTEGER NOT NULL);
-- With WECHAT_MAX_AGE_S, the body each plain WeChat signature first carried, by commit:
-- entries [signature, hash, expiry] as JSON, kept until the last of them expires.
CREATE TABLE IF NOT EXISTS signed_bodies (id INTEGER PRIMARY KEY, entries TEXT NOT NULL,
  expires_at INTEGER NOT NULL);
-- Each forgotten follower's cut (model.ts ForgetCut: agent -> the last seq of its log at the
-- forget, as JSON), kept as long as the log rows it covers: a replay skips those rows.
CREATE TABLE IF NOT EXISTS forget_cuts (follower_id TEXT PRIMARY KEY, cut TEXT NOT NULL,
  expires_at INTEGER NOT NULL) WITHOUT ROWID;
-- The team's quick replies (快捷回复).
CREATE TABLE IF NOT EXISTS quick_replies (id TEXT PRIMARY KEY, json TEXT NOT NULL) WITHOUT ROWID;
-- Replies recorded "sending" whose outcome is not written yet, by the commit's time (ms): kept
-- as the journal is applied, so a start finds those a bridge stopped between the two left.
CREATE TABLE IF NOT EXISTS unanswered (follower_id TEXT NOT NULL, n INTEGER NOT NULL,
  at INTEGER NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (follower_id, n)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS unanswered_at ON unanswered (at);
-- The pruner finds rows past their time by these, wherever they are in their table (a cut
-- retention or a clock set back puts later rows first); created on the first open of an older
-- file too.
CREATE INDEX IF NOT EXISTS log_expiry ON log (expires_at);
CREATE INDEX IF NOT EXISTS history_expiry ON history (expires_at);
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup (expires_at);
CREATE INDEX IF NOT EXISTS signed_bodies_expiry ON signed_bodies (expires_at);
CREATE INDEX IF NOT EXISTS forget_cuts_expiry ON forget_cuts (expires_at);
CREATE INDEX IF NOT EXISTS unanswered_expiry ON unanswered (expires_at);
`;

/** How a reply still waiting for WeChat's answer is written in its history item's JSON (a
 * text cannot hold it unescaped, so a message never matches). */
export const SENDING_JSON = '"status":"sending"';

/** Fills the unanswered table from history once, when a file from before it is first opened. */
const BACKFILL_UNANSWERED = `
INSERT OR IGNORE INTO unanswered (follower_id, n, at, expires_at)
SELECT follower_id, n, CAST(json_extract(item, '$.send_time') AS INTEGER) * 1000, expires_at
FROM history WHERE instr(item, '${SENDING_JSON}') > 0`;

/** A WAL file larger than this is cut back after it was checkpointed. */
const WAL_SIZE_LIMIT = 64 * 1024 * 1024;

/** Opens (creating if needed) the SQLite file at `path`, in WAL mode, with the schema. */
export function openSqliteDatabase(path: string, fsync = false): DatabaseSync {
  const db = new DatabaseSync(path);
  try {
    // First: every statement after it, the switch to WAL included, waits for a lock another
    // process holds (a bridge before this one closing its file) instead of failing at start.
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(`PRAGMA synchronous = ${fsync ? "FULL" : "NORMAL"}`);
    // Checkpoints run in the store's worker (sqlite_worker.ts), off the thread that answers.
    db.exec("PRAGMA wal_autocheckpoint = 0");
    db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT}`);
    // The table of unanswered replies and its fill in one transaction: killed during the fill
    // (seconds on a big file), the table stood empty, and the next open, finding it, never
    // filled it. Deferred: a file whose tables another process holds locked opens as before,
    // when there is nothing to create.
    db.exec("BEGIN");
    try {
      const before = db.prepare(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('history', 'unanswered')",
      ).all().map((row) => row.name);
      db.exec(SCHEMA);
      if (before.includes("history") && !before.includes("unanswered")) {
        db.exec(BACKFILL_UNANSWERED);
      }
      db.exec("COMMIT");
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw error;
    }
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}
