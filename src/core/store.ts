// The store's records and its interface: contacts, agents with their message logs and seqs,
// followers waiting for an agent, the conversation history. Deno KV, memory and Redis
// implement the same interface, so the rest of the bridge never knows which one it has.

import type { Place } from "./location.ts";
import type { Envelope, EnvelopeData } from "../protocol/envelope.ts";
import type { ReplyCheck } from "../protocol/window.ts";

/** Where the current WeChat access token lives; in memory by default, Redis when instances
 * share it. */
export interface TokenCache {
  get(): Promise<{ token: string; expiresAt: number } | null>;
  set(entry: { token: string; expiresAt: number }): Promise<void>;
}

/** A follower as the bridge knows it: who serves it, its window, its unread count. */
export interface Contact {
  follower_id: string;
  name: string;
  avatar: string;
  agent_id: string | null;
  last_agent_id: string | null;
  status: "open" | "closed" | "waiting";
  /** ms; 0 before the first inbound message. */
  last_inbound_at: number;
  last_inbound_kind: "message" | "event";
  replies_since_inbound: number;
  /** WeChat answered 45015 or 45047 to a reply: no more until the follower acts again. */
  window_closed_by?: number | null;
  /** The history number of the message or event that opened the current window: replies
   * after it count in it (a refused one is given back only there). Absent on older records. */
  window_opened_n?: number | null;
  /** The last reply given back in the current window (window.ts noteReplyRefused): none at
   * or before it is given back again. Absent until one is. */
  window_returned_n?: number | null;
  /** `agent_id`: who wrote an outgoing one, so a list can say whose reply it was. */
  last_message:
    | { msg_type: string; preview: string; direction: "in" | "out"; agent_id?: string }
    | null;
  last_message_at: number;
  unread: number;
  /** ms when it started waiting for an agent; null when it is not waiting. */
  waiting_since: number | null;
  /** The last history number given out for this follower. */
  history_seq: number;
  subscribed: boolean;
  /** The team's labels on this conversation (VIP, refund, …). */
  labels?: string[];
  /** Which notice about the 48-hour window the agent has had since the last message. */
  window_notice?: "closing" | "expired" | null;
  /** The follower's last reported location (LOCATION); absent until one. */
  location?: Place;
}

/** Where a page of an agent's contacts starts: after this contact, in the list's order (last
 * message time, newest first, then follower id). */
export interface ContactCursor {
  at: number;
  id: string;
}

/** A page of an agent's contacts. */
export interface ContactPage {
  limit: number;
  after?: ContactCursor | null;
}

/** Whether contact `c` comes after `cursor` in a contact list's order. */
export function isAfterCursor(c: Contact, cursor: ContactCursor): boolean {
  return c.last_message_at < cursor.at ||
    (c.last_message_at === cursor.at && c.follower_id < cursor.id);
}

/** An agent the bridge has seen: its log's last seq and its capacity. */
export interface AgentRecord {
  agent_id: string;
  seq: number;
  /** The highest seq written to one of its sockets (what a reconnect without since= skips). */
  cursor: number;
  capacity: number | null;
  load: number;
}

/** A team-wide canned reply; `text` may hold placeholders such as `{name}`. */
export interface QuickReply {
  id: string;
  title: string;
  text: string;
  /** ms of the last change; lists sort by title. */
  updated_at: number;
  updated_by: string;
}

/** One envelope in an agent's log. */
export interface LogEntry {
  agentId: string;
  seq: number;
  envelope: Envelope;
  /** The envelope as JSON, once a store or the switchboard has made it. */
  frame?: string;
}

/** One message of a conversation, as `GET history` returns it. */
export interface HistoryItem extends EnvelopeData {
  /** `note`: an agent's private note, never sent to WeChat. */
  direction: "in" | "out" | "note";
  status?: "sending" | "sent" | "failed";
  error?: string;
  /** A failed reply WeChat took without a clear answer (a timeout, a reset, a 5xx): it may have
   * reached the follower. Absent on every other reply, and on those recorded before it was. */
  unconfirmed?: true;
  agent_id?: string;
}

/** A reply whose outcome was never written: history item `n` of `followerId`. */
export interface UnansweredReply {
  followerId: string;
  n: number;
  item: HistoryItem;
}

/** Whether `item` is a reply still waiting for WeChat's answer. */
export function isUnanswered(item: HistoryItem | null | undefined): item is HistoryItem {
  return item?.direction === "out" && item.status === "sending";
}

/** How a failed reply ended, beyond its error text. */
export interface ReplyOutcomeOptions {
  unconfirmed?: boolean;
  /** Written only while the item is still "sending": a reply left unanswered is settled by
   * whichever sweep comes first (instances sharing Redis start together), its agent told once. */
  onlySending?: boolean;
}

/** The fields a reply's outcome sets on its history item (store.updateReply). */
export function replyOutcome(
  status: "sent" | "failed",
  error?: string,
  options?: ReplyOutcomeOptions,
): Pick<HistoryItem, "status" | "error" | "unconfirmed"> {
  return {
    status,
    ...(error ? { error } : {}),
    ...(status === "failed" && options?.unconfirmed ? { unconfirmed: true as const } : {}),
  };
}

/** A history item with its place in the conversation. */
export interface HistoryEntry {
  followerId: string;
  n: number;
  item: HistoryItem;
}

/** Who is online, as far as routing needs to know. */
export interface Presence {
  isOnline(agentId: string): boolean;
  onlineAgents(): Iterable<string>;
}

/** A follower's message on its way into the store. */
export interface InboundItem {
  followerId: string;
  name: string | null;
  /** ToUserName: when it names a known agent, deliver there and bind (SPEC routing rule 1). */
  to: string;
  envelope: Envelope;
  /** What it does to the reply window: a message or an opening event (follow, scan, menu
   * tap) opens it; other events (location reports, unsubscribe) leave it as it was. */
  kind: "message" | "event" | "none";
  receivedAt: number;
  dedupKey: string | null;
  /** "subscribe" / "unsubscribe" change whether replies can reach the follower. */
  event?: string;
  /** Taken off the follower's media queue: the entry it was (QueuedItem.raw). Stored now, not
   * queued again, only while that entry is still the queue's head, and popped in the same step
   * (MediaQueue). */
  fromQueue?: string;
}

/** What became of a location report: `new` (a new place: kept, in the history, told to the
 * follower's agent if bound), `same` (the place last reported: nothing written). */
export type LocationOutcome = "new" | "same";

/** What became of one inbound item; `queued`: kept behind the follower's media (MediaQueue). */
export type InboundOutcome = "delivered" | "waiting" | "duplicate" | "queued";

/** The head of a follower's media queue. */
export interface QueuedItem {
  item: InboundItem;
  /** Where its media URLs point; null for a message queued behind another's media. */
  publicBase: string | null;
  /** Already stored (a WeChat retry queued behind its first copy): nothing to do but pop it. */
  stored: boolean;
  /** The entry as the queue holds it, which `pop` compares with the head. */
  raw: string;
}

/**
 * A follower's messages waiting behind its media, kept where every instance sees them (Redis):
 * the store queues a follower's later messages here itself while the queue exists, and one
 * instance at a time, holding the lease, stores them in order.
 */
export interface MediaQueue {
  /** Starts or joins the follower's queue with a media message; resolves once it is kept. */
  push(item: InboundItem, publicBase: string): Promise<void>;
  /** The followers with a queue. */
  followers(): Promise<string[]>;
  /** Takes the lease on the follower's queue for `ms`; false if another instance holds it. */
  lease(followerId: string, ms: number): Promise<boolean>;
  /** Extends this instance's lease by `ms`; false if it lapsed or the queue ended. */
  renew(followerId: string, ms: number): Promise<boolean>;
  /** The head of the follower's queue, or null when there is none (and the lease is let go)
   * or another instance holds the lease. */
  head(followerId: string): Promise<QueuedItem | null>;
  /** Removes `head`, found stored already, without storing it: the entries left, or -1 when
   * this instance lost the lease. (A head stored from the queue is popped by that store.) */
  pop(followerId: string, head: QueuedItem): Promise<number>;
  /** Gives the lease up, so another instance takes the queue at its next sweep. */
  release(followerId: string): Promise<void>;
  /** Moves the head, unread, to the follower's aside list (`mediaq_aside:<follower>`) while
   * this instance holds the lease: the entries left, or -1. */
  setAside(followerId: string): Promise<number>;
}

/** The result of a store operation: per-item outcomes and log entries to push to sockets. */
export interface Applied<T = void> {
  value: T;
  deliveries: LogEntry[];
}

/** Why an agent command was refused. */
export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreError";
  }
}

/** A command on a follower another agent serves: it names who does, so the refused agent's
 * program can show the conversation as theirs (as a refused reply or typing does). */
export class ServedByOtherError extends StoreError {
  constructor(readonly followerId: string, readonly servedBy: string) {
    super(`contact ${followerId} is served by ${servedBy}`);
    this.name = "ServedByOtherError";
  }
}

/** A message larger than the store can keep in one record: refused alone, changing nothing. */
export class MessageTooLargeError extends StoreError {
  constructor(message: string) {
    super(message);
    this.name = "MessageTooLargeError";
  }
}

/** The store lost its state (a Redis back empty) and is re-establishing it: nothing is
 * accepted meanwhile, so WeChat retries rather than hearing `success` for a message that no
 * agent would be shown. */
export class StoreStateLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StoreStateLostError";
  }
}

/** A reply WeChat would refuse (window closed, quota used), found in the same step that would
 * have counted it, so concurrent replies cannot all pass a check made before any was counted. */
export class ReplyRefusedError extends Error {
  constructor(readonly check: Extract<ReplyCheck, { ok: false }>) {
    super(check.message);
    this.name = "ReplyRefusedError";
  }
}

/** The bridge's state, behind one interface. Every method commits before it resolves. */
export interface Store {
  /** Routes and stores a batch of follower messages in one commit, in order. */
  acceptInbound(items: InboundItem[], presence: Presence): Promise<Applied<InboundOutcome[]>>;
  /** A LOCATION report: kept on the contact (made, in no list, if new); binds nobody, queues
   * nobody, counts nothing unread. `place` null: coordinates that are not numbers (history only). */
  reportLocation(item: InboundItem, place: Place | null): Promise<Applied<LocationOutcome>>;
  /** Appends envelopes to agents' logs (system notices, agent-to-agent messages, reply echoes). */
  appendToAgents(
    entries: Array<{ agentId: string; envelope: Envelope }>,
  ): Promise<Applied<LogEntry[]>>;
  /** Marks an agent known and online; hands it waiting followers, oldest first. */
  agentOnline(agentId: string, presence: Presence): Promise<Applied>;
  /** The agent's log after `afterSeq`, oldest first, at most `limit`. */
  readLog(agentId: string, afterSeq: number, limit: number): Promise<LogEntry[]>;
  /** Remembers the highest seq written to one of the agent's sockets. */
  markDelivered(agentId: string, seq: number): void;
  getAgent(agentId: string): Promise<AgentRecord | null>;
  isKnownAgent(agentId: string): Promise<boolean>;
  getContact(followerId: string): Promise<Contact | null>;
  /** Contacts an agent serves or last served, most recent first; a page of them with `page`
   * (stores with many followers read only that page). */
  listContacts(agentId: string, page?: ContactPage): Promise<Contact[]>;
  /** Followers waiting for an agent, longest-waiting first. */
  listWaiting(): Promise<Contact[]>;
  /** A follower's conversation, oldest first, before history number `before`. */
  readHistory(
    followerId: string,
    before: number | null,
    limit: number,
  ): Promise<{ items: HistoryItem[]; nextBefore: number | null }>;
  /** Checks WeChat's window and quota, then records an agent's reply in the history and echoes
   * it to the agent's log, as one step; throws ReplyRefusedError when WeChat would refuse it. */
  recordReply(
    agentId: string,
    followerId: string,
    item: HistoryItem,
  ): Promise<Applied<{ n: number }>>;
  /** WeChat answered `errcode` (45015, 45047) to a reply counted in the window the follower's
   * act at `countedIn` (ms) opened: that window, if still the open one, stays closed until the
   * follower acts (window.ts noteWindowClosed). */
  closeWindow(followerId: string, errcode: number, countedIn: number): Promise<void>;
  /** WeChat refused reply `n` and delivered nothing: its count goes back to the window it was
   * counted in (the one the follower's act at `countedIn`, ms, opened), if that is still the
   * open one (window.ts noteReplyRefused). Resolves to the
   * contact's `replies_since_inbound` after, or null when nothing was given back. */
  returnReply(followerId: string, n: number, countedIn: number): Promise<number | null>;
  /** Sets a reply's status after WeChat answered: on history item `reply.n` only while it is
   * that reply (`reply.id`); after a forget the number may be another conversation's.
   * `unconfirmed`: a failed one may have reached the follower (HistoryItem.unconfirmed).
   * Resolves to whether it was written. */
  updateReply(
    followerId: string,
    reply: { n: number; id: string },
    status: "sent" | "failed",
    error?: string,
    options?: ReplyOutcomeOptions,
  ): Promise<boolean>;
  /** Replies recorded "sending" (their `send_time`) before `before` (ms) that no outcome was
   * written for, oldest first, at most `limit`: left so by a bridge that stopped between
   * recording one and WeChat's answer (kill -9, a crash, a stop cut short). */
  unansweredReplies(before: number, limit: number): Promise<UnansweredReply[]>;
  /** Moves a follower; a `note` for the next agent goes into the conversation as a note. */
  transfer(
    followerId: string,
    fromAgent: string,
    toAgent: string,
    note?: string,
  ): Promise<Applied>;
  /** The agent takes a follower nobody serves (waiting or closed); refused when another
   * agent serves it. A reply claims the same way, inside `recordReply`. */
  claim(followerId: string, agentId: string): Promise<Applied>;
  /** Adds a private note to a conversation (never sent to WeChat). */
  addNote(agentId: string, followerId: string, text: string): Promise<Applied<{ n: number }>>;
  /** Every agent the store knows, with its load and capacity. */
  listAgents(): Promise<AgentRecord[]>;
  /** The team's quick replies (快捷回复), in their order. */
  listQuickReplies(): Promise<QuickReply[]>;
  /** Adds or replaces a quick reply by id. */
  putQuickReply(reply: QuickReply): Promise<void>;
  /** Removes a quick reply; false when there was none. */
  deleteQuickReply(id: string): Promise<boolean>;
  closeConversation(followerId: string, agentId: string): Promise<Applied>;
  /** Forgets a follower (it revoked its authorization): contact, history, queued messages;
   * the agent that served it gets `notice`. False when the follower was unknown. */
  forgetFollower(followerId: string, notice: Envelope): Promise<Applied<boolean>>;
  /** For each of these followers forgotten within the log's retention, the agent's last log
   * seq at its last forget (Model.forgetCut): a replay skips its entries at or below it, also
   * once the follower has written again. Followers never forgotten (or long ago) are absent. */
  forgetCuts(agentId: string, followerIds: readonly string[]): Promise<Map<string, number>>;
  /** Which of these media keys some follower's history still names, by a scan of every history
   * (a forget's files are deleted only when none does; forgets are rare, messages are not). */
  mediaInHistory(keys: readonly string[]): Promise<Set<string>>;
  setCapacity(agentId: string, capacity: number | null): Promise<void>;
  markRead(agentId: string, followerId: string): Promise<void>;
  /** The agent's name for a follower (WeChat gives none), shown in lists and envelopes. */
  renameContact(agentId: string, followerId: string, name: string): Promise<void>;
  /** Sets the labels on a follower's conversation; only its agent (or last agent) may. */
  setLabels(agentId: string, followerId: string, labels: string[]): Promise<void>;
  /** Tells agents whose followers' 48-hour windows are closing (within the hour) or closed;
   * each notice once per follower message. Stores that cannot sweep leave it out. */
  sweepWindows?(now: number): Promise<Applied<number>>;
  /** How many messages wait for an agent. */
  queueDepth(): Promise<number>;
  /** Agents with a socket on any instance (stores that share presence); else the hub knows. */
  onlineAgents?(): Promise<string[]>;
  /** Whether `error`, from one of this store's calls, means it cannot take anything now (its
   * server unreachable, its disk full or read-only; nothing was written): the request is
   * answered 503, which WeChat and balancers retry. */
  unreachable?(error: unknown): boolean;
  /** Stores shared by several instances: takes the agent's reply `clientId` to `followerId` for
   * `ttlMs`, true unless another instance took it first (a console sends again what it saw no
   * echo of). */
  claimClientId?(
    agentId: string,
    followerId: string,
    clientId: string,
    ttlMs: number,
  ): Promise<boolean>;
  /** Gives a `clientId` back: its reply was refused before sending and may be sent again. */
  releaseClientId?(agentId: string, followerId: string, clientId: string): Promise<void>;
  /** The agent's last socket on this instance closed (stores that share presence need it). */
  agentOffline?(agentId: string): Promise<void>;
  /** Shared stores call `listener` with entries committed by other instances, in seq order
   * per agent (the hub drops a seq at or below the last it wrote to a socket). */
  onRemoteEntries?(listener: (entries: LogEntry[]) => void): void;
  /** Stores that can lose their state (Redis without persistence) call `listener` each time
   * they find it lost; they re-establish it themselves. */
  onStateLost?(listener: () => void): void;
  /** Shared stores: whether an account report's retry `key` is new to every instance (WeChat's
   * retry may reach another one); remembered `ttlMs`. */
  firstReport?(key: string, ttlMs: number): Promise<boolean>;
  /** Shared stores: whether the follower's auto-reply (AUTO_REPLY_TEXT) is the first within
   * `ttlMs` on every instance; remembered `ttlMs`. A store one process owns leaves it to that
   * process (src/wechat/passive_reply.ts). */
  firstAutoReply?(followerId: string, ttlMs: number): Promise<boolean>;
  /** Shared stores: an agent's upload of media `key` on this instance, kept `ttlMs` for every
   * instance (its reply is written later, and another instance's forget must keep the file). */
  holdMedia?(key: string, ttlMs: number): Promise<void>;
  /** Shared stores: which of these media keys an upload on any instance holds now. */
  mediaHeld?(keys: readonly string[]): Promise<Set<string>>;
  /** Stores that outlive the process (shared, or on disk): the body hash first seen with a
   * plain WeChat `signature` on any instance or run; `hash` when none was, kept `ttlMs`
   * (src/wechat/signed_bodies.ts). */
  firstBody?(signature: string, hash: string, ttlMs: number): Promise<string>;
  /** Stores that keep firstBody() with their next commit: resolves once every hash it took
   * is written, with one or on its own (the callback is answered after it). */
  bodiesKept?(): Promise<void>;
  /** Shared stores share WeChat's access token between instances. */
  readonly tokenCache?: TokenCache;
  /** A follower's messages behind its media, shared by instances; absent: the intake's journal. */
  mediaQueue?: MediaQueue;
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
