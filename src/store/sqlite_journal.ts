// How the SQLite store's commits reach its tables. A commit is one journal line
// (sqlite_journal_line.ts), whose bytes the store also hands to its worker; applyCommits()
// writes commits and records the last applied in the tables' `meta`, in the same transaction,
// so every commit is applied once whichever thread does it. applyJournal() reads them back from
// the journal instead: at start, and when a hand-over was lost.

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { MESSAGE_WINDOW_MS } from "../protocol/window.ts";
import { type AgentRecord, type Contact, type HistoryItem, replyOutcome } from "../core/store.ts";
import { SENDING_JSON } from "./sqlite_schema.ts";

/**
 * A row of the journal table that `bridge.sqlite` held before issue 17: what one commit
 * changed, as JSON text, frames and items embedded as they were. `l`: log [agent, seq, frame];
 * `h`: history [follower, n, item]; `q`: queued [follower, n, stamp, envelope]; `d`: dequeued
 * [follower, n]; `c`: contacts; `a`: agents; `k`: dedup [key, expiry]; `f`: followers
 * forgotten; `t`: the commit's time (ms).
 */
interface JournalRecord {
  l?: Array<[string, number, unknown]>;
  h?: Array<[string, number, unknown]>;
  q?: Array<[string, number, number, unknown]>;
  d?: Array<[string, number]>;
  c?: Contact[];
  a?: AgentRecord[];
  k?: Array<[string, number]>;
  f?: string[];
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
    signedBodies: s("INSERT INTO signed_bodies (entries, expires_at) VALUES (?, ?)"),
    forgetHistory: s("DELETE FROM history WHERE follower_id = ?"),
    forgetContact: s("DELETE FROM contacts WHERE follower_id = ?"),
    getHistory: s("SELECT item FROM history WHERE follower_id = ? AND n = ?"),
    forgetCut: s(
      "INSERT OR REPLACE INTO forget_cuts (follower_id, cut, expires_at) VALUES (?, ?, ?)",
    ),
    setHistory: s("UPDATE history SET item = ? WHERE follower_id = ? AND n = ?"),
    putQuickReply: s("INSERT OR REPLACE INTO quick_replies (id, json) VALUES (?, ?)"),
    unanswered: s(
      "INSERT OR REPLACE INTO unanswered (follower_id, n, at, expires_at) VALUES (?, ?, ?, ?)",
    ),
    answered: s("DELETE FROM unanswered WHERE follower_id = ? AND n = ?"),
    forgetUnanswered: s("DELETE FROM unanswered WHERE follower_id = ?"),
    deleteQuickReply: s("DELETE FROM quick_replies WHERE id = ?"),
  };
}

/** The tables' statements (prepareApply). */
export type ApplyStatements = ReturnType<typeof prepareApply>;

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

/**
 * One commit as the tables take it, read from its journal line (sqlite_journal_line.ts, which
 * says what each field is): frames, items, envelopes, contacts, agents and quick replies are
 * JSON text; `id` is its place in the journal, `t` its time (ms).
 */
export interface Commit {
  id: number;
  t: number;
  l?: Array<[string, number, string]>;
  h?: Array<[string, number, string]>;
  q?: Array<[string, number, number, string]>;
  d?: Array<[string, number]>;
  /** Contacts as their rows: JSON, and the columns the lists and windows are found by. */
  c?: ContactRow[];
  a?: Array<[string, string]>;
  k?: Array<[string, number]>;
  f?: string[];
  /** Forgets' cuts: follower, JSON. */
  g?: Array<[string, string]>;
  /** Replies' outcomes: follower, n, status, error, the reply's id (null in lines written
   * before it was), and whether a failed one may have reached the follower (false before). */
  u?: Array<[string, number, "sent" | "failed", string | null, string | null, boolean]>;
  p?: Array<[string, string]>;
  x?: string[];
  /** WeChat signatures' first bodies: signature, hash, expiry. */
  s?: Array<[string, string, number]>;
}

const json = (value: unknown): string => JSON.stringify(value);

/** The commit a row of the journal table (before issue 17, JSON: JournalRecord) holds. */
function commitOfRecord(id: number, text: string): Commit {
  const r = JSON.parse(text) as JournalRecord;
  const c: Commit = { id, t: r.t };
  if (r.l) c.l = r.l.map(([a, seq, env]) => [a, seq, json(env)]);
  if (r.h) c.h = r.h.map(([f, n, item]) => [f, n, json(item)]);
  if (r.q) c.q = r.q.map(([f, n, stamp, env]) => [f, n, stamp, json(env)]);
  if (r.d) c.d = r.d;
  if (r.c) c.c = r.c.map((contact) => contactRow(contact, json(contact)));
  if (r.a) c.a = r.a.map((agent) => [agent.agent_id, json(agent)]);
  if (r.k) c.k = r.k;
  if (r.f) c.f = r.f;
  return c;
}

/** Reads the commits after `after` back from the journal. */
export type ReadJournal = (after: number) => Commit[];

/** Writes the journal's commits after the last applied to the tables, reading them back from
 * the journal. Returns the last one applied. */
export function applyJournal(
  db: DatabaseSync,
  st: ApplyStatements,
  read: ReadJournal,
  retention: Retention,
): number {
  return transaction(db, () => {
    const from = readApplied(st);
    const commits = read(from);
    if (commits.length === 0) return from;
    const last = applyCommits(st, commits, retention);
    st.setApplied.run(String(last));
    return last;
  });
}

/**
 * Writes the commits handed over (in journal order) that the tables do not have, in one
 * transaction; when one before them is missing (a hand-over lost to a failed write), reads
 * them back from the journal instead. Returns the last row applied.
 */
export function applyHanded(
  db: DatabaseSync,
  st: ApplyStatements,
  read: ReadJournal,
  retention: Retention,
  commits: Commit[],
): number {
  const last = transaction(db, () => {
    const applied = readApplied(st);
    const fresh = commits.filter((c) => c.id > applied);
    if (fresh.length === 0) return applied;
    if (fresh[0]!.id !== applied + 1) return null;
    const last = applyCommits(st, fresh, retention);
    st.setApplied.run(String(last));
    return last;
  });
  return last ?? applyJournal(db, st, read, retention);
}

/**
 * Writes commits, in order, in the caller's transaction; returns the last one's id. Contacts
 * and agents are written once each, as the last commit left them; the rest in order.
 */
function applyCommits(st: ApplyStatements, commits: Commit[], retention: Retention): number {
  const contacts = new Map<string, ContactRow>();
  const agents = new Map<string, string>();
  const dedup: Array<[string, number]> = [];
  const signed: Array<[string, string, number]> = [];
  let last = 0;
  for (const c of commits) {
    last = c.id;
    const logExpiry = c.t + retention.logRetainMs;
    const historyExpiry = c.t + retention.retentionMs;
    for (const [a, seq, frame] of c.l ?? []) st.log.run(a, seq, frame, logExpiry);
    for (const [f, n, item] of c.h ?? []) {
      st.history.run(f, n, item, historyExpiry);
      if (item.includes(SENDING_JSON)) st.unanswered.run(f, n, c.t, historyExpiry);
    }
    for (const [f, n, stamp, env] of c.q ?? []) st.queued.run(f, n, stamp, env);
    for (const [f, n] of c.d ?? []) st.dequeued.run(f, n);
    for (const row of c.c ?? []) contacts.set(row[0], row);
    for (const [a, agent] of c.a ?? []) agents.set(a, agent);
    for (const k of c.k ?? []) dedup.push(k);
    for (const e of c.s ?? []) signed.push(e);
    for (const [f, n, status, error, replyId, unconfirmed] of c.u ?? []) {
      const row = st.getHistory.get(f, n) as { item: string } | undefined;
      if (!row) continue;
      const stored = JSON.parse(row.item) as HistoryItem;
      // Another item by that number: the follower was forgotten and wrote again since.
      if (replyId !== null && stored.id !== replyId) continue;
      st.answered.run(f, n);
      const item: HistoryItem = {
        ...stored,
        ...replyOutcome(status, error ?? undefined, { unconfirmed }),
      };
      st.setHistory.run(JSON.stringify(item), f, n);
    }
    for (const [id, reply] of c.p ?? []) st.putQuickReply.run(id, reply);
    for (const id of c.x ?? []) st.deleteQuickReply.run(id);
    // Kept as long as the log rows it covers, all written before it.
    for (const [f, cut] of c.g ?? []) st.forgetCut.run(f, cut, logExpiry);
    for (const f of c.f ?? []) {
      // After the rest of its commit, and in order: a later commit may be the follower's
      // next conversation.
      contacts.delete(f);
      st.forgetHistory.run(f);
      st.forgetUnanswered.run(f);
      st.forgetContact.run(f);
    }
  }
  for (const row of contacts.values()) st.contact.run(...row);
  for (const [id, text] of agents) st.agent.run(id, text);
  if (dedup.length > 0) {
    let expiry = 0;
    for (const [, e] of dedup) if (e > expiry) expiry = e;
    st.dedup.run(JSON.stringify(dedup), expiry);
  }
  if (signed.length > 0) {
    let expiry = 0;
    for (const [, , e] of signed) if (e > expiry) expiry = e;
    st.signedBodies.run(JSON.stringify(signed), expiry);
  }
  return last;
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
    const rows = db.prepare("SELECT id, changes FROM journal ORDER BY id").all() as Array<
      { id: number; changes: string }
    >;
    applyCommits(st, rows.map((r) => commitOfRecord(r.id, r.changes)), retention);
    db.exec("DROP TABLE journal");
    return rows.length;
  });
}

/** Rows deleted per statement when pruning, so a prune never holds the lock for long. */
const PRUNE_CHUNK = 5_000;

/**
 * Deletes log, dedup, signature, forget-cut and unanswered rows past their time (`now`, ms),
 * and conversations past their last message's (pruneHistory). Rows are found by their
 * expiry's index: a row's expiry is written with it, so it is in id order only while the
 * retention never shrinks and the clock never goes back.
 */
export function pruneExpired(db: DatabaseSync, now: number): void {
  for (const [table, key] of PRUNED) {
    const chunk = db.prepare(
      `DELETE FROM ${table} WHERE (${key}) IN
       (SELECT ${key} FROM ${table} WHERE expires_at <= ? LIMIT ${PRUNE_CHUNK})`,
    );
    while (Number(chunk.run(now).changes) > 0) { /* next chunk */ }
  }
  pruneHistory(db, now);
}

/** The tables whose rows expire one by one, and the key each row is deleted by. */
const PRUNED: ReadonlyArray<readonly [string, string]> = [
  ["log", "id"],
  ["dedup", "id"],
  ["signed_bodies", "id"],
  ["forget_cuts", "follower_id"],
  ["unanswered", "follower_id, n"],
];

/**
 * Deletes the conversations whose last message's expiry has come (README: history expires
 * that long after its last message), and their contacts' previews of it. A row's own expiry
 * only says when to look again: the rows of a conversation still going are moved on to its
 * last message's, here and not on each message, so a write stays one row.
 */
function pruneHistory(db: DatabaseSync, now: number): void {
  const due = db.prepare(
    `SELECT DISTINCT follower_id FROM
     (SELECT follower_id FROM history WHERE expires_at <= ? LIMIT ${PRUNE_CHUNK})`,
  );
  const lastExpiry = db.prepare(
    "SELECT expires_at FROM history WHERE follower_id = ? ORDER BY n DESC LIMIT 1",
  );
  const drop = db.prepare(
    `DELETE FROM history WHERE id IN
     (SELECT id FROM history WHERE follower_id = ? LIMIT ${PRUNE_CHUNK})`,
  );
  // The contact stays (its agent, its window); the words of its last message go with the rest.
  const unpreview = db.prepare(
    `UPDATE contacts SET json = json_set(json, '$.last_message', json('null'))
     WHERE follower_id = ? AND json_extract(json, '$.last_message') IS NOT NULL`,
  );
  // From the row after the last one moved (`n`), in n order: a chunk found by the follower
  // and its expiry rescanned every row moved before it (1,000,000 rows: 25 s, not 2).
  const keep = db.prepare(
    `UPDATE history SET expires_at = ? WHERE id IN
     (SELECT id FROM history WHERE follower_id = ? AND n > ? AND expires_at <= ?
      ORDER BY n LIMIT ${PRUNE_CHUNK}) RETURNING n`,
  );
  /** The last row moved of each live conversation, this prune (moved rows are not due). */
  const movedTo = new Map<string, number>();
  for (;;) {
    const followers = due.all(now).map((row) => row.follower_id as string);
    if (followers.length === 0) return;
    let i = 0;
    while (i < followers.length) {
      // About a chunk's rows per transaction: the lock is let go between them, and a prune of
      // many small conversations is not a commit (an fsync with STORE_FSYNC) for each.
      transaction(db, () => {
        for (let changed = 0; i < followers.length && changed < PRUNE_CHUNK;) {
          const f = followers[i++]!;
          const last = lastExpiry.get(f) as { expires_at: number } | undefined;
          if (last === undefined) continue;
          if (last.expires_at <= now) {
            changed += Number(drop.run(f).changes) + Number(unpreview.run(f).changes);
          } else {
            const moved = keep.all(last.expires_at, f, movedTo.get(f) ?? -1, now);
            for (const row of moved) {
              movedTo.set(f, Math.max(movedTo.get(f) ?? -1, Number(row.n)));
            }
            changed += moved.length;
          }
        }
      });
    }
  }
}

/** What an expiry was written under, by meta key: the tables it is in, and its length now. */
function retentionsOf(retention: Retention): Array<[string, string[], number]> {
  return [
    ["history_retention_ms", ["history", "unanswered"], retention.retentionMs],
    ["log_retention_ms", ["log", "forget_cuts"], retention.logRetainMs],
  ];
}

/**
 * After HISTORY_RETENTION_DAYS was changed, moves the expiries written under the old value by
 * the difference, as if written under the new one: after a cut, a conversation of last month
 * is not kept for the rest of the old year. Once, with the value recorded in the same
 * transaction (a start killed halfway moves nothing twice). At a start, BEFORE the journal's
 * tail is applied: those rows are written under the new value already, and moved again they
 * went early (after a cut from 365 to 1 day, a killed bridge's last messages were past their
 * time at once, and the pruner took their whole conversations).
 */
export function shortenToRetention(db: DatabaseSync, retention: Retention): void {
  const get = db.prepare("SELECT value FROM meta WHERE key = ?");
  const set = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
  transaction(db, () => {
    for (const [key, tables, ms] of retentionsOf(retention)) {
      const row = get.get(key) as { value: string } | undefined;
      const before = row === undefined ? ms : Number(row.value);
      if (before !== ms) {
        for (const table of tables) {
          db.prepare(`UPDATE ${table} SET expires_at = expires_at + ?`).run(ms - before);
        }
      }
      if (row === undefined || before !== ms) set.run(key, String(ms));
    }
  });
}

/** The signatures' first bodies the tables keep past `now` (ms): [signature, hash, expiry]. */
export function readSignedBodies(db: DatabaseSync, now: number): Array<[string, string, number]> {
  const kept: Array<[string, string, number]> = [];
  const rows = db.prepare("SELECT entries FROM signed_bodies WHERE expires_at > ?");
  for (const row of rows.iterate(now)) {
    for (
      const e of JSON.parse((row as { entries: string }).entries) as [string, string, number][]
    ) {
      if (e[2] > now) kept.push(e);
    }
  }
  return kept;
}
