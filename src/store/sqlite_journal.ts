// How the SQLite store's journal reaches its tables: applyJournal() writes the journal rows
// after the last applied one, in order, and records the last in the tables' `meta`, in the same
// transaction, so every row is applied once whichever thread does it (the store's worker, or
// the main thread at start, on a failed commit and at close).

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { MESSAGE_WINDOW_MS } from "../protocol/window.ts";
import type { AgentRecord, Contact, HistoryItem } from "../core/store.ts";

/**
 * One journal row: what one commit changed, as JSON text. Frames, history items and quick
 * replies are JSON already, so they are embedded as they are, not escaped as strings. Every
 * field but `t` may be left out when empty.
 * `l`: log [agent, seq, frame]; `h`: history [follower, n, item]; `q`: queued [follower, n,
 * stamp, envelope]; `d`: dequeued [follower, n]; `c`: contacts; `a`: agents; `k`: dedup
 * [key, expiry]; `f`: followers forgotten (contact and history deleted, in order with the
 * rest); `u`: a reply's outcome [follower, n, status, error?]; `p`: quick replies put; `x`:
 * quick replies deleted (ids); `t`: the commit's time (ms), from which expiries are counted.
 */
export interface JournalRecord {
  l?: Array<[string, number, unknown]>;
  h?: Array<[string, number, unknown]>;
  q?: Array<[string, number, number, unknown]>;
  d?: Array<[string, number]>;
  c?: Contact[];
  a?: AgentRecord[];
  k?: Array<[string, number]>;
  f?: string[];
  u?: Array<[string, number, "sent" | "failed", string?]>;
  p?: Array<{ id: string }>;
  x?: string[];
  t: number;
}

/** How long rows are kept: history `retentionMs`, agents' logs `logRetainMs` (ms). */
export interface Retention {
  retentionMs: number;
  logRetainMs: number;
}

/** A contact's row: id, JSON, its list's agent and time, its window's close (see the schema). */
export type ContactRow = [string, string, string | null, number, number | null];

/** The row of `c`, whose JSON is `json`. */
export function contactRow(c: Contact, json: string): ContactRow {
  const windowed = c.agent_id !== null && c.last_inbound_at > 0 &&
    c.last_inbound_kind === "message" && c.window_notice !== "expired";
  return [
    c.follower_id,
    json,
    c.agent_id ?? c.last_agent_id,
    c.last_message_at,
    windowed ? c.last_inbound_at + MESSAGE_WINDOW_MS : null,
  ];
}

/** The statements that write the tables, on the tables' connection. */
export function prepareApply(db: DatabaseSync) {
  const s = (sql: string): StatementSync => db.prepare(sql);
  return {
    getApplied: s("SELECT value FROM meta WHERE key = 'applied'"),
    setApplied: s("INSERT OR REPLACE INTO meta (key, value) VALUES ('applied', ?)"),
    log: s("INSERT OR REPLACE INTO log (agent_id, seq, frame, expires_at) VALUES (?, ?, ?, ?)"),
    history: s(
      "INSERT OR REPLACE INTO history (follower_id, n, item, expires_at) VALUES (?, ?, ?, ?)",
    ),
    queued: s(
      "INSERT OR REPLACE INTO queue (follower_id, n, stamp, envelope) VALUES (?, ?, ?, ?)",
    ),
    dequeued: s("DELETE FROM queue WHERE follower_id = ? AND n = ?"),
    contact: s(
      `INSERT OR REPLACE INTO contacts (follower_id, json, agent_key, at, closes_at)
       VALUES (?, ?, ?, ?, ?)`,
    ),
    agent: s("INSERT OR REPLACE INTO agents (agent_id, json) VALUES (?, ?)"),
    dedup: s("INSERT INTO dedup (keys, expires_at) VALUES (?, ?)"),
    forgetHistory: s("DELETE FROM history WHERE follower_id = ?"),
    forgetContact: s("DELETE FROM contacts WHERE follower_id = ?"),
    getHistory: s("SELECT item FROM history WHERE follower_id = ? AND n = ?"),
    setHistory: s("UPDATE history SET item = ? WHERE follower_id = ? AND n = ?"),
    putQuickReply: s("INSERT OR REPLACE INTO quick_replies (id, json) VALUES (?, ?)"),
    deleteQuickReply: s("DELETE FROM quick_replies WHERE id = ?"),
  };
}

/** The tables' statements (prepareApply). */
export type ApplyStatements = ReturnType<typeof prepareApply>;

/** The journal's statements, on the journal's connection. */
export function prepareJournal(db: DatabaseSync) {
  return {
    insert: db.prepare("INSERT INTO journal (id, changes) VALUES (?, ?)"),
    after: db.prepare("SELECT id, changes FROM journal WHERE id > ? ORDER BY id LIMIT ?"),
    last: db.prepare("SELECT max(id) AS id FROM journal"),
    deleteUpTo: db.prepare("DELETE FROM journal WHERE id <= ?"),
  };
}

/** The journal's statements (prepareJournal). */
export type JournalStatements = ReturnType<typeof prepareJournal>;

/** The last journal row the tables have. */
export function readApplied(st: ApplyStatements): number {
  const row = st.getApplied.get() as { value: string } | undefined;
  return row ? Number(row.value) : 0;
}

/** Runs `fn` in one transaction: all of it is written, or none. */
export function transaction<T>(db: DatabaseSync, fn: () => T): T {
  db.exec("BEGIN IMMEDIATE");
  try {
    const value = fn();
    db.exec("COMMIT");
    return value;
  } catch (error) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw error;
  }
}

/** Journal rows applied per transaction: bounds how long one holds the tables' lock. */
const ROWS_PER_TRANSACTION = 256;

/**
 * Writes the journal rows after the last applied to the tables, in transactions of at most
 * ROWS_PER_TRANSACTION rows; `each` is told the last row of each. Returns the last row applied.
 */
export function applyJournal(
  db: DatabaseSync,
  st: ApplyStatements,
  journal: JournalStatements,
  retention: Retention,
  each?: (applied: number) => void,
): number {
  for (;;) {
    const done = transaction(db, () => {
      const from = readApplied(st);
      const rows = journal.after.all(from, ROWS_PER_TRANSACTION) as Array<
        { id: number; changes: string }
      >;
      if (rows.length === 0) return { last: from, more: false };
      applyRows(st, rows.map((r) => r.changes), retention);
      const last = rows[rows.length - 1]!.id;
      st.setApplied.run(String(last));
      return { last, more: rows.length === ROWS_PER_TRANSACTION };
    });
    each?.(done.last);
    if (!done.more) return done.last;
  }
}

/**
 * Writes journal rows (JSON text, in commit order) to the tables, in the caller's transaction.
 * Contacts and agents are written once each, as the last row left them; the rest in order.
 */
export function applyRows(st: ApplyStatements, rows: string[], retention: Retention): void {
  const contacts = new Map<string, Contact>();
  const agents = new Map<string, AgentRecord>();
  const dedup: Array<[string, number]> = [];
  for (const text of rows) {
    const r = JSON.parse(text) as JournalRecord;
    const logExpiry = r.t + retention.logRetainMs;
    const historyExpiry = r.t + retention.retentionMs;
    for (const [a, seq, env] of r.l ?? []) st.log.run(a, seq, JSON.stringify(env), logExpiry);
    for (const [f, n, item] of r.h ?? []) {
      st.history.run(f, n, JSON.stringify(item), historyExpiry);
    }
    for (const [f, n, stamp, env] of r.q ?? []) st.queued.run(f, n, stamp, JSON.stringify(env));
    for (const [f, n] of r.d ?? []) st.dequeued.run(f, n);
    for (const c of r.c ?? []) contacts.set(c.follower_id, c);
    for (const a of r.a ?? []) agents.set(a.agent_id, a);
    for (const k of r.k ?? []) dedup.push(k);
    for (const [f, n, status, error] of r.u ?? []) {
      const row = st.getHistory.get(f, n) as { item: string } | undefined;
      if (!row) continue;
      const item: HistoryItem = {
        ...JSON.parse(row.item) as HistoryItem,
        status,
        ...(error ? { error } : {}),
      };
      st.setHistory.run(JSON.stringify(item), f, n);
    }
    for (const reply of r.p ?? []) st.putQuickReply.run(reply.id, JSON.stringify(reply));
    for (const id of r.x ?? []) st.deleteQuickReply.run(id);
    for (const f of r.f ?? []) {
      // After the rest of its row, and in order: a later row of this batch may be the
      // follower's next conversation.
      contacts.delete(f);
      st.forgetHistory.run(f);
      st.forgetContact.run(f);
    }
  }
  for (const c of contacts.values()) writeContact(st, c);
  for (const a of agents.values()) st.agent.run(a.agent_id, JSON.stringify(a));
  if (dedup.length > 0) {
    let expiry = 0;
    for (const [, e] of dedup) if (e > expiry) expiry = e;
    st.dedup.run(JSON.stringify(dedup), expiry);
  }
}

function writeContact(st: ApplyStatements, c: Contact): void {
  st.contact.run(...contactRow(c, JSON.stringify(c)));
}

/** Applies and drops the journal table that `bridge.sqlite` held before issue 17 (rows a crash
 * of that version left); returns how many rows it held. */
export function applyLegacyJournal(
  db: DatabaseSync,
  st: ApplyStatements,
  retention: Retention,
): number {
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'journal'");
  if (table.get() === undefined) return 0;
  return transaction(db, () => {
    const rows = db.prepare("SELECT changes FROM journal ORDER BY id").all() as Array<
      { changes: string }
    >;
    applyRows(st, rows.map((r) => r.changes), retention);
    db.exec("DROP TABLE journal");
    return rows.length;
  });
}

/** Rows deleted per statement when pruning, so a prune never holds the lock for long. */
const PRUNE_CHUNK = 5_000;

/** Deletes log, history and dedup rows past their time (`now`, ms). */
export function pruneExpired(db: DatabaseSync, now: number): void {
  const log = db.prepare(
    `DELETE FROM log WHERE id IN (SELECT id FROM log ORDER BY id LIMIT ${PRUNE_CHUNK})
     AND expires_at <= ?`,
  );
  const history = db.prepare(
    `DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ${PRUNE_CHUNK})
     AND expires_at <= ?`,
  );
  while (Number(log.run(now).changes) > 0) { /* next chunk */ }
  while (Number(history.run(now).changes) > 0) { /* next chunk */ }
  db.prepare("DELETE FROM dedup WHERE expires_at <= ?").run(now);
}
