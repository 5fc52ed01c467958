// The SQLite store's tables, on one screen. `journal` is the durable record each commit
// writes before anyone is told; the other tables are written from it afterwards and are what
// reads and a restart use. Rows are JSON text, so `sqlite3 bridge.sqlite` shows them as is.

/** Creates every table and index that is missing; safe to run on every open. */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, changes TEXT NOT NULL);
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
`;
