// The store on SQLite (`node:sqlite`, built into Deno): the routing model in memory (agents,
// waiting followers, the most recently used contacts; the others are read when needed) and one
// journal row per commit as the durable record, written before anyone is told. Logs, history,
// contacts and the queue are written from the journal afterwards, in larger transactions; a
// restart applies whatever journal the last run left before loading.

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { getLogger } from "@logtape/logtape";
import type { Envelope } from "../protocol/envelope.ts";
import { type Changes, Model, type ModelOptions, modelReads } from "../core/model.ts";
import { MESSAGE_WINDOW_MS, WINDOW_WARNING_MS } from "../protocol/window.ts";
import type {
  AgentRecord,
  Applied,
  Contact,
  ContactPage,
  HistoryItem,
  InboundItem,
  InboundOutcome,
  LogEntry,
  Presence,
  Store,
} from "../core/store.ts";
import type { CheckpointerStart } from "./sqlite_checkpointer.ts";
import { SCHEMA } from "./sqlite_schema.ts";

const log = getLogger(["bridge", "store"]);

/** How long committed work may wait in the journal before it is written to the tables. The
 * write holds the thread (about 35 µs a message): at 2,000 messages/s, 20 ms makes it ~1.4 ms,
 * and commits cost little, so it is kept short for the answer time's tail. */
const APPLY_DELAY_MS = 20;
/** Rows waiting to be applied before it is done at once, to bound the memory they hold. */
const APPLY_MAX_ROWS = 20_000;
const CURSOR_FLUSH_MS = 1000;
const PRUNE_INTERVAL_MS = 60_000;
/** Rows deleted per statement when pruning, so a prune never holds the thread for long. */
const PRUNE_CHUNK = 5_000;
const MIN_LOG_RETENTION_MS = 48 * 3600_000;
/** Contacts kept in memory by default (1-2 KB each); the others are read when needed. */
const HOT_CONTACTS = 50_000;
/** How often the checkpointer worker copies the WAL into the database file. */
const CHECKPOINT_INTERVAL_MS = 1000;
/** A WAL file larger than this is cut back after it was checkpointed. */
const WAL_SIZE_LIMIT = 64 * 1024 * 1024;

/** Options of the SQLite store: the model's, retention, and whether every commit is fsynced. */
export interface SqliteStoreOptions extends ModelOptions {
  /** History rows are deleted this long after they are written, ms; agents' logs too, but
   * never before 48 hours (WeChat's reply window), so a returning agent can catch up. */
  retentionMs: number;
  /** true: `synchronous=FULL`, every commit reaches the disk before it returns (power loss);
   * false (default): `NORMAL`, a commit is in the operating system (kill -9, crashes). */
  fsync?: boolean;
  /** Contacts kept in memory (the most recently used; waiting followers always). */
  hotContacts?: number;
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

/**
 * One journal row: what one commit changed, as JSON text. Frames and history items are
 * already JSON, so they are embedded as they are, not escaped as strings.
 * `l`: log [agent, seq, frame]; `h`: history [follower, n, item]; `q`: queued [follower, n,
 * stamp, envelope]; `d`: dequeued [follower, n]; `c`: contacts; `a`: agents; `k`: dedup
 * [key, expiry]; `f`: followers forgotten (contact and history deleted after the rest);
 * `t`: the commit's time (ms), from which expiries are counted.
 */
interface JournalRecord {
  l: Array<[string, number, unknown]>;
  h: Array<[string, number, unknown]>;
  q: Array<[string, number, number, unknown]>;
  d: Array<[string, number]>;
  c: Contact[];
  a: AgentRecord[];
  k: Array<[string, number]>;
  f?: string[];
  t: number;
}

/** Rows waiting to be written to the tables, in commit order. */
interface Pending {
  log: Array<[string, number, string, number]>;
  history: Array<[string, number, string, number]>;
  queued: Array<[string, number, number, string]>;
  dequeued: Array<[string, number]>;
  /** Contacts as their last journal row wrote them: the state now, made JSON once. */
  contacts: Map<string, ContactRow>;
  agents: Set<string>;
  dedup: Array<[string, number]>;
  forgotten: string[];
  /** The last journal row these come from. */
  journalId: number;
  rows: number;
}

const emptyPending = (): Pending => ({
  log: [],
  history: [],
  queued: [],
  dequeued: [],
  contacts: new Map(),
  agents: new Set(),
  dedup: [],
  forgotten: [],
  journalId: 0,
  rows: 0,
});

function isEmpty(changes: Changes): boolean {
  return changes.contacts.size === 0 && changes.agents.size === 0 && changes.log.length === 0 &&
    changes.history.length === 0 && changes.queued.length === 0 &&
    changes.dequeued.length === 0 && changes.dedup.length === 0 &&
    changes.forgotten.length === 0;
}

/** The entry's envelope as JSON, made once for the store and the sockets. */
function frameOf(entry: LogEntry): string {
  return entry.frame ??= JSON.stringify(entry.envelope);
}

/** The prepared statements of the store, made once. */
function prepare(db: DatabaseSync) {
  const s = (sql: string): StatementSync => db.prepare(sql);
  return {
    journal: s("INSERT INTO journal (changes) VALUES (?)"),
    journalAll: s("SELECT id, changes FROM journal ORDER BY id"),
    journalDelete: s("DELETE FROM journal WHERE id <= ?"),
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
    getContact: s("SELECT json FROM contacts WHERE follower_id = ?"),
    served: s(
      `SELECT json FROM contacts WHERE agent_key = ? AND (at < ? OR (at = ? AND follower_id < ?))
       ORDER BY at DESC, follower_id DESC LIMIT ?`,
    ),
    dueWindows: s(
      "SELECT follower_id FROM contacts WHERE closes_at IS NOT NULL AND closes_at <= ?",
    ),
    agent: s("INSERT OR REPLACE INTO agents (agent_id, json) VALUES (?, ?)"),
    dedup: s("INSERT INTO dedup (keys, expires_at) VALUES (?, ?)"),
    forgetHistory: s("DELETE FROM history WHERE follower_id = ?"),
    forgetContact: s("DELETE FROM contacts WHERE follower_id = ?"),
    readLog: s(
      "SELECT seq, frame FROM log WHERE agent_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
    ),
    lastSeq: s("SELECT max(seq) AS seq FROM log WHERE agent_id = ?"),
    readHistory: s(
      "SELECT n, item FROM history WHERE follower_id = ? AND n < ? ORDER BY n DESC LIMIT ?",
    ),
    getHistory: s("SELECT item FROM history WHERE follower_id = ? AND n = ?"),
    setHistory: s("UPDATE history SET item = ? WHERE follower_id = ? AND n = ?"),
    pruneLog: s(
      `DELETE FROM log WHERE id IN (SELECT id FROM log ORDER BY id LIMIT ${PRUNE_CHUNK})
       AND expires_at <= ?`,
    ),
    pruneHistory: s(
      `DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ${PRUNE_CHUNK})
       AND expires_at <= ?`,
    ),
    pruneDedup: s("DELETE FROM dedup WHERE expires_at <= ?"),
  };
}

type Statements = ReturnType<typeof prepare>;

/** Runs `fn` in one transaction: all of it is written, or none. */
function transaction<T>(db: DatabaseSync, fn: () => T): T {
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

/** Deletes a forgotten follower's contact and history. */
function forget(st: Statements, followerId: string): void {
  st.forgetHistory.run(followerId);
  st.forgetContact.run(followerId);
}

/** Writes journal rows the last run left to the tables (after a crash, or a failed apply). */
function replayJournal(db: DatabaseSync, st: Statements, options: SqliteStoreOptions): number {
  const rows = st.journalAll.all() as Array<{ id: number; changes: string }>;
  if (rows.length === 0) return 0;
  const logRetain = Math.max(options.retentionMs, MIN_LOG_RETENTION_MS);
  transaction(db, () => {
    for (const row of rows) {
      const r = JSON.parse(row.changes) as JournalRecord;
      for (const [a, seq, env] of r.l) st.log.run(a, seq, JSON.stringify(env), r.t + logRetain);
      for (const [f, n, item] of r.h) {
        st.history.run(f, n, JSON.stringify(item), r.t + options.retentionMs);
      }
      for (const [f, n, stamp, env] of r.q) st.queued.run(f, n, stamp, JSON.stringify(env));
      for (const [f, n] of r.d) st.dequeued.run(f, n);
      for (const c of r.c) st.contact.run(...contactRow(c, JSON.stringify(c)));
      for (const a of r.a) st.agent.run(a.agent_id, JSON.stringify(a));
      if (r.k.length > 0) {
        st.dedup.run(JSON.stringify(r.k), Math.max(...r.k.map(([, expiry]) => expiry)));
      }
      for (const f of r.f ?? []) forget(st, f);
    }
    st.journalDelete.run(rows[rows.length - 1]!.id);
  });
  return rows.length;
}

/** The model as the tables hold it, and the highest queue stamp given out. */
function loadModel(
  db: DatabaseSync,
  st: Statements,
  options: ModelOptions,
): { model: Model; stamp: number } {
  const model = new Model(options);
  for (const row of db.prepare("SELECT json FROM agents").iterate()) {
    const record = JSON.parse((row as { json: string }).json) as AgentRecord;
    model.agents.set(record.agent_id, record);
  }
  // Messages do not rewrite their agent's record: its seq is the last of its log.
  for (const record of model.agents.values()) {
    const last = (st.lastSeq.get(record.agent_id) as { seq: number | null }).seq ?? 0;
    record.seq = Math.max(record.seq, last);
  }
  const now = options.now();
  const dedup = db.prepare("SELECT keys FROM dedup WHERE expires_at > ?");
  for (const row of dedup.iterate(now)) {
    for (const [key, expiry] of JSON.parse((row as { keys: string }).keys) as [string, number][]) {
      if (expiry > now) model.seen.set(key, expiry);
    }
  }
  // Followers queue in the order they started waiting; the stamps restore that order.
  const byFollower = new Map<string, Array<[number, Envelope]>>();
  const stale: Array<[string, number]> = [];
  let stamp = 0;
  const queue = db.prepare("SELECT follower_id, n, stamp, envelope FROM queue ORDER BY stamp");
  const rows = queue.all() as Array<
    { follower_id: string; n: number; stamp: number; envelope: string }
  >;
  // Waiting followers' contacts stay in memory while they wait: routing hands them over from
  // there. Other contacts are read when an operation needs them.
  for (const id of new Set(rows.map((r) => r.follower_id))) {
    const found = st.getContact.get(id) as { json: string } | undefined;
    if (found) model.contacts.set(id, JSON.parse(found.json) as Contact);
  }
  for (const row of rows) {
    stamp = Math.max(stamp, row.stamp);
    const contact = model.contacts.get(row.follower_id);
    // Only a model bug could leave these; they would otherwise be delivered twice.
    if (!contact || contact.agent_id !== null || row.n > contact.history_seq) {
      stale.push([row.follower_id, row.n]);
      continue;
    }
    let items = byFollower.get(row.follower_id);
    if (!items) byFollower.set(row.follower_id, items = []);
    items.push([row.n, JSON.parse(row.envelope) as Envelope]);
  }
  for (const [followerId, items] of byFollower) {
    items.sort((a, b) => a[0] - b[0]);
    for (const [n, envelope] of items) model.restoreQueued({ followerId, n, envelope });
  }
  if (stale.length > 0) transaction(db, () => stale.forEach(([f, n]) => st.dequeued.run(f, n)));
  return { model, stamp };
}

/** Opens (creating if needed) the SQLite file at `path`, in WAL mode, with the schema. */
export function openSqliteDatabase(path: string, fsync = false): DatabaseSync {
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(`PRAGMA synchronous = ${fsync ? "FULL" : "NORMAL"}`);
    // Checkpoints run in a worker (sqlite_checkpointer.ts), off the thread that answers.
    db.exec("PRAGMA wal_autocheckpoint = 0");
    db.exec(`PRAGMA journal_size_limit = ${WAL_SIZE_LIMIT}`);
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec(SCHEMA);
  } catch (error) {
    db.close();
    throw error;
  }
  return db;
}

/** Opens the store on a SQLite file (or `:memory:`), replays its journal and loads its state. */
export function openSqliteStore(path: string, options: SqliteStoreOptions): Promise<Store> {
  const db = openSqliteDatabase(path, options.fsync ?? false);
  try {
    const st = prepare(db);
    const replayed = replayJournal(db, st, options);
    if (replayed > 0) log.info("Applied {rows} journal rows left by the last run", { replayed });
    const loaded = loadModel(db, st, options);
    const checkpointer = path === ":memory:" ? null : startCheckpointer(path);
    return Promise.resolve(
      createSqliteStore(db, st, loaded.model, loaded.stamp, options, checkpointer),
    );
  } catch (error) {
    db.close();
    return Promise.reject(error);
  }
}

/** Starts the worker that checkpoints the WAL of the file at `path`. */
function startCheckpointer(path: string): Worker {
  const worker = new Worker(new URL("./sqlite_checkpointer.ts", import.meta.url).href, {
    type: "module",
  });
  const start: CheckpointerStart = { path, intervalMs: CHECKPOINT_INTERVAL_MS };
  worker.postMessage(start);
  worker.onerror = (event) => {
    event.preventDefault();
    log.warn("The SQLite checkpointer stopped: {message}", { message: event.message });
  };
  return worker;
}

/** Asks the checkpointer to close its connection and waits (at most 5 s) until it has. */
async function stopCheckpointer(worker: Worker): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await new Promise<void>((resolve) => {
    worker.onmessage = () => resolve();
    timer = setTimeout(resolve, 5000);
    worker.postMessage("close");
  });
  clearTimeout(timer);
  worker.terminate();
}

function createSqliteStore(
  db: DatabaseSync,
  st: Statements,
  initial: Model,
  initialStamp: number,
  options: SqliteStoreOptions,
  checkpointer: Worker | null,
): Store {
  let model = initial;
  let stamp = initialStamp;
  let pending = emptyPending();
  /** The model may be ahead of the database after a failed commit: reload before going on. */
  let stale = false;
  let closed = false;
  let applyTimer: ReturnType<typeof setTimeout> | undefined;
  let cursorTimer: ReturnType<typeof setTimeout> | undefined;
  const hotContacts = options.hotContacts ?? HOT_CONTACTS;
  /** Agents whose cursor (or new record) is in no journal row yet. */
  const unjournaledCursors = new Set<string>();
  const logRetain = Math.max(options.retentionMs, MIN_LOG_RETENTION_MS);

  const pruner = setInterval(() => {
    model.pruneSeen(options.now());
    try {
      if (!stale) prune();
    } catch (error) {
      log.warn("Cannot prune expired rows: {error}", { error });
    }
  }, PRUNE_INTERVAL_MS);
  Deno.unrefTimer(pruner);

  /** Deletes rows past their time. Agents' records are written first: a seq is recovered
   * from the log's last row, which may be among those deleted. */
  function prune(): void {
    transaction(db, () => {
      for (const a of model.agents.values()) st.agent.run(a.agent_id, JSON.stringify(a));
    });
    const now = options.now();
    while (Number(st.pruneLog.run(now).changes) > 0) { /* next chunk */ }
    while (Number(st.pruneHistory.run(now).changes) > 0) { /* next chunk */ }
    st.pruneDedup.run(now);
  }

  /** Writes what waits in memory to the tables and drops the journal rows it came from. */
  function apply(): void {
    clearTimeout(applyTimer);
    applyTimer = undefined;
    // A model ahead of the database must not be written: reload() replays the journal.
    if (stale) return;
    const p = pending;
    if (p.rows === 0 && p.contacts.size === 0 && p.agents.size === 0) return;
    pending = emptyPending();
    try {
      transaction(db, () => {
        for (const r of p.log) st.log.run(r[0], r[1], r[2], r[3]);
        for (const r of p.history) st.history.run(r[0], r[1], r[2], r[3]);
        for (const r of p.queued) st.queued.run(r[0], r[1], r[2], r[3]);
        for (const r of p.dequeued) st.dequeued.run(r[0], r[1]);
        // Contacts and agents as they are now: the model holds nothing uncommitted between
        // operations, so this is the state of the last journal row.
        for (const row of p.contacts.values()) st.contact.run(...row);
        for (const id of p.agents) {
          const a = model.agents.get(id);
          if (a) st.agent.run(id, JSON.stringify(a));
        }
        if (p.dedup.length > 0) {
          st.dedup.run(JSON.stringify(p.dedup), Math.max(...p.dedup.map(([, e]) => e)));
        }
        // Last: a forget is applied at once (see commit()), so nothing of the follower's
        // next conversation is in this batch.
        for (const f of p.forgotten) forget(st, f);
        if (p.journalId > 0) st.journalDelete.run(p.journalId);
      });
    } catch (error) {
      // The journal still holds it: reload() or the next start writes it.
      stale = true;
      throw error;
    }
    unjournaledCursors.clear();
  }

  function scheduleApply(): void {
    if (pending.rows >= APPLY_MAX_ROWS) {
      apply();
      return;
    }
    if (applyTimer !== undefined || closed) return;
    applyTimer = setTimeout(() => {
      applyTimer = undefined;
      try {
        apply();
      } catch (error) {
        log.error("Cannot write the journal to the tables: {error}", { error });
      }
    }, APPLY_DELAY_MS);
    Deno.unrefTimer(applyTimer);
  }

  function reloadOrLog(): void {
    try {
      reload();
    } catch (error) {
      log.error("Cannot reload from SQLite: {error}", { error });
    }
  }

  function reload(): void {
    const old = model;
    pending = emptyPending();
    replayJournal(db, st, options);
    const loaded = loadModel(db, st, options);
    // Cursors not yet written are still true: keep them.
    for (const [id, record] of old.agents) {
      const fresh = loaded.model.agents.get(id);
      if (fresh && record.cursor > fresh.cursor) {
        fresh.cursor = Math.min(record.cursor, fresh.seq);
        pending.agents.add(id);
      }
    }
    model = loaded.model;
    stamp = Math.max(stamp, loaded.stamp);
    stale = false;
  }

  /** Writes one commit's changes as one journal row, then queues them for the tables. */
  function commit(m: Model, changes: Changes): void {
    if (isEmpty(changes)) return;
    const t = options.now();
    const parts: string[] = [];
    const logRows: string[] = [];
    for (const e of changes.log) {
      logRows.push(`[${JSON.stringify(e.agentId)},${e.seq},${frameOf(e)}]`);
    }
    const historyJson = changes.history.map((h) => JSON.stringify(h.item));
    const history = changes.history.map((h, i) =>
      `[${JSON.stringify(h.followerId)},${h.n},${historyJson[i]}]`
    );
    const queuedJson = changes.queued.map((q) => JSON.stringify(q.envelope));
    const stamps = changes.queued.map(() => ++stamp);
    const queued = changes.queued.map((q, i) =>
      `[${JSON.stringify(q.followerId)},${q.n},${stamps[i]},${queuedJson[i]}]`
    );
    const contacts: string[] = [];
    const contactIds: string[] = [];
    for (const id of changes.contacts) {
      const c = m.contacts.get(id);
      if (!c) continue;
      contacts.push(JSON.stringify(c));
      contactIds.push(id);
    }
    // Cursors that moved since the last row go with this one, as a restart needs them.
    const agentIds = new Set([...changes.agents, ...unjournaledCursors]);
    const agents: string[] = [];
    for (const id of agentIds) {
      const a = m.agents.get(id);
      if (a) agents.push(JSON.stringify(a));
    }
    const dedup: Array<[string, number]> = changes.dedup.map((k) => [k, m.seen.get(k) ?? 0]);
    parts.push(
      `"l":[${logRows.join(",")}]`,
      `"h":[${history.join(",")}]`,
      `"q":[${queued.join(",")}]`,
      `"d":${JSON.stringify(changes.dequeued.map((d) => [d.followerId, d.n]))}`,
      `"c":[${contacts.join(",")}]`,
      `"a":[${agents.join(",")}]`,
      `"k":${JSON.stringify(dedup)}`,
      `"f":${JSON.stringify(changes.forgotten)}`,
      `"t":${t}`,
    );
    // The one write before anyone is told: if it throws, nothing below happens.
    const res = st.journal.run(`{${parts.join(",")}}`);
    unjournaledCursors.clear();
    const p = pending;
    p.journalId = Number(res.lastInsertRowid);
    for (const e of changes.log) p.log.push([e.agentId, e.seq, e.frame!, t + logRetain]);
    changes.history.forEach((h, i) =>
      p.history.push([h.followerId, h.n, historyJson[i]!, t + options.retentionMs])
    );
    changes.queued.forEach((q, i) =>
      p.queued.push([q.followerId, q.n, stamps[i]!, queuedJson[i]!])
    );
    for (const d of changes.dequeued) p.dequeued.push([d.followerId, d.n]);
    contactIds.forEach((id, i) => {
      p.contacts.set(id, contactRow(m.contacts.get(id)!, contacts[i]!));
    });
    for (const id of changes.agents) p.agents.add(id);
    p.dedup.push(...dedup);
    p.forgotten.push(...changes.forgotten);
    p.rows += changes.log.length + changes.history.length + changes.queued.length +
      changes.dequeued.length + changes.contacts.size + changes.forgotten.length;
    if (changes.forgotten.length === 0) {
      scheduleApply();
      return;
    }
    try {
      apply();
    } catch (error) {
      // Committed all the same: the journal has it, and reload() or the next start applies it.
      log.error("Cannot write the journal to the tables: {error}", { error });
    }
  }

  /** A contact as it is now: in memory, else as the journal or the tables have it. */
  function storedContact(followerId: string): Contact | null {
    const waiting = pending.contacts.get(followerId);
    if (waiting) return JSON.parse(waiting[1]) as Contact;
    const row = st.getContact.get(followerId) as { json: string } | undefined;
    return row ? JSON.parse(row.json) as Contact : null;
  }

  function readContact(followerId: string): Contact | null {
    return model.contacts.get(followerId) ?? storedContact(followerId);
  }

  /** Puts the contacts `ids` in memory (read where they are not), as the most recently used. */
  function ensureLoaded(m: Model, ids: Iterable<string>): void {
    for (const id of new Set(ids)) {
      const contact = m.contacts.get(id) ?? storedContact(id);
      if (contact) m.touchContact(contact);
    }
  }

  /**
   * Runs `step` on the model and commits what it changed, before the caller is told. `needs`:
   * the contacts `step` reads, put in memory before it runs.
   */
  function mutate<T>(step: (m: Model) => T, needs?: () => Iterable<string>): Promise<Applied<T>> {
    if (closed) return Promise.reject(new Error("Cannot write: the store is closed"));
    try {
      if (stale) reload();
      const m = model;
      if (needs) ensureLoaded(m, needs());
      let value: T;
      try {
        value = step(m);
      } catch (error) {
        // A refused command changes nothing; anything else that threw midway is undone.
        if (!isEmpty(m.takeChanges())) {
          stale = true;
          reloadOrLog();
        }
        throw error;
      }
      const changes = m.takeChanges();
      try {
        commit(m, changes);
      } catch (error) {
        // The model is ahead of the database: reload it, and reject so WeChat retries.
        stale = true;
        reloadOrLog();
        throw error;
      }
      // Nothing is pending in the model now: the least recently used contacts may go.
      if (m.contacts.size > hotContacts) m.evictContacts(hotContacts);
      return Promise.resolve({ value, deliveries: changes.log });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Reads see the tables: what waits in memory is written first. */
  function readable(): void {
    if (stale) reload();
    else apply();
  }

  function scheduleCursorFlush(): void {
    if (cursorTimer !== undefined || closed) return;
    cursorTimer = setTimeout(() => {
      cursorTimer = undefined;
      if (pending.agents.size === 0 || closed) return;
      try {
        apply();
      } catch (error) {
        log.warn("Cannot write delivery cursors: {error}", { error });
      }
    }, CURSOR_FLUSH_MS);
    Deno.unrefTimer(cursorTimer);
  }

  prune();

  const sync = <T>(fn: () => T): Promise<T> => {
    try {
      return Promise.resolve(fn());
    } catch (error) {
      return Promise.reject(error);
    }
  };

  return {
    acceptInbound(items: InboundItem[], presence: Presence) {
      return mutate(
        (m) => items.map((item): InboundOutcome => m.inbound(item, presence)),
        () => items.map((item) => item.followerId),
      );
    },
    appendToAgents(entries) {
      return mutate((m) => entries.map((e) => m.append(e.agentId, e.envelope)));
    },
    agentOnline(agentId: string, _presence: Presence) {
      if (!stale && !closed && model.waiting.size === 0) {
        // Nobody to hand over: at most a new agent's record changes, written with the
        // cursors, so a reconnect storm of thousands of agents costs a few writes, not one
        // each. An agent lost to a crash before that is made again when it reconnects.
        if (!model.agents.has(agentId)) {
          model.agent(agentId);
          model.takeChanges();
          pending.agents.add(agentId);
          unjournaledCursors.add(agentId);
          scheduleCursorFlush();
        }
        return Promise.resolve({ value: undefined, deliveries: [] });
      }
      return mutate((m) => m.agentOnline(agentId));
    },
    readLog(agentId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
      return sync(() => {
        readable();
        // Rows past the agent's seq can only be left over from a failed commit.
        const last = model.agents.get(agentId)?.seq ?? 0;
        if (afterSeq >= last || limit <= 0) return [];
        const rows = st.readLog.all(agentId, afterSeq, last, limit) as Array<
          { seq: number; frame: string }
        >;
        return rows.map((r) => ({
          agentId,
          seq: r.seq,
          envelope: JSON.parse(r.frame) as Envelope,
          frame: r.frame,
        }));
      });
    },
    markDelivered(agentId: string, seq: number): void {
      const record = model.agents.get(agentId);
      if (!record || seq <= record.cursor) return;
      record.cursor = seq;
      pending.agents.add(agentId);
      unjournaledCursors.add(agentId);
      scheduleCursorFlush();
    },
    ...modelReads(() => model),
    getContact(followerId: string) {
      return sync(() => readContact(followerId));
    },
    listContacts(agentId: string, page?: ContactPage) {
      return sync(() => {
        // The tables hold every contact once the journal is written to them.
        readable();
        const after = page?.after ?? null;
        const rows = st.served.all(
          agentId,
          after?.at ?? Number.MAX_SAFE_INTEGER,
          after?.at ?? Number.MAX_SAFE_INTEGER,
          after?.id ?? "",
          page?.limit ?? -1,
        ) as Array<{ json: string }>;
        return rows.map((r) => {
          const stored = JSON.parse(r.json) as Contact;
          return model.contacts.get(stored.follower_id) ?? stored;
        });
      });
    },
    readHistory(followerId: string, before: number | null, limit: number) {
      return sync(() => {
        const contact = readContact(followerId);
        if (!contact || limit <= 0) return { items: [], nextBefore: null };
        readable();
        const end = Math.min(before ?? Infinity, contact.history_seq + 1);
        const newestFirst = st.readHistory.all(followerId, end, limit + 1) as Array<
          { n: number; item: string }
        >;
        const more = newestFirst.length > limit;
        const page = newestFirst.slice(0, limit).reverse();
        return {
          items: page.map((h) => JSON.parse(h.item) as HistoryItem),
          nextBefore: more ? page[0]!.n : null,
        };
      });
    },
    recordReply(agentId: string, followerId: string, item: HistoryItem) {
      return mutate((m) => ({ n: m.reply(agentId, followerId, item) }), () => [followerId]);
    },
    updateReply(followerId: string, n: number, status: "sent" | "failed", error?: string) {
      return sync(() => {
        readable();
        const row = st.getHistory.get(followerId, n) as { item: string } | undefined;
        if (!row) return;
        const item: HistoryItem = {
          ...JSON.parse(row.item) as HistoryItem,
          status,
          ...(error ? { error } : {}),
        };
        st.setHistory.run(JSON.stringify(item), followerId, n);
      });
    },
    sweepWindows(now: number) {
      // The index names the followers whose windows close within the warning or have closed.
      let due: string[] = [];
      return mutate(
        (m) => {
          const contacts = due.map((id) => m.contacts.get(id)).filter((c) => c !== undefined);
          return m.sweepWindows(now, contacts);
        },
        () => {
          readable();
          const rows = st.dueWindows.all(now + WINDOW_WARNING_MS) as Array<{ follower_id: string }>;
          return due = rows.map((r) => r.follower_id);
        },
      );
    },
    async closeWindow(followerId: string, errcode: number) {
      await mutate((m) => m.closeWindow(followerId, errcode), () => [followerId]);
    },
    forgetFollower(followerId: string, notice: Envelope) {
      return mutate((m) => m.forget(followerId, notice), () => [followerId]);
    },
    transfer(followerId: string, fromAgent: string, toAgent: string) {
      return mutate((m) => m.transfer(followerId, fromAgent, toAgent), () => [followerId]);
    },
    closeConversation(followerId: string, agentId: string) {
      return mutate((m) => m.close(followerId, agentId), () => [followerId]);
    },
    async setCapacity(agentId: string, capacity: number | null) {
      await mutate((m) => m.setCapacity(agentId, capacity));
    },
    async renameContact(agentId: string, followerId: string, name: string) {
      await mutate((m) => m.rename(agentId, followerId, name), () => [followerId]);
    },
    async markRead(agentId: string, followerId: string) {
      await mutate((m) => m.markRead(agentId, followerId), () => [followerId]);
    },
    queueDepth(): Promise<number> {
      return Promise.resolve(model.queuedCount);
    },
    ping(): Promise<void> {
      return sync(() => {
        if (closed) throw new Error("The store is closed");
        if (stale) reload();
        db.prepare("SELECT 1").get();
      });
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      clearInterval(pruner);
      clearTimeout(cursorTimer);
      cursorTimer = undefined;
      if (checkpointer) await stopCheckpointer(checkpointer);
      try {
        if (!stale) apply();
        db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      } catch (error) {
        log.warn("Cannot write to SQLite at close: {error}", { error });
      }
      clearTimeout(applyTimer);
      db.close();
    },
  };
}
