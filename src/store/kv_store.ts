// The store on Deno KV: the routing model in memory and KV as its durable copy. Agents and
// waiting followers are loaded at open; other contacts are read when an operation needs them
// and only the most recently used stay in memory, so a million followers cost what a few
// thousand do. Every operation runs the model, then commits what it changed in one atomic
// before anyone is told it happened; only KV's per-commit limits ever split a commit.

import { keyCollector } from "../core/media_refs.ts";
import { getLogger } from "@logtape/logtape";
import type { Envelope } from "../protocol/envelope.ts";
import {
  agentKey,
  agentsPrefix,
  contactKey,
  contactsPrefix,
  dedupKey,
  dedupPrefix,
  forgetCutKey,
  historyKey,
  historyPrefix,
  layoutKey,
  logKey,
  logPrefix,
  queuedKey,
  queuePrefix,
  quickRepliesPrefix,
  quickReplyKey,
  servedKey,
  servedPrefix,
  unansweredKey,
  unansweredPrefix,
  windowKey,
  windowsPrefix,
} from "./kv_keys.ts";
import { MESSAGE_WINDOW_MS, WINDOW_WARNING_MS } from "../protocol/window.ts";
import {
  type Changes,
  Model,
  type ModelOptions,
  modelReads,
  sortQuickReplies,
} from "../core/model.ts";
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
  MessageTooLargeError,
  type Presence,
  type QuickReply,
  replyOutcome,
  type ReplyOutcomeOptions,
  type Store,
  type UnansweredReply,
} from "../core/store.ts";
import { isDiskRefusal } from "./disk_refusal.ts";
import {
  createKvSignedBodies,
  loadKvSignedBodies,
  type SignedBody,
  signedBodyWrite,
} from "./kv_signed_bodies.ts";

const log = getLogger(["bridge", "store"]);

// Deno KV refuses an atomic with more than 1,000 mutations, 819,200 bytes of keys and values,
// or 81,920 bytes of keys (measured on Deno 2.9). Sizes here are upper bounds computed
// without serializing, so the byte budgets keep a margin below KV's.
const MAX_MUTATIONS = 1000;
const MAX_BYTES = 760_000;
const MAX_KEY_BYTES = 76_000;
/** Dedup keys per KV value: one record per commit, not one write per message. */
const DEDUP_PER_RECORD = 250;
/** How long a delivered seq may wait before its cursor is written without other work. */
const CURSOR_FLUSH_MS = 1000;
const PRUNE_INTERVAL_MS = 60_000;
const LIST_BATCH = 500;
const MIN_LOG_RETENTION_MS = 48 * 3600_000;
/** Contacts kept in memory by default (1-2 KB each, so at most ~85 MB); the others are read
 * from KV when an operation needs them. */
const HOT_CONTACTS = 50_000;
/** Deno KV's getMany() takes at most 10 keys. */
const GET_MANY = 10;
/** The database layout this code writes: 2 added the served and windows indexes. */
const LAYOUT = 2;

/** KV refuses a value over 64 KiB in V8's format; sizes here are upper bounds, with a margin. */
const VALUE_BUDGET = 63_000;

/** Options of the KV store: the model's, and how long logs and history are kept. */
export interface KvStoreOptions extends ModelOptions {
  /** History entries expire this long after they are written, ms; agents' logs too, but
   * never before 48 hours (WeChat's reply window), so a returning agent can catch up. */
  retentionMs: number;
  /** Contacts kept in memory (the most recently used; waiting followers always). */
  hotContacts?: number;
}

/** Where a contact is in the indexes as KV has it: its list's agent and time, its window. */
interface Indexed {
  agent: string | null;
  at: number;
  closesAt: number | null;
}

/** Where a contact belongs in the indexes: the list of the agent that serves it (or last did),
 * and, while an agent serves it and its 48-hour window may still need a notice, that window. */
function indexOf(c: Contact): Indexed {
  const agent = c.agent_id ?? c.last_agent_id;
  const windowed = c.agent_id !== null && c.last_inbound_at > 0 &&
    c.last_inbound_kind === "message" && c.window_notice !== "expired";
  return {
    agent,
    at: c.last_message_at,
    closesAt: windowed ? c.last_inbound_at + MESSAGE_WINDOW_MS : null,
  };
}

/**
 * The index keys to delete and to write when a contact moves from `old` (as KV has it) to
 * `now`, and where it then is in KV. A window that moves later keeps its key, unless `exact`:
 * the key then comes before the true closing time, so the sweep meets it first and moves it
 * (`exact`), and a follower's message costs no window writes while its window is open.
 */
function indexWrites(
  id: string,
  old: Indexed | undefined,
  now: Indexed,
  exact = false,
): { writes: Write[]; stored: Indexed } {
  const writes: Write[] = [];
  const servedMoved = old?.agent !== now.agent || old?.at !== now.at;
  if (old && old.agent !== null && servedMoved) {
    writes.push(deleteWrite(servedKey(old.agent, old.at, id)));
  }
  if (now.agent !== null && servedMoved) writes.push(setWrite(servedKey(now.agent, now.at, id), 1));
  const was = old?.closesAt ?? null;
  let closesAt = now.closesAt;
  if (was !== null && closesAt !== null && closesAt > was && !exact) closesAt = was;
  if (was !== closesAt) {
    if (was !== null) writes.push(deleteWrite(windowKey(was, id)));
    if (closesAt !== null) writes.push(setWrite(windowKey(closesAt, id), 1));
  }
  return { writes, stored: { ...now, closesAt } };
}

/** Reads contacts by id, ten keys a call (KV's limit), all calls at once. */
async function getContacts(kv: Deno.Kv, wanted: string[]): Promise<Map<string, Contact>> {
  const found = new Map<string, Contact>();
  const calls: Array<Promise<void>> = [];
  // An id too long to be a key (KV reads at most 2 KiB) was never stored.
  const ids = wanted.filter((id) => id.length < 600 || encoder.encode(id).length < 2000);
  for (let i = 0; i < ids.length; i += GET_MANY) {
    const keys = ids.slice(i, i + GET_MANY).map(contactKey);
    calls.push(
      kv.getMany<Array<string | Contact>>(keys).then((entries) => {
        for (const e of entries) {
          if (e.value !== null) {
            const contact = fromStored<Contact>(e.value as string | Contact);
            found.set(contact.follower_id, contact);
          }
        }
      }),
    );
  }
  await Promise.all(calls);
  return found;
}

/** A message waiting for an agent, as stored: `stamp` orders followers by when they queued. */
interface StoredQueued {
  envelope: Envelope;
  stamp: number;
}

/** One mutation of a commit; `value` undefined is a delete. */
interface Write {
  key: Deno.KvKey;
  value?: unknown;
  expireIn?: number;
  bytes: number;
  keyBytes: number;
  /** Contacts and agents: a later snapshot in the same commit replaces the earlier one. */
  slot?: string;
}

/** What one atomic commit will write. */
interface Group {
  writes: Write[];
  slots: Map<string, number>;
  /** WeChat retry keys and their expiries, written as a few records at commit. */
  dedup: Array<[string, number]>;
  bytes: number;
  keyBytes: number;
  deliveries: LogEntry[];
}

const newGroup = (): Group => ({
  writes: [],
  slots: new Map(),
  dedup: [],
  bytes: 0,
  keyBytes: 0,
  deliveries: [],
});

function keyBytesOf(key: Deno.KvKey): number {
  let n = 8;
  for (const part of key) n += typeof part === "string" ? part.length * 3 + 2 : 9;
  return n;
}

/** A stored record: its JSON, or (as first written) the object itself. */
function fromStored<T>(value: string | T): T {
  return typeof value === "string" ? JSON.parse(value) as T : value;
}

/** The entry's envelope as JSON, made once for the store and the sockets. */
function frameOf(entry: LogEntry): string {
  return entry.frame ??= JSON.stringify(entry.envelope);
}

/** An upper bound of a value's size in V8's format, which KV stores: at most two bytes per
 * UTF-16 unit and a few bytes of tags per item. Cheaper than serializing it to find out. */
function valueBytesOf(value: unknown): number {
  switch (typeof value) {
    case "string":
      return value.length * 2 + 6;
    case "object": {
      if (value === null) return 1;
      let n = 8;
      if (Array.isArray(value)) {
        for (const v of value) n += valueBytesOf(v);
        return n;
      }
      for (const k in value) {
        n += k.length * 2 + 6 + valueBytesOf((value as Record<string, unknown>)[k]);
      }
      return n;
    }
    default:
      return 10;
  }
}

const encoder = new TextEncoder();

const dedupBytesOf = (key: string): number => key.length * 2 + 24;

/**
 * How a message is stored: its JSON when that surely fits one KV value (the fast form, and the
 * log's JSON is the sockets' frame), else the object itself. JSON may grow a text sixfold
 * (a control character becomes `\u0001`, 20 KB of them 120 KB), V8 stores an object's strings
 * as they are: at most two bytes a character, so a MAX_MESSAGE_BYTES message always fits.
 */
function storedForm(json: string, value: unknown): unknown {
  return json.length * 2 + 6 <= VALUE_BUDGET ? json : value;
}

/** Refuses, before the model runs, a message no form of which fits one KV value: refusing it
 * later would mean reloading the whole store to undo what the model did. */
function checkFits(what: string, value: unknown): void {
  const bytes = valueBytesOf(value);
  if (bytes > VALUE_BUDGET) {
    throw new MessageTooLargeError(
      `Cannot store ${what}: about ${bytes} bytes stored, Deno KV takes ${VALUE_BUDGET}`,
    );
  }
}

function setWrite(key: Deno.KvKey, value: unknown, expireIn?: number, slot?: string): Write {
  const keyBytes = keyBytesOf(key);
  return { key, value, expireIn, keyBytes, bytes: keyBytes + valueBytesOf(value), slot };
}

function deleteWrite(key: Deno.KvKey): Write {
  const keyBytes = keyBytesOf(key);
  return { key, keyBytes, bytes: keyBytes };
}

function isEmpty(changes: Changes): boolean {
  return changes.contacts.size === 0 && changes.agents.size === 0 && changes.log.length === 0 &&
    changes.history.length === 0 && changes.queued.length === 0 &&
    changes.dequeued.length === 0 && changes.dedup.length === 0 &&
    changes.forgotten.length === 0;
}

const recordsFor = (dedupCount: number): number => Math.ceil(dedupCount / DEDUP_PER_RECORD);

function fits(group: Group, writes: Write[], dedup: Array<[string, number]> = []): boolean {
  let bytes = group.bytes;
  let keyBytes = group.keyBytes;
  for (const w of writes) {
    bytes += w.bytes;
    keyBytes += w.keyBytes;
  }
  for (const [key] of dedup) bytes += dedupBytesOf(key);
  const records = recordsFor(group.dedup.length + dedup.length);
  return group.writes.length + writes.length + records <= MAX_MUTATIONS &&
    bytes + records * 64 <= MAX_BYTES && keyBytes + records * 32 <= MAX_KEY_BYTES;
}

function put(group: Group, w: Write): void {
  const at = w.slot === undefined ? undefined : group.slots.get(w.slot);
  if (at !== undefined) {
    const old = group.writes[at]!;
    group.bytes += w.bytes - old.bytes;
    group.writes[at] = w;
    return;
  }
  if (w.slot !== undefined) group.slots.set(w.slot, group.writes.length);
  group.writes.push(w);
  group.bytes += w.bytes;
  group.keyBytes += w.keyBytes;
}

function putDedup(group: Group, dedup: Array<[string, number]>): void {
  for (const d of dedup) {
    group.dedup.push(d);
    group.bytes += dedupBytesOf(d[0]);
  }
}

/**
 * The commits of one operation. The operation hands it its changes unit by unit (one inbound
 * message, one follower handed to an agent); a unit goes whole into one commit, so when KV's
 * limits force several commits, each one leaves KV in a state the model could have been in.
 */
class CommitPlan {
  readonly groups: Group[] = [newGroup()];

  constructor(
    private readonly model: Model,
    private readonly options: KvStoreOptions,
    private readonly nextStamp: () => number,
    /** Where each contact in memory is in KV's indexes; updated as the plan writes them. */
    private readonly indexed: Map<string, Indexed>,
  ) {}

  /** Adds the model's changes since the last call as one unit. */
  addUnit(changes: Changes): void {
    if (isEmpty(changes)) return;
    // Data before state, deletes last: should a unit too big for one commit fail halfway,
    // what was written first is beyond the stored counters and is ignored, then overwritten.
    const writes: Write[] = [];
    const retain = this.options.retentionMs;
    const logRetain = Math.max(retain, MIN_LOG_RETENTION_MS);
    // Envelopes and history items are stored as their JSON: V8 serializes a string far faster
    // than the object (measured: 22k against 15k messages/s), and the log's JSON is the very
    // frame the sockets get, so it is made once.
    for (const e of changes.log) {
      writes.push(
        setWrite(logKey(e.agentId, e.seq), storedForm(frameOf(e), e.envelope), logRetain),
      );
    }
    for (const h of changes.history) {
      const json = JSON.stringify(h.item);
      writes.push(setWrite(historyKey(h.followerId, h.n), storedForm(json, h.item), retain));
      if (isUnanswered(h.item)) {
        writes.push(setWrite(unansweredKey(h.item.send_time, h.followerId, h.n), 1, retain));
      }
    }
    for (const q of changes.queued) {
      const stored: StoredQueued = { envelope: q.envelope, stamp: this.nextStamp() };
      writes.push(setWrite(queuedKey(q.followerId, q.n), stored));
    }
    for (const id of changes.contacts) {
      const contact = this.model.contacts.get(id);
      if (contact) {
        writes.push(setWrite(contactKey(id), JSON.stringify(contact), undefined, `c:${id}`));
        const moved = indexWrites(id, this.indexed.get(id), indexOf(contact));
        writes.push(...moved.writes);
        this.indexed.set(id, moved.stored);
      }
    }
    for (const id of changes.agents) writes.push(this.agentWrite(id));
    // One key an agent, so a team of any size fits (a long cut splits as a long queue does).
    // Twice the logs' time: KV deletes expired keys late, and a cut kept longer hides nothing
    // new (it covers only seqs given out before the forget).
    for (const { followerId, cut } of changes.cuts) {
      for (const [agentId, seq] of Object.entries(cut)) {
        writes.push(setWrite(forgetCutKey(followerId, agentId), seq, 2 * logRetain));
      }
    }
    for (const d of changes.dequeued) writes.push(deleteWrite(queuedKey(d.followerId, d.n)));
    // Its history was deleted before (forgetFollower): the contact goes last.
    for (const id of changes.forgotten) {
      // Out of the indexes too: no list or sweep names a follower that is gone.
      const gone = indexWrites(id, this.indexed.get(id), { agent: null, at: 0, closesAt: null });
      writes.push(...gone.writes, deleteWrite(contactKey(id)));
      this.indexed.delete(id);
    }
    const dedup = changes.dedup.map((key): [string, number] => [
      key,
      this.model.seen.get(key) ?? 0,
    ]);

    let group = this.groups[this.groups.length - 1]!;
    if (!fits(group, writes, dedup) && (group.writes.length > 0 || group.dedup.length > 0)) {
      this.groups.push(group = newGroup());
    }
    if (fits(group, writes, dedup)) {
      for (const w of writes) put(group, w);
      putDedup(group, dedup);
      group.deliveries.push(...changes.log);
      return;
    }
    // One unit larger than a commit: a follower with a very long queue. Split it, in order.
    for (const w of writes) {
      if (!fits(group, [w])) this.groups.push(group = newGroup());
      put(group, w);
    }
    if (!fits(group, [], dedup)) this.groups.push(group = newGroup());
    putDedup(group, dedup);
    group.deliveries.push(...changes.log);
  }

  /** Moves the window keys of these contacts (in memory) to their true closing times. */
  addWindowMoves(ids: Iterable<string>): void {
    let group = this.groups[this.groups.length - 1]!;
    for (const id of ids) {
      const contact = this.model.contacts.get(id);
      if (!contact) continue;
      const moved = indexWrites(id, this.indexed.get(id), indexOf(contact), true);
      if (moved.writes.length === 0) continue;
      if (!fits(group, moved.writes)) this.groups.push(group = newGroup());
      for (const w of moved.writes) put(group, w);
      this.indexed.set(id, moved.stored);
    }
  }

  /** Writes signatures' first bodies (kv_signed_bodies.ts) with the last commit. */
  addSignedBodies(bodies: SignedBody[]): void {
    let group = this.groups[this.groups.length - 1]!;
    const nowMs = this.options.now();
    for (const body of bodies) {
      const { key, value, expireIn } = signedBodyWrite(body, nowMs);
      const w = setWrite(key, value, expireIn);
      if (!fits(group, [w])) this.groups.push(group = newGroup());
      put(group, w);
    }
  }

  /** Writes the agents' current records (cursors) with the last commit. */
  addAgents(agentIds: Iterable<string>): void {
    let group = this.groups[this.groups.length - 1]!;
    for (const id of agentIds) {
      const w = this.agentWrite(id);
      if (!fits(group, [w])) this.groups.push(group = newGroup());
      put(group, w);
    }
  }

  /** Commits the groups in order; `onCommitted` runs after each one that KV took. */
  async commit(kv: Deno.Kv, onCommitted: (group: Group) => void): Promise<void> {
    for (const group of this.groups) {
      if (group.writes.length === 0 && group.dedup.length === 0) continue;
      const op = kv.atomic();
      for (const w of group.writes) {
        if (w.value === undefined) {
          op.delete(w.key);
        } else {
          op.set(w.key, w.value, w.expireIn === undefined ? {} : { expireIn: w.expireIn });
        }
      }
      for (let i = 0; i < group.dedup.length; i += DEDUP_PER_RECORD) {
        op.set(dedupKey(this.nextStamp()), group.dedup.slice(i, i + DEDUP_PER_RECORD), {
          expireIn: this.options.dedupTtlMs,
        });
      }
      const res = await op.commit();
      if (!res.ok) throw new Error("Cannot commit to Deno KV: the atomic operation was refused");
      onCommitted(group);
    }
  }

  get isEmpty(): boolean {
    const first = this.groups[0]!;
    return this.groups.length === 1 && first.writes.length === 0 && first.dedup.length === 0;
  }

  private agentWrite(id: string): Write {
    const record = this.model.agents.get(id)!;
    return setWrite(agentKey(id), { ...record }, undefined, `a:${id}`);
  }
}

/** The model as KV holds it, and the highest stamp given out (queue order, dedup ids). */
async function loadModel(
  kv: Deno.Kv,
  options: ModelOptions,
): Promise<{ model: Model; stamp: number; indexed: Map<string, Indexed> }> {
  const model = new Model(options);
  const batch = { batchSize: LIST_BATCH };
  await migrate(kv);
  for await (const e of kv.list<AgentRecord>({ prefix: agentsPrefix() }, batch)) {
    model.agents.set(e.value.agent_id, e.value);
  }
  // Messages do not rewrite their agent's record: its seq is the last key of its log.
  for (const record of model.agents.values()) {
    for await (
      const e of kv.list({ prefix: logPrefix(record.agent_id) }, { reverse: true, limit: 1 })
    ) {
      record.seq = Math.max(record.seq, e.key[2] as number);
    }
  }
  const now = options.now();
  let stamp = 0;
  const seen: Array<[string, number]> = [];
  for await (const e of kv.list<Array<[string, number]>>({ prefix: dedupPrefix() }, batch)) {
    stamp = Math.max(stamp, e.key[1] as number);
    seen.push(...e.value);
  }
  model.restoreSeen(seen, now);
  // Followers queue in the order they started waiting; the stamps restore that order. Their
  // contacts stay in memory while they wait: routing hands them to an agent from there.
  const byFollower = new Map<string, { first: number; items: Array<[number, Envelope]> }>();
  const stale: Deno.KvKey[] = [];
  const queued: Array<Deno.KvEntry<StoredQueued>> = [];
  for await (const e of kv.list<StoredQueued>({ prefix: queuePrefix() }, batch)) queued.push(e);
  const waitingIds = [...new Set(queued.map((e) => e.key[1] as string))];
  const indexed = new Map<string, Indexed>();
  for (const contact of (await getContacts(kv, waitingIds)).values()) {
    model.contacts.set(contact.follower_id, contact);
    indexed.set(contact.follower_id, indexOf(contact));
  }
  for (const e of queued) {
    const followerId = e.key[1] as string;
    const n = e.key[2] as number;
    stamp = Math.max(stamp, e.value.stamp);
    const contact = model.contacts.get(followerId);
    // Left by a commit split halfway: the follower was handed over, or never stored.
    if (!contact || contact.agent_id !== null || n > contact.history_seq) {
      stale.push(e.key);
      continue;
    }
    let f = byFollower.get(followerId);
    if (!f) byFollower.set(followerId, f = { first: e.value.stamp, items: [] });
    f.first = Math.min(f.first, e.value.stamp);
    f.items.push([n, e.value.envelope]);
  }
  const followers = [...byFollower].sort((a, b) => a[1].first - b[1].first);
  for (const [followerId, f] of followers) {
    for (const [n, envelope] of f.items) model.restoreQueued({ followerId, n, envelope });
  }
  for (let i = 0; i < stale.length; i += MAX_MUTATIONS) {
    const op = kv.atomic();
    for (const key of stale.slice(i, i + MAX_MUTATIONS)) op.delete(key);
    const res = await op.commit();
    if (!res.ok) throw new Error("Cannot clean the queue in Deno KV: the commit was refused");
  }
  return { model, stamp, indexed };
}

/** A database written before the indexes existed gets them, once, reading one contact at a
 * time (never all of them in memory). */
async function migrate(kv: Deno.Kv): Promise<void> {
  if ((await kv.get<number>(layoutKey())).value === LAYOUT) return;
  let op = kv.atomic();
  let count = 0;
  let total = 0;
  for await (
    const e of kv.list<string | Contact>({ prefix: contactsPrefix() }, { batchSize: LIST_BATCH })
  ) {
    const contact = fromStored(e.value);
    for (const w of indexWrites(contact.follower_id, undefined, indexOf(contact)).writes) {
      op.set(w.key, w.value);
      count++;
    }
    total++;
    if (count >= 500) {
      if (!(await op.commit()).ok) throw new Error("Cannot index contacts in Deno KV");
      op = kv.atomic();
      count = 0;
    }
  }
  op.set(layoutKey(), LAYOUT);
  if (!(await op.commit()).ok) throw new Error("Cannot index contacts in Deno KV");
  if (total > 0) log.info("Indexed {count} contacts in Deno KV", { count: total });
}

/** Opens the store on a Deno KV database (a file, or `:memory:`) and loads its state. */
export async function openKvStore(path: string, options: KvStoreOptions): Promise<Store> {
  const kv = await Deno.openKv(path);
  let loaded;
  let signed;
  try {
    loaded = await loadModel(kv, options);
    signed = await loadKvSignedBodies(kv, options.now());
  } catch (error) {
    kv.close();
    throw error;
  }
  return createKvStore(kv, { ...loaded, signed }, options);
}

function createKvStore(
  kv: Deno.Kv,
  initial: {
    model: Model;
    stamp: number;
    indexed: Map<string, Indexed>;
    signed: SignedBody[];
  },
  options: KvStoreOptions,
): Store {
  const signedBodies = createKvSignedBodies(kv, initial.signed, options.now);
  let model = initial.model;
  let stamp = initial.stamp;
  /** Where the contacts in memory are in KV's indexes (see indexOf). */
  let indexed = initial.indexed;
  const hotContacts = options.hotContacts ?? HOT_CONTACTS;
  /** The model may be ahead of KV after a failed commit: reload before the next operation. */
  let stale = false;
  let closed = false;
  /** Agents whose cursor moved since it was last written. */
  const dirtyCursors = new Set<string>();
  /** Entries committed by an operation that failed later: pushed with the next one. */
  let undelivered: LogEntry[] = [];
  let cursorTimer: ReturnType<typeof setTimeout> | undefined;
  // One operation at a time: the model's order is KV's order, and a failed commit can be
  // rolled back by reloading without losing a concurrent operation's work.
  let tail: Promise<unknown> = Promise.resolve();

  const pruner = setInterval(() => model.pruneSeen(options.now()), PRUNE_INTERVAL_MS);
  Deno.unrefTimer(pruner);

  function serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = tail.then(fn, fn);
    tail = run.catch(() => {});
    return run;
  }

  async function reload(): Promise<void> {
    const old = model;
    const loaded = await loadModel(kv, options);
    // Cursors not yet written are still true: keep them.
    for (const [id, record] of old.agents) {
      const fresh = loaded.model.agents.get(id);
      if (fresh) fresh.cursor = Math.max(fresh.cursor, Math.min(record.cursor, fresh.seq));
    }
    model = loaded.model;
    indexed = loaded.indexed;
    stamp = Math.max(stamp, loaded.stamp);
    stale = false;
  }

  /**
   * Runs `step` on the model and commits what it changed. `step` may commit unit by unit
   * (`plan.addUnit(model.takeChanges())`); what is left becomes the last unit. `carry`: the
   * caller pushes the deliveries, so entries left undelivered by a failure go with them.
   */
  /** Puts the contacts `ids` in memory, read from KV where they are not, as the most recently
   * used. Runs inside an operation, so nothing changes them meanwhile. */
  async function ensureLoaded(m: Model, ids: Iterable<string>): Promise<void> {
    const missing: string[] = [];
    for (const id of new Set(ids)) {
      const contact = m.contacts.get(id);
      if (contact) m.touchContact(contact);
      else missing.push(id);
    }
    if (missing.length === 0) return;
    for (const contact of (await getContacts(kv, missing)).values()) {
      m.touchContact(contact);
      indexed.set(contact.follower_id, indexOf(contact));
    }
  }

  /** Forgets the least recently used contacts past the bound (KV has them all). */
  function evict(m: Model): void {
    if (m.contacts.size <= hotContacts) return;
    for (const contact of m.evictContacts(hotContacts)) indexed.delete(contact.follower_id);
  }

  /** A contact from memory, else as KV has it (not kept: only operations fill memory). */
  async function readContact(followerId: string): Promise<Contact | null> {
    const inMemory = model.contacts.get(followerId);
    if (inMemory) return inMemory;
    return (await getContacts(kv, [followerId])).get(followerId) ?? null;
  }

  function mutate<T>(
    step: (m: Model, plan: CommitPlan) => T,
    carry: boolean,
    /** The contacts `step` reads: put in memory before it runs. */
    needs?: () => Iterable<string> | Promise<Iterable<string>>,
  ): Promise<Applied<T>> {
    if (closed) return Promise.reject(new Error("Cannot write: the store is closed"));
    return serial(async () => {
      if (stale) await reload();
      const m = model;
      if (needs) await ensureLoaded(m, await needs());
      const plan = new CommitPlan(m, options, () => ++stamp, indexed);
      let value: T;
      try {
        value = step(m, plan);
      } catch (error) {
        // A refused command changes nothing; anything else that threw midway is undone.
        if (!isEmpty(m.takeChanges()) || !plan.isEmpty) {
          stale = true;
          await reload().catch(() => {});
        }
        throw error;
      }
      plan.addUnit(m.takeChanges());
      const cursors = [...dirtyCursors].filter((id) => m.agents.has(id));
      plan.addAgents(cursors);
      dirtyCursors.clear();
      const signatures = signedBodies.take();
      plan.addSignedBodies(signatures);
      const committed: LogEntry[] = carry ? undelivered : [];
      try {
        await plan.commit(kv, (group) => committed.push(...group.deliveries));
        signedBodies.settled(signatures, true);
      } catch (error) {
        signedBodies.settled(signatures, false);
        // The model is ahead of KV now: reload it, and reject so WeChat retries.
        if (carry) undelivered = committed;
        else undelivered.push(...committed);
        for (const id of cursors) dirtyCursors.add(id);
        stale = true;
        await reload().catch((e) => log.error("Cannot reload from Deno KV: {error}", { error: e }));
        throw error;
      }
      if (carry) undelivered = [];
      evict(m);
      return { value, deliveries: carry ? committed : [] };
    });
  }

  function scheduleCursorFlush(): void {
    if (cursorTimer !== undefined || closed) return;
    const timer = setTimeout(() => {
      cursorTimer = undefined;
      if (dirtyCursors.size === 0 || closed) return;
      mutate(() => {}, false).catch((error) =>
        log.warn("Cannot write delivery cursors: {error}", { error })
      );
    }, CURSOR_FLUSH_MS);
    Deno.unrefTimer(timer);
    cursorTimer = timer;
  }

  return {
    acceptInbound(items: InboundItem[], presence: Presence) {
      try {
        for (const item of items) checkFits("the message", item.envelope);
      } catch (error) {
        return Promise.reject(error);
      }
      return mutate(
        (m, plan) =>
          items.map((item): InboundOutcome => {
            const outcome = m.inbound(item, presence);
            plan.addUnit(m.takeChanges());
            return outcome;
          }),
        true,
        () => items.map((item) => item.followerId),
      );
    },
    reportLocation(item, place) {
      try {
        checkFits("the message", item.envelope);
      } catch (error) {
        return Promise.reject(error);
      }
      return mutate((m) => m.location(item, place), true, () => [item.followerId]);
    },
    appendToAgents(entries) {
      try {
        for (const e of entries) checkFits("the message", e.envelope);
      } catch (error) {
        return Promise.reject(error);
      }
      return mutate((m, plan) =>
        entries.map((e) => {
          const entry = m.append(e.agentId, e.envelope);
          plan.addUnit(m.takeChanges());
          return entry;
        }), true);
    },
    agentOnline(agentId: string, presence: Presence) {
      if (!stale && !closed && model.waiting.size === 0) {
        // Nobody to hand over: at most a new agent's record changes, and it is written with
        // the cursors, so a reconnect storm of thousands of agents costs a few commits, not
        // one each. An agent lost to a crash before that is made again when it reconnects.
        if (!model.agents.has(agentId)) {
          model.agent(agentId);
          model.takeChanges();
          dirtyCursors.add(agentId);
          scheduleCursorFlush();
        }
        return Promise.resolve({ value: undefined, deliveries: [] });
      }
      return mutate(
        (m, plan) =>
          m.agentOnline(agentId, () => plan.addUnit(m.takeChanges()), presence.onlineAgents()),
        true,
      );
    },
    async readLog(agentId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
      // Entries past the agent's seq can only be left over from a failed commit.
      const last = model.agents.get(agentId)?.seq ?? 0;
      if (afterSeq >= last || limit <= 0) return [];
      const out: LogEntry[] = [];
      const selector = { start: logKey(agentId, afterSeq + 1), end: logKey(agentId, last + 1) };
      for await (
        const e of kv.list<string | Envelope>(selector, {
          limit,
          batchSize: Math.min(limit, LIST_BATCH),
        })
      ) {
        const frame = typeof e.value === "string" ? e.value : undefined;
        out.push({ agentId, seq: e.key[2] as number, envelope: fromStored(e.value), frame });
      }
      return out;
    },
    markDelivered(agentId: string, seq: number): void {
      const record = model.agents.get(agentId);
      if (!record || seq <= record.cursor) return;
      record.cursor = seq;
      dirtyCursors.add(agentId);
      scheduleCursorFlush();
    },
    ...modelReads(() => model),
    getContact: readContact,
    async listContacts(agentId: string, page?: ContactPage): Promise<Contact[]> {
      // The index lists the agent's contacts newest first; only the page is read.
      const limit = page?.limit ?? Infinity;
      const after = page?.after ?? null;
      const selector = after === null
        ? { prefix: servedPrefix(agentId) }
        : { prefix: servedPrefix(agentId), end: servedKey(agentId, after.at, after.id) };
      const out: Contact[] = [];
      let ids: string[] = [];
      const flush = async () => {
        const cold = ids.filter((id) => !model.contacts.has(id));
        const read = cold.length > 0 ? await getContacts(kv, cold) : new Map<string, Contact>();
        for (const id of ids) {
          const c = model.contacts.get(id) ?? read.get(id);
          // An index key a split commit left behind: the contact's record is the truth.
          if (c && (c.agent_id ?? c.last_agent_id) === agentId && out.length < limit) out.push(c);
        }
        ids = [];
      };
      for await (
        const e of kv.list(selector, {
          reverse: true,
          batchSize: Math.min(LIST_BATCH, Number.isFinite(limit) ? limit + 10 : LIST_BATCH),
        })
      ) {
        ids.push(e.key[3] as string);
        if (ids.length >= LIST_BATCH) await flush();
        if (out.length + ids.length >= limit) await flush();
        if (out.length >= limit) break;
      }
      await flush();
      return out;
    },
    async readHistory(followerId: string, before: number | null, limit: number) {
      const contact = await readContact(followerId);
      if (!contact || limit <= 0) return { items: [], nextBefore: null };
      const end = Math.min(before ?? Infinity, contact.history_seq + 1);
      const selector = { prefix: historyPrefix(followerId), end: historyKey(followerId, end) };
      const newestFirst: Array<{ n: number; item: HistoryItem }> = [];
      for await (
        const e of kv.list<string | HistoryItem>(selector, {
          reverse: true,
          limit: limit + 1,
          batchSize: Math.min(limit + 1, LIST_BATCH),
        })
      ) {
        newestFirst.push({ n: e.key[2] as number, item: fromStored(e.value) });
      }
      const more = newestFirst.length > limit;
      const page = newestFirst.slice(0, limit).reverse();
      return { items: page.map((h) => h.item), nextBefore: more ? page[0]!.n : null };
    },
    recordReply(agentId: string, followerId: string, item: HistoryItem) {
      try {
        checkFits("the reply", item);
      } catch (error) {
        return Promise.reject(error);
      }
      return mutate((m) => ({ n: m.reply(agentId, followerId, item) }), true, () => [followerId]);
    },
    async updateReply(
      followerId: string,
      reply: { n: number; id: string },
      status: "sent" | "failed",
      error?: string,
      outcomeOptions?: ReplyOutcomeOptions,
    ) {
      const { n } = reply;
      const key = historyKey(followerId, n);
      // Check-and-set: a concurrent update of the same entry makes us read it again.
      for (let attempt = 0; attempt < 5; attempt++) {
        const entry = await kv.get<string | HistoryItem>(key);
        if (entry.value === null) return false;
        const stored = fromStored(entry.value);
        // Another item by that number: the follower was forgotten and wrote again since.
        if (stored.id !== reply.id) return false;
        if (outcomeOptions?.onlySending && !isUnanswered(stored)) return false;
        const item: HistoryItem = { ...stored, ...replyOutcome(status, error, outcomeOptions) };
        const res = await kv.atomic().check(entry).set(key, JSON.stringify(item), {
          expireIn: options.retentionMs,
        }).delete(unansweredKey(stored.send_time, followerId, n)).commit();
        if (res.ok) return true;
      }
      throw new Error(`Cannot update reply ${followerId}/${n}: it kept changing`);
    },
    async unansweredReplies(before: number, limit: number) {
      const found: UnansweredReply[] = [];
      const end = unansweredPrefix(Math.ceil(before / 1000));
      for await (
        const e of kv.list({ prefix: unansweredPrefix(), end }, { batchSize: LIST_BATCH })
      ) {
        const [, sendTime, followerId, n] = e.key as [string, number, string, number];
        const stored = (await kv.get<string | HistoryItem>(historyKey(followerId, n))).value;
        const item = stored === null ? null : fromStored(stored);
        // Answered, forgotten (the history went first), expired, or the number another
        // conversation's since: the key goes too.
        if (!isUnanswered(item) || item.send_time !== sendTime) await kv.delete(e.key);
        else if (found.push({ followerId, n, item }) >= limit) break;
      }
      return found;
    },
    sweepWindows(now: number) {
      // The index names the followers whose windows close within the warning or have closed.
      let due: string[] = [];
      return mutate(
        (m, plan) => {
          const contacts = due.map((id) => m.contacts.get(id)).filter((c) => c !== undefined);
          const notices = m.sweepWindows(now, contacts);
          plan.addUnit(m.takeChanges());
          // A key that came before its window's true close (see indexWrites) moves there.
          plan.addWindowMoves(due);
          return notices;
        },
        true,
        async () => {
          due = [];
          const end = windowKey(now + WINDOW_WARNING_MS + 1, "");
          for await (
            const e of kv.list({ prefix: windowsPrefix(), end }, { batchSize: LIST_BATCH })
          ) {
            due.push(e.key[2] as string);
          }
          return due;
        },
      );
    },
    async closeWindow(followerId: string, errcode: number, countedIn: number) {
      await mutate((m) => m.closeWindow(followerId, errcode, countedIn), false, () => [followerId]);
    },
    async returnReply(followerId: string, n: number, countedIn: number) {
      return (await mutate(
        (m) => m.returnReply(followerId, n, countedIn),
        false,
        () => [followerId],
      )).value;
    },
    async forgetFollower(followerId: string, notice: Envelope) {
      // History is not in the model: it is deleted first, so a crash halfway leaves the
      // contact, and WeChat's retry of the event finishes the job.
      for (;;) {
        const keys: Deno.KvKey[] = [];
        for await (
          const e of kv.list({ prefix: historyPrefix(followerId) }, { limit: MAX_MUTATIONS })
        ) keys.push(e.key);
        if (keys.length === 0) break;
        const op = kv.atomic();
        for (const key of keys) op.delete(key);
        const res = await op.commit();
        if (!res.ok) throw new Error("Cannot delete history in Deno KV: the commit was refused");
      }
      return await mutate((m) => m.forget(followerId, notice), true, () => [followerId]);
    },
    async forgetCuts(agentId: string, followerIds: readonly string[]) {
      const found = new Map<string, number>();
      // An id too long to be a key was never stored (as getContacts).
      const ids = followerIds.filter((id) => id.length < 600 || encoder.encode(id).length < 1500);
      const calls: Array<Promise<void>> = [];
      for (let i = 0; i < ids.length; i += GET_MANY) {
        const keys = ids.slice(i, i + GET_MANY).map((id) => forgetCutKey(id, agentId));
        calls.push(
          kv.getMany<number[]>(keys).then((entries) => {
            for (const e of entries) if (e.value !== null) found.set(e.key[1] as string, e.value);
          }),
        );
      }
      await Promise.all(calls);
      return found;
    },
    async mediaInHistory(keys: readonly string[]) {
      const named = new Set<string>();
      const collect = keyCollector(keys);
      for await (
        const e of kv.list<string | HistoryItem>({ prefix: historyPrefix() }, {
          batchSize: LIST_BATCH,
        })
      ) {
        collect(typeof e.value === "string" ? e.value : JSON.stringify(e.value), named);
        if (named.size === keys.length) break;
      }
      return named;
    },
    transfer(followerId: string, fromAgent: string, toAgent: string, note?: string) {
      return mutate(
        (m) => m.transfer(followerId, fromAgent, toAgent, note),
        true,
        () => [followerId],
      );
    },
    claim(followerId: string, agentId: string) {
      return mutate((m) => m.claim(agentId, followerId), true, () => [followerId]);
    },
    addNote(agentId: string, followerId: string, text: string) {
      return mutate((m) => ({ n: m.note(agentId, followerId, text) }), true, () => [followerId]);
    },
    listAgents() {
      return Promise.resolve([...model.agents.values()].map((a) => ({ ...a })));
    },
    async listQuickReplies() {
      const out: QuickReply[] = [];
      for await (const e of kv.list<QuickReply>({ prefix: quickRepliesPrefix() })) {
        out.push(e.value);
      }
      return sortQuickReplies(out);
    },
    async putQuickReply(reply: QuickReply) {
      const res = await kv.atomic().set(quickReplyKey(reply.id), reply).commit();
      if (!res.ok) throw new Error(`Cannot save quick reply ${reply.id}`);
    },
    async deleteQuickReply(id: string) {
      const key = quickReplyKey(id);
      const entry = await kv.get(key);
      if (entry.value === null) return false;
      const res = await kv.atomic().check(entry).delete(key).commit();
      return res.ok;
    },
    closeConversation(followerId: string, agentId: string) {
      return mutate((m) => m.close(followerId, agentId), true, () => [followerId]);
    },
    async setCapacity(agentId: string, capacity: number | null) {
      await mutate((m) => m.setCapacity(agentId, capacity), false);
    },
    async renameContact(agentId: string, followerId: string, name: string) {
      await mutate((m) => m.rename(agentId, followerId, name), false, () => [followerId]);
    },
    async setLabels(agentId: string, followerId: string, labels: string[]) {
      await mutate((m) => m.setLabels(agentId, followerId, labels), false, () => [followerId]);
    },
    async markRead(agentId: string, followerId: string) {
      await mutate((m) => m.markRead(agentId, followerId), false, () => [followerId]);
    },
    firstBody: signedBodies.firstBody,
    bodiesKept() {
      // After the commits under way, one of which may carry them; then what none took.
      if (signedBodies.idle) return Promise.resolve();
      return serial(() => signedBodies.writeLeft());
    },
    // A full or read-only disk refuses the commit: the model is reloaded from KV, and the
    // request is answered 503, which WeChat retries.
    unreachable: isDiskRefusal,
    queueDepth(): Promise<number> {
      return Promise.resolve(model.queuedCount);
    },
    async ping(): Promise<void> {
      if (closed) throw new Error("The store is closed");
      if (stale) await serial(async () => stale ? await reload() : undefined);
      await kv.get(agentKey(""));
    },
    async close(): Promise<void> {
      if (closed) return;
      clearInterval(pruner);
      clearTimeout(cursorTimer);
      cursorTimer = undefined;
      // Operations already called finish first; then the cursors are written once more.
      const flush = mutate(() => {}, false);
      closed = true;
      try {
        await flush;
      } catch (error) {
        log.warn("Cannot write delivery cursors at close: {error}", { error });
      }
      await tail;
      kv.close();
    },
  };
}
