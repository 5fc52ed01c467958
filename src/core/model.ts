// The routing state in memory: contacts, agents and their seqs, who waits for an agent. Every
// operation is synchronous and records what it changed, so the memory store keeps it and the
// KV store commits exactly that, atomically, before anyone is told it happened.

import { createSystemEnvelope, type Envelope, replyCodeOf } from "../protocol/envelope.ts";
import { chinaClock, noticeText } from "../protocol/notices.ts";
import {
  checkReplyAllowed,
  MESSAGE_WINDOW_MS,
  noteInbound,
  noteReplyRefused,
  noteWindowClosed,
  WINDOW_WARNING_MS,
  windowStateOf,
} from "../protocol/window.ts";
import { chooseAgent } from "./assignment.ts";
import { type Place, samePlace } from "./location.ts";
import {
  type AgentRecord,
  type Contact,
  type ContactPage,
  type HistoryEntry,
  type HistoryItem,
  type InboundItem,
  type InboundOutcome,
  isAfterCursor,
  type LocationOutcome,
  type LogEntry,
  type Presence,
  type QuickReply,
  ReplyRefusedError,
  ServedByOtherError,
  StoreError,
} from "./store.ts";

/** A message queued for a follower that has no agent yet. */
export interface QueuedMessage {
  followerId: string;
  n: number;
  envelope: Envelope;
}

/** What one batch of operations changed, for the persistent stores to write. */
export interface Changes {
  contacts: Set<string>;
  agents: Set<string>;
  log: LogEntry[];
  history: HistoryEntry[];
  queued: QueuedMessage[];
  dequeued: Array<{ followerId: string; n: number }>;
  dedup: string[];
  /** Followers forgotten (their authorization revoked): contact and history to delete. */
  forgotten: string[];
  /** Each forget's cut (ForgetCut), to keep as long as agents' logs are. */
  cuts: Array<{ followerId: string; cut: ForgetCut }>;
}

/** Every agent's last log seq when a follower was forgotten: what its log holds of that
 * follower at or below it is of the conversation the account was told to forget. Seqs, not
 * times: WeChat's CreateTime is another clock, and a seq is never given out twice. */
export type ForgetCut = Record<string, number>;

/** An empty change set. */
export function emptyChanges(): Changes {
  return {
    contacts: new Set(),
    agents: new Set(),
    log: [],
    history: [],
    queued: [],
    dequeued: [],
    dedup: [],
    forgotten: [],
    cuts: [],
  };
}

/** A readable preview of a message for the contact list. */
export function previewOf(envelope: Envelope): string {
  const msg = envelope.data.msg;
  // A type the bridge does not know has an empty `content`: its sentence says what came.
  const text = typeof msg["content"] === "string" && msg["content"] !== ""
    ? msg["content"]
    : typeof msg["text"] === "string"
    ? msg["text"]
    : typeof msg["title"] === "string"
    ? msg["title"]
    : `[${envelope.data.msg_type}]`;
  return text.length > 80 ? text.slice(0, 80) + "…" : text;
}

/** Options of the model. */
export interface ModelOptions {
  companyId: string;
  now: () => number;
  newId: () => string;
  /** How long a WeChat retry is recognised, ms. */
  dedupTtlMs: number;
}

/** The in-memory routing state; see the file comment. */
export class Model {
  readonly contacts = new Map<string, Contact>();
  readonly agents = new Map<string, AgentRecord>();
  /** Waiting followers in the order they started waiting. */
  readonly waiting = new Map<string, QueuedMessage[]>();
  /** Dedup key -> expiry (ms), in the order they expire while `#seenOrdered` (see pruneSeen). */
  readonly seen = new Map<string, number>();
  #seenLast = -Infinity;
  #seenOrdered = true;
  changes: Changes = emptyChanges();
  #queuedCount = 0;

  constructor(readonly options: ModelOptions) {}

  /** Takes the changes recorded since the last call. */
  takeChanges(): Changes {
    const changes = this.changes;
    this.changes = emptyChanges();
    return changes;
  }

  get queuedCount(): number {
    return this.#queuedCount;
  }

  /** Loads a queued message (stores restoring state). */
  restoreQueued(q: QueuedMessage): void {
    let list = this.waiting.get(q.followerId);
    if (!list) this.waiting.set(q.followerId, list = []);
    list.push(q);
    this.#queuedCount++;
  }

  agent(agentId: string): AgentRecord {
    let record = this.agents.get(agentId);
    if (!record) {
      record = { agent_id: agentId, seq: 0, cursor: 0, capacity: null, load: 0 };
      this.agents.set(agentId, record);
      this.changes.agents.add(agentId);
    }
    return record;
  }

  #contact(followerId: string, now: number): Contact {
    let contact = this.contacts.get(followerId);
    if (!contact) {
      contact = {
        follower_id: followerId,
        name: followerId,
        avatar: "",
        agent_id: null,
        last_agent_id: null,
        status: "waiting",
        last_inbound_at: 0,
        last_inbound_kind: "message",
        replies_since_inbound: 0,
        last_message: null,
        last_message_at: now,
        unread: 0,
        waiting_since: null,
        history_seq: 0,
        subscribed: true,
      };
      this.contacts.set(followerId, contact);
    }
    this.changes.contacts.add(followerId);
    return contact;
  }

  /** Appends to an agent's log, giving the envelope its seq. */
  append(agentId: string, envelope: Envelope): LogEntry {
    const record = this.agent(agentId);
    // Not a change to write: a store that persists the log finds the seq again from its last
    // key, so a message costs no write of its agent's record.
    record.seq++;
    const stamped: Envelope = {
      data: { ...envelope.data, seq: record.seq },
      result: envelope.result,
    };
    const entry = { agentId, seq: record.seq, envelope: stamped };
    this.changes.log.push(entry);
    return entry;
  }

  #system(agentId: string, msg: Record<string, unknown>): LogEntry {
    const now = this.options.now();
    return this.append(
      agentId,
      createSystemEnvelope(msg, {
        id: this.options.newId(),
        companyId: this.options.companyId,
        sendTime: Math.floor(now / 1000),
      }),
    );
  }

  #history(contact: Contact, item: HistoryItem): number {
    contact.history_seq++;
    this.changes.history.push({ followerId: contact.follower_id, n: contact.history_seq, item });
    return contact.history_seq;
  }

  /** Binds a follower to an agent, tells the agent, and hands it what the follower queued. */
  #bind(contact: Contact, agentId: string, event: string, text: string): void {
    // A claim is the team's news. A backlog handed to an agent coming online is not told one
    // by one (O(agents x backlog) notices): consoles reread the waiting list instead.
    const wasUnserved = contact.agent_id === null && event === "claimed";
    if (contact.agent_id && contact.agent_id !== agentId) {
      const old = this.agents.get(contact.agent_id);
      if (old) {
        old.load = Math.max(0, old.load - 1);
        this.changes.agents.add(old.agent_id);
      }
    }
    if (contact.agent_id !== agentId) {
      const record = this.agent(agentId);
      record.load++;
      this.changes.agents.add(agentId);
    }
    contact.agent_id = agentId;
    contact.last_agent_id = agentId;
    contact.status = "open";
    contact.waiting_since = null;
    this.changes.contacts.add(contact.follower_id);
    this.#system(agentId, {
      event,
      follower_id: contact.follower_id,
      follower_name: contact.name,
      text,
    });
    const queued = this.waiting.get(contact.follower_id);
    if (queued) {
      this.waiting.delete(contact.follower_id);
      this.#queuedCount -= queued.length;
      for (const q of queued) {
        this.append(agentId, q.envelope);
        this.changes.dequeued.push({ followerId: q.followerId, n: q.n });
      }
    }
    if (wasUnserved) this.#tellTeam(agentId, claimedNotice(contact, agentId));
  }

  /** Appends a notice to every agent of `among` (default: every known one) but `except`: the
   * team's waiting lists stay live. */
  #tellTeam(
    except: string | null,
    msg: Record<string, unknown>,
    among: Iterable<string> = this.agents.keys(),
  ): void {
    for (const id of [...among]) if (id !== except) this.#system(id, msg);
  }

  /** A follower no agent serves (waiting or closed) becomes `agentId`'s; a follower another
   * agent serves is refused (SPEC "Routing": a reply claims, atomically). */
  #claim(contact: Contact, agentId: string): void {
    if (contact.agent_id === agentId) return;
    if (contact.agent_id !== null) {
      throw new ServedByOtherError(contact.follower_id, contact.agent_id);
    }
    this.#bind(contact, agentId, "claimed", noticeText("claimed", { name: contact.name }));
  }

  /** An agent takes a follower nobody serves; see #claim. */
  claim(agentId: string, followerId: string): void {
    const contact = this.contacts.get(followerId);
    if (!contact) throw new StoreError(`unknown contact ${followerId}`);
    this.#claim(contact, agentId);
  }

  #underCapacity(agentId: string): boolean {
    const record = this.agents.get(agentId);
    return !record || record.capacity === null || record.load < record.capacity;
  }

  /** Whether WeChat sent this item already (its dedup key seen within dedupTtlMs); remembers it. */
  #isRetry(item: InboundItem): boolean {
    if (item.dedupKey === null) return false;
    const now = item.receivedAt;
    const expiry = this.seen.get(item.dedupKey);
    if (expiry !== undefined && expiry > now) return true;
    // Moved to the end, so the map stays in the order keys expire (see pruneSeen).
    if (expiry !== undefined) this.seen.delete(item.dedupKey);
    this.#addSeen(item.dedupKey, now + this.options.dedupTtlMs);
    this.changes.dedup.push(item.dedupKey);
    return false;
  }

  /** Routes one follower message; see SPEC "Routing". */
  inbound(item: InboundItem, presence: Presence): InboundOutcome {
    const now = item.receivedAt;
    if (this.#isRetry(item)) return "duplicate";
    const contact = this.#contact(item.followerId, now);
    if (item.name) contact.name = item.name;
    else if (
      contact.name !== contact.follower_id && item.envelope.data.contact_id === item.followerId
    ) {
      // WeChat sends no names: a name learnt once (demo simulator, a profile) names the rest.
      item.envelope.data.name = contact.name;
    }
    // A new message opens a new window: its notices start again.
    if (item.kind === "message" && contact.window_notice) delete contact.window_notice;
    contact.subscribed = item.event !== "unsubscribe";
    contact.last_message = {
      msg_type: item.envelope.data.msg_type,
      preview: previewOf(item.envelope),
      direction: "in",
    };
    contact.last_message_at = now;
    contact.unread++;
    const n = this.#history(contact, { ...item.envelope.data, direction: "in" });
    if (item.kind !== "none") {
      const state = noteInbound(windowStateOf(contact), { kind: item.kind, at: now, n });
      contact.last_inbound_at = state.lastInboundAt;
      contact.last_inbound_kind = state.lastInboundKind;
      contact.replies_since_inbound = state.repliesSinceInbound;
      contact.window_opened_n = state.openedBy;
      if (state.returnedUpTo === undefined) delete contact.window_returned_n;
      if (state.closedBy === undefined) delete contact.window_closed_by;
    }

    const target = item.to !== "" && this.agents.has(item.to) ? item.to : null;
    if (target !== null && contact.agent_id !== target) {
      this.#bind(contact, target, "assigned", noticeText("assigned", { name: contact.name }));
    } else if (contact.agent_id === null) {
      const chosen = chooseAgent(contact.last_agent_id, presence.onlineAgents(), this.agents);
      if (chosen !== null) {
        this.#bind(contact, chosen, "assigned", noticeText("assigned", { name: contact.name }));
      }
    }
    if (contact.agent_id === null) {
      contact.status = "waiting";
      if (contact.waiting_since === null) {
        contact.waiting_since = now;
        // Only agents here now: one who comes later reads the waiting list.
        this.#tellTeam(null, waitingNotice(contact), presence.onlineAgents());
      }
      let list = this.waiting.get(contact.follower_id);
      if (!list) this.waiting.set(contact.follower_id, list = []);
      const q = {
        followerId: contact.follower_id,
        n: contact.history_seq,
        envelope: item.envelope,
      };
      list.push(q);
      this.#queuedCount++;
      this.changes.queued.push(q);
      return "waiting";
    }
    this.append(contact.agent_id, item.envelope);
    return "delivered";
  }

  /** A follower's location report (LOCATION, not a follower writing): the contact keeps it; a
   * new place goes into its history and to its agent, if bound. Nobody is bound or queued for
   * it and nothing is unread; the place last reported again changes nothing. A report with no
   * place (coordinates that are not numbers) is kept in the history, the contact's place left. */
  location(item: InboundItem, place: Place | null): LocationOutcome {
    // A retry that comes after a newer report must not take the contact back to the old place.
    if (this.#isRetry(item)) return "same";
    let contact = this.contacts.get(item.followerId);
    if (!contact) {
      // Reported on entering the chat, before any message: kept for the conversation to come,
      // in no list (no agent, not waiting) until the follower writes.
      contact = this.#contact(item.followerId, item.receivedAt);
      contact.status = "closed";
    } else if (place && contact.location && samePlace(contact.location, place)) return "same";
    if (place) contact.location = { ...place };
    this.changes.contacts.add(contact.follower_id);
    this.#history(contact, { ...item.envelope.data, direction: "in" });
    if (contact.agent_id !== null) this.append(contact.agent_id, item.envelope);
    return "new";
  }

  /** An agent came online: hand it waiting followers, longest-waiting first, up to capacity.
   * `afterBind` runs after each follower is handed over: a store whose commits have size
   * limits (Deno KV) commits a long backlog in pieces that each hold whole followers. */
  agentOnline(agentId: string, afterBind?: () => void, among?: Iterable<string>): void {
    this.agent(agentId);
    const taken: string[] = [];
    for (const followerId of [...this.waiting.keys()]) {
      if (!this.#underCapacity(agentId)) break;
      const contact = this.contacts.get(followerId);
      if (!contact) continue;
      this.#bind(
        contact,
        agentId,
        "assigned",
        noticeText("assignedFromWaiting", { name: contact.name }),
      );
      taken.push(followerId);
      afterBind?.();
    }
    // One notice for the whole backlog, to the agents here: their waiting lists stay live
    // without a notice per follower per agent.
    if (taken.length > 0 && among) {
      this.#tellTeam(agentId, waitingTakenNotice(agentId, taken), among);
    }
  }

  /** Records an agent's reply, if WeChat's window and quota allow one more (checked here, in
   * the step that counts it: a check before it let 10 concurrent replies through, not 5). */
  reply(agentId: string, followerId: string, item: HistoryItem): number {
    const contact = this.contacts.get(followerId);
    if (!contact) throw new StoreError(`unknown contact ${followerId}`);
    // Another agent's follower is refused, and what WeChat would refuse, before anything
    // changes; only then does the reply claim a follower nobody serves.
    if (contact.agent_id !== null && contact.agent_id !== agentId) {
      throw new ServedByOtherError(followerId, contact.agent_id);
    }
    const check = checkReplyAllowed(windowStateOf(contact), this.options.now());
    if (!check.ok) throw new ReplyRefusedError(check);
    this.#claim(contact, agentId);
    this.changes.contacts.add(followerId);
    contact.replies_since_inbound++;
    contact.unread = 0;
    contact.last_message = {
      msg_type: item.msg_type,
      preview: previewOf({ data: item, result: { code: 0, message: "" } }),
      direction: "out",
      agent_id: agentId,
    };
    contact.last_message_at = this.options.now();
    const n = this.#history(contact, item);
    this.append(agentId, {
      data: item,
      result: { code: replyCodeOf(item.msg_type), message: "common" },
    });
    return n;
  }

  /** WeChat refused a reply counted in the window opened at `countedIn` with `errcode` (45015,
   * 45047): that window, if still the open one, is closed until the follower acts again. */
  closeWindow(followerId: string, errcode: number, countedIn: number): void {
    const contact = this.contacts.get(followerId);
    const state = contact && windowStateOf(contact);
    if (!contact || !state) return;
    const after = noteWindowClosed(state, errcode, countedIn);
    if (after === state) return;
    contact.window_closed_by = after.closedBy;
    this.changes.contacts.add(followerId);
  }

  /** WeChat refused reply `n` without delivering it (returnsReply): its count is given back
   * if it was counted in the window still open. Returns the count after, or null when nothing
   * was given back. */
  returnReply(followerId: string, n: number, countedIn: number): number | null {
    const contact = this.contacts.get(followerId);
    const state = contact && windowStateOf(contact);
    if (!contact || !state) return null;
    const after = noteReplyRefused(state, n, countedIn);
    if (after === state) return null;
    contact.replies_since_inbound = after.repliesSinceInbound;
    contact.window_returned_n = after.returnedUpTo;
    this.changes.contacts.add(followerId);
    return after.repliesSinceInbound;
  }

  /** Moves a follower from one agent to another; both are told. */
  transfer(followerId: string, fromAgent: string, toAgent: string, note = ""): void {
    const contact = this.contacts.get(followerId);
    if (!contact) throw new StoreError(`unknown contact ${followerId}`);
    if (contact.agent_id !== fromAgent) {
      throw new StoreError(`contact ${followerId} is not served by ${fromAgent}`);
    }
    if (!this.agents.has(toAgent)) throw new StoreError(`unknown agent ${toAgent}`);
    if (toAgent === fromAgent) throw new StoreError("cannot transfer a contact to yourself");
    this.#bind(
      contact,
      toAgent,
      "transferred_in",
      noticeText("transferredIn", { name: contact.name, from: fromAgent }),
    );
    if (note !== "") this.#handoverNote(toAgent, fromAgent, contact, note);
    this.#system(fromAgent, {
      event: "transferred_out",
      follower_id: followerId,
      follower_name: contact.name,
      to: toAgent,
      text: noticeText("transferredOut", { name: contact.name, to: toAgent }),
    });
  }

  /** A private note in the conversation (never sent to WeChat): kept in its history, shown to
   * the agent's sockets; returns its history number. */
  note(agentId: string, followerId: string, text: string): number {
    const contact = this.contacts.get(followerId);
    if (!contact) throw new StoreError(`unknown contact ${followerId}`);
    if (contact.agent_id !== agentId && contact.last_agent_id !== agentId) {
      throw new StoreError(`contact ${followerId} is not served by ${agentId}`);
    }
    return this.#note(contact, agentId, text, [agentId]);
  }

  #note(contact: Contact, author: string, text: string, to: string[]): number {
    const now = this.options.now();
    const item = noteItem({
      id: this.options.newId(),
      author,
      followerId: contact.follower_id,
      companyId: this.options.companyId,
      sendTime: Math.floor(now / 1000),
      text,
    });
    const n = this.#history(contact, item);
    for (const id of to) this.append(id, { data: item, result: { code: 102, message: "note" } });
    return n;
  }

  #handoverNote(toAgent: string, fromAgent: string, contact: Contact, note: string): void {
    this.#note(contact, fromAgent, note, [toAgent, fromAgent]);
  }

  /** Forgets a follower: its contact and what it queued go, its agent gets `notice`. WeChat
   * asks this when a user revokes its authorization (user_authorization_revoke). */
  forget(followerId: string, notice: Envelope): boolean {
    const contact = this.contacts.get(followerId);
    if (!contact) return false;
    if (contact.agent_id !== null) {
      const record = this.agent(contact.agent_id);
      record.load = Math.max(0, record.load - 1);
      this.changes.agents.add(contact.agent_id);
    }
    const queued = this.waiting.get(followerId);
    if (queued) {
      this.waiting.delete(followerId);
      this.#queuedCount -= queued.length;
      for (const q of queued) this.changes.dequeued.push({ followerId, n: q.n });
    }
    this.contacts.delete(followerId);
    this.changes.contacts.delete(followerId);
    this.changes.forgotten.push(followerId);
    // Before the notice is logged: the notice is the system's, and is replayed.
    this.changes.cuts.push({ followerId, cut: this.forgetCut() });
    const agentId = contact.agent_id ?? contact.last_agent_id;
    if (agentId !== null) this.append(agentId, notice);
    return true;
  }

  /** Every agent's log as far as it goes now (a forget's cut); agents with none are left out. */
  forgetCut(): ForgetCut {
    const cut: ForgetCut = {};
    for (const record of this.agents.values()) {
      if (record.seq > 0) cut[record.agent_id] = record.seq;
    }
    return cut;
  }

  /** Ends a conversation: the follower's next message is assigned anew. */
  close(followerId: string, agentId: string): void {
    const contact = this.contacts.get(followerId);
    if (!contact) throw new StoreError(`unknown contact ${followerId}`);
    if (contact.agent_id !== agentId) {
      throw new StoreError(`contact ${followerId} is not served by ${agentId}`);
    }
    const record = this.agent(agentId);
    record.load = Math.max(0, record.load - 1);
    this.changes.agents.add(agentId);
    contact.agent_id = null;
    contact.status = "closed";
    contact.unread = 0;
    this.changes.contacts.add(followerId);
    this.#system(agentId, {
      event: "closed",
      follower_id: followerId,
      follower_name: contact.name,
      text: noticeText("closed", { name: contact.name }),
    });
  }

  setCapacity(agentId: string, capacity: number | null): void {
    this.agent(agentId).capacity = capacity;
    this.changes.agents.add(agentId);
  }

  /** Appends window notices that are due (see Store.sweepWindows) among `contacts` (a store
   * that keeps only some contacts in memory passes the ones its index says may be due);
   * returns how many. */
  sweepWindows(now: number, contacts: Iterable<Contact> = this.contacts.values()): number {
    let notices = 0;
    for (const contact of contacts) {
      const agentId = contact.agent_id;
      // Event windows last a minute: a notice would arrive after it closed.
      if (agentId === null || contact.last_inbound_at === 0) continue;
      if (contact.last_inbound_kind !== "message") continue;
      const closesAt = contact.last_inbound_at + MESSAGE_WINDOW_MS;
      const due = now >= closesAt
        ? "expired"
        : now >= closesAt - WINDOW_WARNING_MS
        ? "closing"
        : null;
      if (due === null || contact.window_notice === due) continue;
      contact.window_notice = due;
      this.changes.contacts.add(contact.follower_id);
      this.#system(agentId, {
        event: due === "expired" ? "window_expired" : "window_closing",
        follower_id: contact.follower_id,
        follower_name: contact.name,
        closes_at: Math.floor(closesAt / 1000),
        text: due === "expired"
          ? noticeText("windowExpired", { name: contact.name })
          : noticeText("windowClosing", { name: contact.name, time: chinaClock(closesAt) }),
      });
      notices++;
    }
    return notices;
  }

  /** Names a follower; only its agent (or last agent) may. */
  rename(agentId: string, followerId: string, name: string): void {
    const contact = this.contacts.get(followerId);
    if (!contact) throw new StoreError(`unknown contact ${followerId}`);
    if (contact.agent_id !== agentId && contact.last_agent_id !== agentId) {
      throw new StoreError(`contact ${followerId} is not served by ${agentId}`);
    }
    contact.name = name;
    this.changes.contacts.add(followerId);
  }

  /** Labels a follower's conversation; as rename, only its agent (or last agent) may. */
  setLabels(agentId: string, followerId: string, labels: string[]): void {
    const contact = this.contacts.get(followerId);
    if (!contact) throw new StoreError(`unknown contact ${followerId}`);
    if (contact.agent_id !== agentId && contact.last_agent_id !== agentId) {
      throw new StoreError(`contact ${followerId} is not served by ${agentId}`);
    }
    if (labels.length === 0) delete contact.labels;
    else contact.labels = [...labels];
    this.changes.contacts.add(followerId);
  }

  markRead(agentId: string, followerId: string): void {
    const contact = this.contacts.get(followerId);
    if (!contact || (contact.agent_id !== agentId && contact.last_agent_id !== agentId)) return;
    if (contact.unread === 0) return;
    contact.unread = 0;
    this.changes.contacts.add(followerId);
  }

  /** Contacts an agent serves or last served, most recent first (then by id), or one page. */
  contactsOf(agentId: string, page?: ContactPage): Contact[] {
    const out: Contact[] = [];
    const after = page?.after ?? null;
    for (const c of this.contacts.values()) {
      if ((c.agent_id ?? c.last_agent_id) !== agentId) continue;
      if (after === null || isAfterCursor(c, after)) out.push(c);
    }
    out.sort((a, b) =>
      b.last_message_at - a.last_message_at ||
      (a.follower_id < b.follower_id ? 1 : a.follower_id > b.follower_id ? -1 : 0)
    );
    return page === undefined ? out : out.slice(0, page.limit);
  }

  /** Marks a contact as just used, or adds one a store read: the last that eviction takes. */
  touchContact(contact: Contact): void {
    this.contacts.delete(contact.follower_id);
    this.contacts.set(contact.follower_id, contact);
  }

  /** Forgets the least recently used contacts beyond `max`, for stores that read the others
   * back on demand; never a waiting follower's, which routing hands over from memory. Returns
   * the ids forgotten. Call it only with no change pending. */
  evictContacts(max: number): Contact[] {
    const gone: Contact[] = [];
    for (const [id, contact] of this.contacts) {
      if (this.contacts.size <= max) break;
      if (this.waiting.has(id)) continue;
      this.contacts.delete(id);
      gone.push(contact);
    }
    return gone;
  }

  waitingContacts(): Contact[] {
    const out: Contact[] = [];
    for (const id of this.waiting.keys()) {
      const c = this.contacts.get(id);
      if (c) out.push(c);
    }
    return out;
  }

  /**
   * Forgets dedup keys past their time, so the seen-set stays bounded. Keys are added in the
   * order they expire (one TTL for all), so this stops at the first one still live: a busy hour
   * holds millions, and walking them all each minute stalled every request for that long. A
   * key that expires before one added earlier (the clock was set back) breaks that order: the
   * next prune walks them all once and puts the live ones back in order.
   */
  pruneSeen(now: number): void {
    if (!this.#seenOrdered) {
      const live = [...this.seen].filter(([, expiry]) => expiry > now);
      this.seen.clear();
      this.#seenLast = -Infinity;
      this.#seenOrdered = true;
      this.restoreSeen(live, now);
      return;
    }
    for (const [key, expiry] of this.seen) {
      if (expiry > now) break;
      this.seen.delete(key);
    }
  }

  /**
   * Adds dedup keys read back from a store, in the order they expire (see pruneSeen). None is
   * held past one TTL from `now`: keys written under a longer TTL would hold up every key after
   * them.
   */
  restoreSeen(keys: Array<[string, number]>, now: number): void {
    const latest = now + this.options.dedupTtlMs;
    keys.sort((a, b) => a[1] - b[1]);
    for (const [key, expiry] of keys) {
      if (expiry > now && !this.seen.has(key)) this.#addSeen(key, Math.min(expiry, latest));
    }
  }

  #addSeen(key: string, expiry: number): void {
    if (expiry < this.#seenLast) this.#seenOrdered = false;
    else this.#seenLast = expiry;
    this.seen.set(key, expiry);
  }
}

/** Quick replies as every store lists them: by title, then id. */
export function sortQuickReplies(list: QuickReply[]): QuickReply[] {
  return list.sort((a, b) => a.title.localeCompare(b.title) || (a.id < b.id ? -1 : 1));
}

/** A private note as a history item: msg_type `note`, direction `note`. */
export function noteItem(o: {
  id: string;
  author: string;
  followerId: string;
  companyId: string;
  sendTime: number;
  text: string;
}): HistoryItem {
  return {
    id: o.id,
    name: o.author,
    avatar: "",
    msg_type: "note",
    contact_id: o.followerId,
    company_id: o.companyId,
    send_time: o.sendTime,
    msg: { content: o.text },
    direction: "note",
    agent_id: o.author,
  };
}

/** The 102 every other agent gets when a follower leaves the waiting list or is claimed. */
export function claimedNotice(contact: Contact, agentId: string): Record<string, unknown> {
  return {
    event: "claimed",
    follower_id: contact.follower_id,
    follower_name: contact.name,
    agent_id: agentId,
    text: noticeText("claimedBy", { name: contact.name, agent: agentId }),
  };
}

/** The 102 the other agents online get when one coming online took waiting followers. */
export function waitingTakenNotice(
  agentId: string,
  followerIds: string[],
): Record<string, unknown> {
  return {
    event: "waiting_taken",
    agent_id: agentId,
    follower_ids: followerIds,
    text: noticeText("waitingTaken", { agent: agentId, count: String(followerIds.length) }),
  };
}

/** The 102 every agent gets when a follower starts waiting, with what it asked. */
export function waitingNotice(contact: Contact): Record<string, unknown> {
  return {
    event: "waiting",
    follower_id: contact.follower_id,
    follower_name: contact.name,
    preview: contact.last_message?.preview ?? "",
    since: Math.floor((contact.waiting_since ?? contact.last_message_at) / 1000),
    text: noticeText("waiting", { name: contact.name }),
  };
}

/** The reads both single-process stores answer from their model (`model()`: it may be
 * replaced, as the KV store does when it reloads after a failed commit). */
export function modelReads(model: () => Model) {
  return {
    getAgent: (agentId: string) => Promise.resolve(model().agents.get(agentId) ?? null),
    isKnownAgent: (agentId: string) => Promise.resolve(model().agents.has(agentId)),
    getContact: (followerId: string) => Promise.resolve(model().contacts.get(followerId) ?? null),
    listContacts: (agentId: string, page?: ContactPage) =>
      Promise.resolve(model().contactsOf(agentId, page)),
    listWaiting: () => Promise.resolve(model().waitingContacts()),
  };
}
