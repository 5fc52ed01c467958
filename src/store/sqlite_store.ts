// The store on SQLite (`node:sqlite`, built into Deno): the routing model in memory (agents,
// waiting followers, the most recently used contacts; the others are read when needed) and one
// journal line per commit as the durable record, appended to a file before anyone is told
// (sqlite_journal_file.ts). Logs, history, contacts and the queue are written to the SQLite
// tables afterwards by the store's worker; a restart applies whatever journal is left first.

import { DatabaseSync, type StatementSync } from "node:sqlite";
import { getLogger } from "@logtape/logtape";
import { keyCollector } from "../core/media_refs.ts";
import type { Envelope } from "../protocol/envelope.ts";
import {
  type Changes,
  Model,
  type ModelOptions,
  modelReads,
  sortQuickReplies,
} from "../core/model.ts";
import { WINDOW_WARNING_MS } from "../protocol/window.ts";
import {
  type AgentRecord,
  type Applied,
  type Contact,
  type ContactPage,
  type HistoryItem,
  type InboundItem,
  type InboundOutcome,
  isUnanswered,
  type LogEntry,
  type Presence,
  type QuickReply,
  replyOutcome,
  type ReplyOutcomeOptions,
  type Store,
} from "../core/store.ts";
import { type Applier, createInlineApplier, startWorkerApplier } from "./sqlite_applier.ts";
import {
  applyJournal,
  applyLegacyJournal,
  type ApplyStatements,
  type Commit,
  contactRow,
  prepareApply,
  pruneExpired,
  readApplied,
  readSignedBodies,
  type Retention,
  shortenToRetention,
  transaction,
} from "./sqlite_journal.ts";
import {
  adoptRestoring,
  createMemoryJournal,
  type Journal,
  journalDirOf,
  logLeftOut,
  openJournalDir,
  readJournalDir,
  unlockJournalDir,
  waitForJournalLock,
} from "./sqlite_journal_file.ts";
import { CommitLine, sameAsFrame } from "./sqlite_journal_line.ts";
import { openSqliteDatabase } from "./sqlite_schema.ts";
import { keptLastMessage } from "../core/history_retention.ts";
import { forgetInCopies, forgetInCopy, pruneCopies } from "./sqlite_unreadable.ts";
import { createFileGuard } from "./sqlite_file_guard.ts";
import { isDiskRefusal, StoreRefusal } from "./disk_refusal.ts";
import { createSignedBodies } from "../wechat/signed_bodies.ts";

export { type ContactRow, contactRow } from "./sqlite_journal.ts";
export { openSqliteDatabase } from "./sqlite_schema.ts";
export { type Journal, journalDirOf } from "./sqlite_journal_file.ts";

const log = getLogger(["bridge", "store"]);

/** How long a journal row waits before the worker writes it to the tables (a read that needs
 * them asks at once): many commits then share one transaction. */
const APPLY_DELAY_MS = 20;
const CURSOR_FLUSH_MS = 1000;
const PRUNE_INTERVAL_MS = 60_000;
const MIN_LOG_RETENTION_MS = 48 * 3600_000;
/** Contacts kept in memory by default (1-2 KB each); the others are read when needed. */
const HOT_CONTACTS = 50_000;
/** How often the worker copies the WALs into the database files. */
const CHECKPOINT_INTERVAL_MS = 1000;
/** History rows a forget's media scan reads between two turns of the event loop. */
const SCAN_PAGE = 2000;

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
  /** How long journal rows wait before they are written to the tables, ms (tests hold them). */
  applyDelayMs?: number;
  /** Lines a failed write to the tables keeps for the next, at most (bytes; tests make it 0,
   * as a failure that held more, to have them read back from the journal). */
  keepFailedBytes?: number;
  /** Opens the journal (tests wrap it to refuse writes, as a full disk does). */
  openJournal?: typeof openJournalDir;
}

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

/** The main thread's reads of the tables, prepared once. */
function prepareReads(db: DatabaseSync) {
  const s = (sql: string): StatementSync => db.prepare(sql);
  return {
    getContact: s("SELECT json FROM contacts WHERE follower_id = ?"),
    served: s(
      `SELECT json FROM contacts WHERE agent_key = ? AND (at < ? OR (at = ? AND follower_id < ?))
       ORDER BY at DESC, follower_id DESC LIMIT ?`,
    ),
    dueWindows: s(
      "SELECT follower_id FROM contacts WHERE closes_at IS NOT NULL AND closes_at <= ?",
    ),
    readLog: s(
      "SELECT seq, frame FROM log WHERE agent_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
    ),
    lastSeq: s("SELECT max(seq) AS seq FROM log WHERE agent_id = ?"),
    readHistory: s(
      "SELECT n, item FROM history WHERE follower_id = ? AND n < ? ORDER BY n DESC LIMIT ?",
    ),
    // A scan of every row, for a forget only (rare): no index serves a substring. In pages by
    // rowid, so that the thread answering WeChat is never held for a whole table.
    historyPage: s("SELECT rowid AS id, item FROM history WHERE rowid > ? ORDER BY rowid LIMIT ?"),
    forgetCut: s("SELECT cut FROM forget_cuts WHERE follower_id = ?"),
    quickReplies: s("SELECT json FROM quick_replies"),
    // The item itself still sending, before the LIMIT: a row found by the JSON's text alone
    // (the backfill; a msg of the agent's holding `"status":"sending"`) stays, and a page full
    // of such rows hid every reply really left unanswered behind them.
    unanswered: s(
      `SELECT u.follower_id, u.n, h.item FROM unanswered u
       JOIN history h ON h.follower_id = u.follower_id AND h.n = u.n
       WHERE u.at < ? AND json_extract(h.item, '$.status') = 'sending'
         AND json_extract(h.item, '$.direction') = 'out'
       ORDER BY u.at LIMIT ?`,
    ),
    quickReply: s("SELECT 1 FROM quick_replies WHERE id = ?"),
  };
}

type Reads = ReturnType<typeof prepareReads>;

/** The model as the tables hold it, and the highest queue stamp given out. */
function loadModel(
  db: DatabaseSync,
  st: ApplyStatements,
  reads: Reads,
  options: ModelOptions,
): { model: Model; stamp: number } {
  const model = new Model(options);
  for (const row of db.prepare("SELECT json FROM agents").iterate()) {
    const record = JSON.parse((row as { json: string }).json) as AgentRecord;
    model.agents.set(record.agent_id, record);
  }
  // Messages do not rewrite their agent's record: its seq is the last of its log.
  for (const record of model.agents.values()) {
    const last = (reads.lastSeq.get(record.agent_id) as { seq: number | null }).seq ?? 0;
    record.seq = Math.max(record.seq, last);
  }
  const now = options.now();
  const dedup = db.prepare("SELECT keys FROM dedup WHERE expires_at > ?");
  const seen: Array<[string, number]> = [];
  for (const row of dedup.iterate(now)) {
    seen.push(...JSON.parse((row as { keys: string }).keys) as [string, number][]);
  }
  model.restoreSeen(seen, now);
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
    const found = reads.getContact.get(id) as { json: string } | undefined;
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

/** The store's files and the statements on them, on the main thread. */
interface Files {
  path: string;
  db: DatabaseSync;
  st: ApplyStatements;
  journal: Journal;
  reads: Reads;
  retention: Retention;
  /** The signatures' first bodies the last run kept, still in their window. */
  signedBodies: Array<[string, string, number]>;
}

/** Opens the store on a SQLite file (or `:memory:`), applies its journal and loads its state. */
export async function openSqliteStore(path: string, options: SqliteStoreOptions): Promise<Store> {
  // Before anything is read: a process still running on this DATA_DIR finishes first.
  const lock = path === ":memory:" ? null : await waitForJournalLock(journalDirOf(path));
  return await openLocked(path, options, lock);
}

/** The journal's commits after `after` at a start, a gap before the first logged: the tables
 * and the journal both lack those, as after a crash while the worker held a failed write of a
 * segment deleted meanwhile (they were in its memory only), and the start applied past them in
 * silence. Lines left out as damage are logged as that already. */
function readAtStart(dir: string, after: number): Commit[] {
  const damaged = new Set<number>();
  const commits = readJournalDir(dir, after, {
    leftOut: (note) => {
      // One whose id is damaged too may be the first missing: said as damage, not as this.
      damaged.add(typeof note.commit === "number" ? note.commit : NaN);
      logLeftOut(note);
    },
  });
  // Each gap, not only one before the first: a segment lost between two others (deleted alone,
  // then a kill -9 before the look) was applied past without a word.
  let from = after + 1;
  for (const { id } of commits) {
    while (damaged.has(from)) from++;
    if (id > from && !damaged.has(NaN)) {
      log.error(
        "Commits {from} to {to} were answered success but are lost: neither the tables nor the " +
          "journal hold them (their journal segment was deleted before the tables took them)",
        { from, to: id - 1 },
      );
    }
    from = Math.max(from, id + 1);
  }
  return commits;
}

/** openSqliteStore() once the journal's lock is held (`lock`; null for `:memory:`). */
function openLocked(
  path: string,
  options: SqliteStoreOptions,
  lock: Deno.FsFile | null,
): Promise<Store> {
  const fsync = options.fsync ?? false;
  const inMemory = path === ":memory:";
  const dir = journalDirOf(path);
  const unlock = () => {
    if (lock !== null) unlockJournalDir(lock);
  };
  let db: DatabaseSync;
  try {
    db = openSqliteDatabase(path, fsync);
  } catch (error) {
    unlock();
    return Promise.reject(error);
  }
  try {
    const st = prepareApply(db);
    const retention = {
      retentionMs: options.retentionMs,
      logRetainMs: Math.max(options.retentionMs, MIN_LOG_RETENTION_MS),
    };
    // Expiries written under another HISTORY_RETENTION_DAYS moved to this one first: what the
    // journal still holds is then written under it, and moved by nothing.
    shortenToRetention(db, retention);
    const legacy = applyLegacyJournal(db, st, retention);
    // A write-back a kill -9 cut off before its rename: its copy holds commits answered success.
    if (!inMemory) adoptRestoring(dir, fsync);
    const before = readApplied(st);
    const applied = inMemory
      ? before
      : applyJournal(db, st, (after) => readAtStart(dir, after), retention);
    const replayed = legacy + applied - before;
    if (replayed > 0) {
      log.info("Applied {rows} journal rows left by the last run", { rows: replayed });
    }
    const journal = inMemory
      ? createMemoryJournal()
      : (options.openJournal ?? openJournalDir)(dir, applied, fsync, undefined, lock!);
    const files: Files = {
      path,
      db,
      st,
      journal,
      reads: prepareReads(db),
      retention,
      signedBodies: [],
    };
    try {
      // Before the worker starts: the first prune has the tables to itself.
      pruneExpired(db, options.now());
      if (!inMemory) pruneCopies(dir, options.now(), retention.retentionMs);
      files.signedBodies = readSignedBodies(db, options.now());
      const loaded = loadModel(db, st, files.reads, options);
      return Promise.resolve(createSqliteStore(files, loaded.model, loaded.stamp, options));
    } catch (error) {
      journal.close();
      throw error;
    }
  } catch (error) {
    db.close();
    unlock();
    return Promise.reject(error);
  }
}

function createSqliteStore(
  files: Files,
  initial: Model,
  initialStamp: number,
  options: SqliteStoreOptions,
): Store {
  const { db, st, journal, reads } = files;
  let model = initial;
  let stamp = initialStamp;
  /** The last commit written to the journal, and the last the tables have. */
  let journalId = readApplied(st);
  let appliedId = journalId;
  /** Contacts out of memory whose last journal row the tables do not have yet: [row, JSON or
   * null if forgotten]. Read in place of the table. */
  const unapplied = new Map<string, [number, string | null]>();
  /** Followers whose forget's cut is in the journal but not yet in the tables: its row. */
  const unappliedCuts = new Map<string, number>();
  /**
   * The journal row that last wrote each contact in memory: one that leaves memory before the
   * tables have that row goes to `unapplied`. Numbers updated in place, where keeping every
   * commit's contact JSON in `unapplied` until applied made V8 promote it (a map that churns
   * holds young values from tables already old): 0.2 MB a scavenge at 2,000 messages/s.
   */
  const contactRows = new Map<string, number>();
  /**
   * Forgets whose commit the worker has not said it applied: [row, follower]. A copy it keeps
   * of a damaged segment is made from what it read, and a forget committed after that read
   * scrubbed only the copies there were (see onCopied).
   */
  let recentForgets: Array<[number, string]> = [];
  /** The model may be ahead of the database after a failed commit: reload before going on. */
  let stale = false;
  let closed = false;
  let cursorTimer: ReturnType<typeof setTimeout> | undefined;
  const hotContacts = options.hotContacts ?? HOT_CONTACTS;
  /** Agents whose cursor (or new record) is in no journal row yet. */
  const unjournaledCursors = new Set<string>();
  /** Signatures' first bodies in no journal row yet: the next row takes them, and a callback
   * that wrote none writes them before it is answered (bodiesKept). */
  let unjournaledBodies: Array<[string, string, number]> = [];
  const signedBodies = createSignedBodies(options.now, {
    kept: files.signedBodies,
    onFirst: (signature, hash, expiry) => unjournaledBodies.push([signature, hash, expiry]),
  });
  files.signedBodies = [];

  /** Whether bridge.sqlite is still the file opened (`:memory:` has none). */
  // It copies through the applier, declared below, only once it finds the file gone.
  const guard = files.path === ":memory:" ? null : createFileGuard(files.path, async (dest) => {
    // The journal on disk may have gone with the file (DATA_DIR removed whole): written back
    // first, so the directory is there again. One that cannot be yet is tried again by the
    // next look; this copy, of every commit so far, is still the one to have.
    try {
      journal.ensure();
    } catch (error) {
      log.warn("Cannot write the journal back yet: {error}", { error });
    }
    // At close the worker has applied what it was handed, and takes no more requests.
    if (!closed && appliedId < journalId) await applier.applied(journalId);
    await applier.backup(dest);
  }, {
    look: lookAtJournal,
    fsync: options.fsync ?? false,
    pages: () => ({
      size: Number(db.prepare("PRAGMA page_size").get()?.["page_size"]),
      count: Number(db.prepare("PRAGMA page_count").get()?.["page_count"]),
    }),
  });

  /** Whether the journal's segments are still in their directory: written back if not (throws
   * while they cannot be). */
  function lookAtJournal(): void {
    journal.ensure();
  }

  const onApplied = (id: number) => {
    appliedId = Math.max(appliedId, id);
    for (const [followerId, [row]] of unapplied) {
      if (row <= appliedId) unapplied.delete(followerId);
    }
    for (const [followerId, row] of unappliedCuts) {
      if (row <= appliedId) unappliedCuts.delete(followerId);
    }
    // The tables at the path are not the ones written (the guard looks every second; what it
    // lets go before it notices is in the open file, which it writes back).
    if (guard?.keepJournal) return;
    journal.release(appliedId).catch((error) => {
      // Commits the tables have are skipped by every later apply: deleting them can wait.
      log.warn("Cannot delete applied journal segments: {error}", { error });
    });
  };
  /** The worker kept `copy` from a read of the commits after `after`: the followers of the
   * forgets since then are taken out of it, which their own scrub, before it was there, missed. */
  const onCopied = (copy: string, after: number) => {
    const followers = recentForgets.filter(([row]) => row > after).map(([, id]) => id);
    try {
      forgetInCopy(copy, followers);
    } catch (error) {
      log.error("Cannot take forgotten followers out of {copy}: {error}", { copy, error });
    }
  };
  const applierOptions = {
    db,
    st,
    read: journal.read,
    retention: files.retention,
    applyDelayMs: options.applyDelayMs ?? APPLY_DELAY_MS,
    applied: appliedId,
    onApplied,
    keepFailedBytes: options.keepFailedBytes,
  };
  const applier: Applier = files.path === ":memory:"
    ? createInlineApplier(applierOptions)
    : startWorkerApplier({
      ...applierOptions,
      path: files.path,
      journalDir: journalDirOf(files.path),
      fsync: options.fsync ?? false,
      checkpointMs: CHECKPOINT_INTERVAL_MS,
      onCopied,
      onApplied: (id) => {
        // The worker's own word, after any copy it read before the tables had `id` (its
        // reports keep order): a later read is after `id`, and has these forgets.
        if (recentForgets.length > 0) recentForgets = recentForgets.filter(([row]) => row > id);
        onApplied(id);
      },
    });

  const pruner = setInterval(() => {
    model.pruneSeen(options.now());
    // The pruner clears an expired conversation's preview in the tables; the model drops it
    // too, or the contact's next write (a rename, a mark read) put the words back for good.
    const now = options.now();
    for (const c of model.contacts.values()) {
      if (
        c.last_message !== null && keptLastMessage(c, files.retention.retentionMs, now) === null
      ) {
        c.last_message = null;
      }
    }
    if (stale || closed) return;
    try {
      // Agents' records first: a seq is recovered from the log's last row, which may go.
      writeRow((line) => writeAgents(line, model, model.agents.keys()));
      unjournaledCursors.clear();
      applier.prune(options.now());
      if (files.path !== ":memory:") {
        pruneCopies(journalDirOf(files.path), options.now(), files.retention.retentionMs);
      }
    } catch (error) {
      log.warn("Cannot prune expired rows: {error}", { error });
    }
  }, PRUNE_INTERVAL_MS);
  Deno.unrefTimer(pruner);

  /** Writes one commit's journal line, made by `fill`: the one write before anyone is told
   * (throws if it fails). Then hands its bytes to the applier; returns the commit's id. */
  function writeRow(fill: (line: CommitLine) => void): number {
    const id = journalId + 1;
    const line = new CommitLine(id, options.now());
    fill(line);
    const bodies = unjournaledBodies;
    for (const [signature, hash, expiry] of bodies) line.signedBody(signature, hash, expiry);
    const bytes = applier.encode(line.text());
    journal.append(id, bytes);
    journalId = id;
    // Not reached if the write threw: they go with the next row.
    if (bodies.length > 0) unjournaledBodies = [];
    applier.written(id, bytes);
    return id;
  }

  /** Resolves once the tables have every committed row. */
  function tablesReady(): Promise<void> {
    if (closed) return Promise.reject(new Error("Cannot read: the store is closed"));
    if (stale) {
      try {
        reload();
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return applier.applied(journalId);
  }

  function reloadOrLog(): void {
    try {
      reload();
    } catch (error) {
      log.error("Cannot reload from SQLite: {error}", { error });
    }
  }

  /** The model as the journal and the tables have it; here, not in the worker, as it is rare
   * (a commit failed) and the model must be right before anything goes on. */
  function reload(): void {
    const old = model;
    // A segment deleted under us and not yet written back holds commits the tables may lack:
    // a model read without them went back past them, and the next commits, answered success,
    // took their seqs and places in history. Refused (503) until it is written back or the
    // tables have them, as WeChat retries. Looked at first: one deleted since the file guard's
    // last look is written back now.
    try {
      lookAtJournal();
    } catch {
      // Not logged: the file guard's look says so each second, and logged here it was a line
      // for every callback refused meanwhile (and every WeChat retry of it).
    }
    const unwritten = journal.unwrittenUpTo();
    if (unwritten > Math.max(appliedId, readApplied(st))) {
      // A write the worker could not make (bridge.sqlite locked) is made again only when asked,
      // and nothing else asks while every callback is refused.
      applier.applied(unwritten).catch(() => {
        // Logged by the applier; the next refused reload asks again.
      });
      throw new StoreRefusal(
        `Cannot reload: the tables do not have commit ${unwritten} yet, which only a deleted ` +
          "journal segment not yet written back holds",
      );
    }
    const applied = applyJournal(db, st, journal.read, files.retention);
    onApplied(applied);
    // Every row is in the tables now, and the new model holds other contacts.
    contactRows.clear();
    const loaded = loadModel(db, st, reads, options);
    // Cursors not yet written are still true: keep them.
    for (const [id, record] of old.agents) {
      const fresh = loaded.model.agents.get(id);
      if (fresh && record.cursor > fresh.cursor) {
        fresh.cursor = Math.min(record.cursor, fresh.seq);
        unjournaledCursors.add(id);
      }
    }
    if (unjournaledCursors.size > 0) scheduleCursorFlush();
    model = loaded.model;
    stamp = Math.max(stamp, loaded.stamp);
    stale = false;
  }

  /** Writes one commit's changes as one journal line. */
  function commit(m: Model, changes: Changes): void {
    if (isEmpty(changes)) return;
    const contacts: string[] = [];
    const id = writeRow((line) => {
      for (const e of changes.log) line.log(e.agentId, e.seq, frameOf(e));
      // A follower's message is in the log as well: its item is said once, by the frame.
      let logged: Map<unknown, number> | undefined;
      for (const h of changes.history) {
        if (h.item.direction === "in" && changes.log.length > 0) {
          logged ??= new Map(changes.log.map((e, i) => [e.envelope.data.id, i]));
          const index = logged.get(h.item.id);
          const data = index === undefined ? undefined : changes.log[index]!.envelope.data;
          if (data && sameAsFrame(h.item as unknown as Record<string, unknown>, data)) {
            line.inbound(h.followerId, h.n, index!);
            continue;
          }
        }
        line.history(h.followerId, h.n, JSON.stringify(h.item));
      }
      for (const q of changes.queued) {
        line.queued(q.followerId, q.n, ++stamp, JSON.stringify(q.envelope));
      }
      for (const d of changes.dequeued) line.dequeued(d.followerId, d.n);
      for (const followerId of changes.contacts) {
        const contact = m.contacts.get(followerId);
        if (!contact) continue;
        const json = JSON.stringify(contact);
        line.contact(contactRow(contact, json));
        contacts.push(followerId);
      }
      // Cursors that moved since the last line go with this one, as a restart needs them.
      writeAgents(line, m, changes.agents);
      writeAgents(line, m, unjournaledCursors, changes.agents);
      for (const k of changes.dedup) line.dedup(k, m.seen.get(k) ?? 0);
      for (const followerId of changes.forgotten) line.forgotten(followerId);
      for (const { followerId, cut } of changes.cuts) line.cut(followerId, JSON.stringify(cut));
    });
    // Not reached if the write threw: the caller reloads.
    unjournaledCursors.clear();
    for (const followerId of contacts) contactRows.set(followerId, id);
    for (const followerId of changes.forgotten) {
      contactRows.delete(followerId);
      unapplied.set(followerId, [id, null]);
    }
    for (const { followerId } of changes.cuts) unappliedCuts.set(followerId, id);
    if (changes.forgotten.length > 0 && files.path !== ":memory:") {
      for (const followerId of changes.forgotten) recentForgets.push([id, followerId]);
      try {
        forgetInCopies(journalDirOf(files.path), changes.forgotten);
      } catch (error) {
        // The forget stands (it is in the journal); the copies still name the follower.
        log.error(
          "Cannot take forgotten followers out of the journal's unreadable copies: {error}",
          {
            error,
          },
        );
      }
    }
  }

  /** Writes the agents `ids` into `line`, but those in `written` (already in it). */
  function writeAgents(
    line: CommitLine,
    m: Model,
    ids: Iterable<string>,
    written?: ReadonlySet<string>,
  ): void {
    for (const id of ids) {
      if (written?.has(id)) continue;
      const a = m.agents.get(id);
      if (a) line.agent(id, JSON.stringify(a));
    }
  }

  /** Writes the cursors (and new agents, and signatures' bodies) no journal row has yet. */
  function commitCursors(): void {
    if (unjournaledCursors.size > 0 || unjournaledBodies.length > 0) {
      writeRow((line) => writeAgents(line, model, unjournaledCursors));
    }
    unjournaledCursors.clear();
  }

  /** A contact as it is now, when it is not in memory: as the journal or the tables have it. */
  function storedContact(followerId: string): Contact | null {
    const waiting = unapplied.get(followerId);
    if (waiting) return waiting[1] === null ? null : JSON.parse(waiting[1]) as Contact;
    const row = reads.getContact.get(followerId) as { json: string } | undefined;
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
      if (m.contacts.size > hotContacts) {
        for (const contact of m.evictContacts(hotContacts)) {
          const row = contactRows.get(contact.follower_id) ?? 0;
          contactRows.delete(contact.follower_id);
          if (row > appliedId) unapplied.set(contact.follower_id, [row, JSON.stringify(contact)]);
        }
      }
      return Promise.resolve({ value, deliveries: changes.log });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  function scheduleCursorFlush(): void {
    if (cursorTimer !== undefined || closed) return;
    cursorTimer = setTimeout(() => {
      cursorTimer = undefined;
      if (unjournaledCursors.size === 0 || closed || stale) return;
      try {
        commitCursors();
      } catch (error) {
        log.warn("Cannot write delivery cursors: {error}", { error });
      }
    }, CURSOR_FLUSH_MS);
    Deno.unrefTimer(cursorTimer);
  }

  const sync = <T>(fn: () => T): Promise<T> => {
    try {
      return Promise.resolve(fn());
    } catch (error) {
      return Promise.reject(error);
    }
  };

  /** Runs `fn` once the tables have every committed row. */
  const fromTables = async <T>(fn: () => T): Promise<T> => {
    await tablesReady();
    return fn();
  };

  return {
    acceptInbound(items: InboundItem[], presence: Presence) {
      return mutate(
        (m) => items.map((item): InboundOutcome => m.inbound(item, presence)),
        () => items.map((item) => item.followerId),
      );
    },
    reportLocation(item, place) {
      return mutate((m) => m.location(item, place), () => [item.followerId]);
    },
    appendToAgents(entries) {
      return mutate((m) => entries.map((e) => m.append(e.agentId, e.envelope)));
    },
    agentOnline(agentId: string, presence: Presence) {
      if (!stale && !closed && model.waiting.size === 0) {
        // Nobody to hand over: at most a new agent's record changes, written with the
        // cursors, so a reconnect storm of thousands of agents costs a few writes, not one
        // each. An agent lost to a crash before that is made again when it reconnects.
        if (!model.agents.has(agentId)) {
          model.agent(agentId);
          model.takeChanges();
          unjournaledCursors.add(agentId);
          scheduleCursorFlush();
        }
        return Promise.resolve({ value: undefined, deliveries: [] });
      }
      return mutate((m) => m.agentOnline(agentId, undefined, presence.onlineAgents()));
    },
    readLog(agentId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
      // Rows past the agent's seq can only be left over from a failed commit.
      const last = model.agents.get(agentId)?.seq ?? 0;
      if (afterSeq >= last || limit <= 0) return Promise.resolve([]);
      return fromTables(() => {
        const rows = reads.readLog.all(agentId, afterSeq, last, limit) as Array<
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
      unjournaledCursors.add(agentId);
      scheduleCursorFlush();
    },
    ...modelReads(() => model),
    getContact(followerId: string) {
      return sync(() => readContact(followerId));
    },
    listContacts(agentId: string, page?: ContactPage) {
      // The tables hold every contact once the journal is written to them.
      return fromTables(() => {
        const after = page?.after ?? null;
        const rows = reads.served.all(
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
    async readHistory(followerId: string, before: number | null, limit: number) {
      const contact = readContact(followerId);
      if (!contact || limit <= 0) return { items: [], nextBefore: null };
      await tablesReady();
      const end = Math.min(before ?? Infinity, contact.history_seq + 1);
      const newestFirst = reads.readHistory.all(followerId, end, limit + 1) as Array<
        { n: number; item: string }
      >;
      const more = newestFirst.length > limit;
      const page = newestFirst.slice(0, limit).reverse();
      return {
        items: page.map((h) => JSON.parse(h.item) as HistoryItem),
        nextBefore: more ? page[0]!.n : null,
      };
    },
    recordReply(agentId: string, followerId: string, item: HistoryItem) {
      return mutate((m) => ({ n: m.reply(agentId, followerId, item) }), () => [followerId]);
    },
    updateReply(
      followerId: string,
      reply: { n: number; id: string },
      status: "sent" | "failed",
      error?: string,
      outcomeOptions?: ReplyOutcomeOptions,
    ) {
      // Through the journal, after the row that wrote the reply.
      const write = () =>
        sync(() => {
          if (closed) throw new Error("Cannot write: the store is closed");
          writeRow((line) =>
            line.outcome(followerId, reply, replyOutcome(status, error, outcomeOptions))
          );
          return true;
        });
      if (!outcomeOptions?.onlySending) return write();
      return (async () => {
        // Until the tables have every row written so far, the check and the write then with no
        // wait between: an outcome another sweep wrote meanwhile is seen. A few rounds at most:
        // on a busy bridge rows keep coming, and the sweep would never get its turn.
        for (let seen = -1, round = 0; seen !== journalId && round < 3; round++) {
          seen = journalId;
          await tablesReady();
        }
        const row = reads.readHistory.get(followerId, reply.n + 1, 1) as
          | { n: number; item: string }
          | undefined;
        const item = row?.n === reply.n ? JSON.parse(row.item) as HistoryItem : null;
        if (item?.id !== reply.id || !isUnanswered(item)) return false;
        return await write();
      })();
    },
    async unansweredReplies(before: number, limit: number) {
      await tablesReady();
      const rows = reads.unanswered.all(before, limit) as Array<
        { follower_id: string; n: number; item: string }
      >;
      return rows
        .map((r) => ({ followerId: r.follower_id, n: r.n, item: JSON.parse(r.item) }))
        .filter((r) => isUnanswered(r.item));
    },
    async sweepWindows(now: number) {
      // The index names the followers whose windows close within the warning or have closed.
      await tablesReady();
      let due: string[] = [];
      return await mutate(
        (m) => {
          const contacts = due.map((id) => m.contacts.get(id)).filter((c) => c !== undefined);
          return m.sweepWindows(now, contacts);
        },
        () => {
          const rows = reads.dueWindows.all(now + WINDOW_WARNING_MS) as Array<
            { follower_id: string }
          >;
          return due = rows.map((r) => r.follower_id);
        },
      );
    },
    async closeWindow(followerId: string, errcode: number, countedIn: number) {
      await mutate((m) => m.closeWindow(followerId, errcode, countedIn), () => [followerId]);
    },
    async returnReply(followerId: string, n: number, countedIn: number) {
      // Journaled like every contact change: a given-back reply stays given back after a crash.
      return (await mutate((m) => m.returnReply(followerId, n, countedIn), () => [followerId]))
        .value;
    },
    forgetFollower(followerId: string, notice: Envelope) {
      return mutate((m) => m.forget(followerId, notice), () => [followerId]);
    },
    forgetCuts(agentId: string, followerIds: readonly string[]) {
      const read = () => {
        const found = new Map<string, number>();
        for (const id of followerIds) {
          const row = reads.forgetCut.get(id) as { cut: string } | undefined;
          const seq = row ? (JSON.parse(row.cut) as Record<string, number>)[agentId] : undefined;
          if (seq !== undefined) found.set(id, seq);
        }
        return found;
      };
      // A cut the tables do not have yet is waited for; else they answer now, unflushed: every
      // reply's outcome asks (reply_service.ts), and forgets are rare.
      return followerIds.some((id) => unappliedCuts.has(id)) ? fromTables(read) : sync(read);
    },
    async mediaInHistory(keys: readonly string[]) {
      // The tables, once the journal is in them (a forget's deletion included), hold it all.
      await tablesReady();
      const named = new Set<string>();
      const collect = keyCollector(keys);
      let after = 0;
      while (named.size < keys.length) {
        const rows = reads.historyPage.all(after, SCAN_PAGE) as Array<{ id: number; item: string }>;
        for (const row of rows) collect(row.item, named);
        if (rows.length < SCAN_PAGE) break;
        after = rows[rows.length - 1]!.id;
        // Callbacks waiting behind the scan are answered between its pages.
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      return named;
    },
    transfer(followerId: string, fromAgent: string, toAgent: string, note?: string) {
      return mutate((m) => m.transfer(followerId, fromAgent, toAgent, note), () => [followerId]);
    },
    claim(followerId: string, agentId: string) {
      return mutate((m) => m.claim(agentId, followerId), () => [followerId]);
    },
    addNote(agentId: string, followerId: string, text: string) {
      return mutate((m) => ({ n: m.note(agentId, followerId, text) }), () => [followerId]);
    },
    async setLabels(agentId: string, followerId: string, labels: string[]) {
      await mutate((m) => m.setLabels(agentId, followerId, labels), () => [followerId]);
    },
    listAgents() {
      return Promise.resolve([...model.agents.values()].map((a) => ({ ...a })));
    },
    // Quick replies are the team's settings, not routing; written through the journal too, as
    // the main thread writes nothing else.
    listQuickReplies() {
      return fromTables(() => {
        const rows = reads.quickReplies.all() as Array<{ json: string }>;
        return sortQuickReplies(rows.map((r) => JSON.parse(r.json) as QuickReply));
      });
    },
    putQuickReply(reply: QuickReply) {
      return sync(() => {
        if (closed) throw new Error("Cannot write: the store is closed");
        writeRow((line) => line.quickReply(reply.id, JSON.stringify(reply)));
      });
    },
    async deleteQuickReply(id: string) {
      // Asked of the tables with nothing unapplied, and written before anything else runs.
      while (appliedId < journalId) await tablesReady();
      if (closed) throw new Error("Cannot write: the store is closed");
      if (reads.quickReply.get(id) === undefined) return false;
      writeRow((line) => line.quickReplyDeleted(id));
      return true;
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
    firstBody(signature: string, hash: string, ttlMs: number) {
      return signedBodies.first(signature, hash, options.now() + ttlMs);
    },
    bodiesKept() {
      // Most callbacks' rows took theirs; one that committed nothing (a retry, an event that
      // changes nothing) writes a row of them alone.
      if (unjournaledBodies.length === 0) return Promise.resolve();
      return sync(() => {
        if (closed) throw new Error("Cannot write: the store is closed");
        writeRow(() => {});
      });
    },
    // A disk that is full or was made read-only takes no journal line: nothing was accepted.
    unreachable: isDiskRefusal,

    queueDepth(): Promise<number> {
      return Promise.resolve(model.queuedCount);
    },
    ping(): Promise<void> {
      return sync(() => {
        if (closed) throw new Error("The store is closed");
        if (stale) reload();
        db.prepare("SELECT 1").get();
        const problem = guard?.check();
        if (problem) throw new Error(problem);
      });
    },
    async close(): Promise<void> {
      if (closed) return;
      clearInterval(pruner);
      clearTimeout(cursorTimer);
      cursorTimer = undefined;
      try {
        if (!stale) commitCursors();
      } catch (error) {
        log.warn("Cannot write delivery cursors at close: {error}", { error });
      }
      closed = true;
      await applier.close();
      try {
        // Whatever the worker could not apply; then the file whole, its WAL emptied.
        if (appliedId < journalId) onApplied(applyJournal(db, st, journal.read, files.retention));
        // Looked at once more: a file deleted since the last look is written back first.
        await guard?.close();
        if (!guard?.keepJournal) await journal.release(appliedId, true);
        db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      } catch (error) {
        log.warn("Cannot write to SQLite at close: {error}", { error });
      }
      journal.close();
      db.close();
    },
  };
}
