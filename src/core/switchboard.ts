// The message path: follower messages are grouped per tick into one store commit, then pushed
// to the sockets of the agents they were routed to. Agents coming online get their backlog
// (everything after `since=`, or what was queued while they were away) before live frames.

import { setImmediate } from "node:timers";
import { type Envelope, SYSTEM_CONTACT } from "../protocol/envelope.ts";
import type { AgentConnection, AgentSocket, Hub } from "./hub.ts";
import type { Applied, InboundItem, InboundOutcome, LogEntry, Store } from "./store.ts";

/** Hooks for metrics. */
export interface SwitchboardObserver {
  delivered?(entry: LogEntry, sockets: number): void;
  /** A follower message is committed and pushed, `ms` after it was accepted. */
  routed?(outcome: InboundOutcome, ms: number): void;
}

/** Options of the switchboard. */
export interface SwitchboardOptions {
  store: Store;
  hub: Hub;
  /** Most items in one commit; Deno KV takes at most 1000 mutations in one. */
  maxBatch?: number;
  observer?: SwitchboardObserver;
}

interface Pending {
  item: InboundItem;
  at: number;
  resolve(outcome: InboundOutcome): void;
  reject(error: unknown): void;
}

const REPLAY_PAGE = 500;
/** Unsent bytes above which a replay waits for the reader. */
const REPLAY_HIGH_WATER = 1024 * 1024;
/** How long a replay waits for a reader that does not read. */
const REPLAY_PATIENCE_MS = 30_000;

/** Resolves when the socket's unsent data falls under the high-water mark, or it gives up. */
async function drained(socket: AgentSocket): Promise<void> {
  const deadline = performance.now() + REPLAY_PATIENCE_MS;
  while (socket.bufferedAmount > REPLAY_HIGH_WATER / 2 && socket.readyState === 1) {
    if (performance.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A follower a logged envelope is about, and whether as a system notice. */
interface Concern {
  followerId: string;
  /** A 102 naming it in `msg.follower_id` (its events, assignments, window notices), not its
   * conversation (its message, a reply or note to it, or a reply's `reply_sent`). */
  notice: boolean;
}

/**
 * The follower a logged envelope is about, or null for agents' messages and the system's
 * notices about no follower.
 */
function followerOf(entry: LogEntry): Concern | null {
  const data = entry.envelope.data;
  const followerId = data.contact_id;
  if (followerId === SYSTEM_CONTACT) {
    const about = data.msg?.["follower_id"];
    if (typeof about === "string" && about !== "") return { followerId: about, notice: true };
    // A reply's `reply_sent` names the follower as `msg.contact_id`: part of the conversation.
    const reply = data.msg?.["contact_id"];
    return typeof reply === "string" && reply !== "" ? { followerId: reply, notice: false } : null;
  }
  // A push to the agent itself (the seed's JSON test, no `from`) names the agent.
  if (
    typeof followerId !== "string" || followerId === entry.agentId ||
    (data.from !== undefined && data.from !== null)
  ) {
    return null;
  }
  return { followerId, notice: false };
}

/** The followers a logged 102 lists in `msg.follower_ids` (`waiting_taken`); none for others. */
function listedIn(entry: LogEntry): string[] {
  const data = entry.envelope.data;
  const ids = data.contact_id === SYSTEM_CONTACT ? data.msg?.["follower_ids"] : undefined;
  return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === "string") : [];
}

/** What the replay knows of a follower: deleted now, and its last forget's cut in this log. */
interface Forgotten {
  gone: boolean;
  /** The agent's last seq at the follower's last forget; 0 when none is kept. */
  cut: number;
}

/**
 * Whether the replay leaves `entry` out (user_authorization_revoke): agent logs outlive a forget
 * by up to 48 h, and a `since=` replay must not hand out what the account was told to forget,
 * also once the follower has written again (a new contact). Whatever came before the forget
 * goes, its notices too (a location it reported); of a follower deleted now, its whole
 * conversation (a late reply outcome comes after the cut); the forget's own notice, after the
 * cut, stays.
 */
function isForgotten(entry: LogEntry, concern: Concern, known: Forgotten): boolean {
  return entry.seq <= known.cut || (known.gone && !concern.notice);
}

/**
 * `entry` as the replay sends it: its `follower_ids` (a `waiting_taken`) without the followers
 * it leaves out as isForgotten does, the others being still news; null when it listed only
 * those. Its text, a count, names nobody.
 */
function withoutForgotten(entry: LogEntry, known: Map<string, Forgotten>): LogEntry | null {
  const listed = listedIn(entry);
  const kept = listed.filter((followerId) =>
    !isForgotten(entry, { followerId, notice: true }, known.get(followerId)!)
  );
  if (kept.length === listed.length) return entry;
  if (kept.length === 0) return null;
  const { data, result } = entry.envelope;
  const msg = { ...data.msg, follower_ids: kept };
  return { agentId: entry.agentId, seq: entry.seq, envelope: { data: { ...data, msg }, result } };
}

/** `entry` as a replay sends it, or null when it leaves it out (isForgotten). */
function replayed(entry: LogEntry, known: Map<string, Forgotten>): LogEntry | null {
  const concern = followerOf(entry);
  if (concern === null) return withoutForgotten(entry, known);
  return isForgotten(entry, concern, known.get(concern.followerId)!) ? null : entry;
}

/**
 * Looks up, at once, the followers of `page` not yet in `known`: whether each is deleted now,
 * and its last forget's cut in this agent's log. At once, so that a shared store answers a
 * page's lookups in one round trip, not one a follower.
 */
async function noteForgotten(
  store: Store,
  agentId: string,
  page: LogEntry[],
  known: Map<string, Forgotten>,
): Promise<void> {
  const unknown = new Set<string>();
  for (const entry of page) {
    const concern = followerOf(entry);
    for (const id of concern === null ? listedIn(entry) : [concern.followerId]) {
      if (!known.has(id)) unknown.add(id);
    }
  }
  if (unknown.size === 0) return;
  const ids = [...unknown];
  const [contacts, cuts] = await Promise.all([
    Promise.all(ids.map((id) => store.getContact(id))),
    store.forgetCuts(agentId, ids),
  ]);
  ids.forEach((id, i) => known.set(id, { gone: contacts[i] === null, cut: cuts.get(id) ?? 0 }));
}

/** Creates the message path over a store and a hub. */
export function createSwitchboard(options: SwitchboardOptions) {
  const { store, hub } = options;
  const maxBatch = options.maxBatch ?? 100;
  let queue: Pending[] = [];
  let flushing = false;
  let scheduled = false;
  const presence = {
    isOnline: (id: string) => hub.isOnline(id),
    onlineAgents: () => hub.onlineAgents(),
  };

  /** Pushes committed log entries to their agents' sockets. */
  function push(entries: LogEntry[]): void {
    for (const entry of entries) {
      const frame = entry.frame ??= JSON.stringify(entry.envelope);
      // The cursor moves as frames are written (the hub tells: readGapsWith below).
      const sockets = hub.deliver(entry.agentId, entry.seq, frame);
      options.observer?.delivered?.(entry, sockets);
    }
  }

  function settle(batch: Pending[], applied: Applied<InboundOutcome[]>): void {
    push(applied.deliveries);
    const done = performance.now();
    batch.forEach((p, i) => {
      const outcome = applied.value[i]!;
      options.observer?.routed?.(outcome, done - p.at);
      p.resolve(outcome);
    });
  }

  async function flush(): Promise<void> {
    scheduled = false;
    if (flushing) return;
    flushing = true;
    try {
      while (queue.length > 0) {
        const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
        queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
        try {
          settle(batch, await store.acceptInbound(batch.map((p) => p.item), presence));
        } catch (error) {
          if (batch.length === 1) {
            batch[0]!.reject(error);
            continue;
          }
          // One message the store cannot take must not sink the others it was grouped with
          // (WeChat would retry them together, and fail together, until it gave up): each is
          // tried alone, and only the one that fails is refused.
          for (const p of batch) {
            try {
              settle([p], await store.acceptInbound([p.item], presence));
            } catch (alone) {
              p.reject(alone);
            }
          }
        }
      }
    } finally {
      flushing = false;
    }
  }

  // Entries committed by other instances reach the agents connected here, counted alike.
  store.onRemoteEntries?.(push);

  // Entries a socket was not given live (another instance's, whose push never came) are read
  // from the log as a replay reads them; what is written live moves the agent's cursor.
  hub.readGapsWith(async (agentId, after, upTo) => {
    const frames: Array<[number, string]> = [];
    const known = new Map<string, Forgotten>();
    for (;;) {
      const page = await store.readLog(agentId, after, REPLAY_PAGE);
      await noteForgotten(store, agentId, page, known);
      for (const entry of page) {
        if (entry.seq > upTo) return frames;
        const shown = replayed(entry, known);
        if (shown !== null) {
          frames.push([entry.seq, shown.frame ??= JSON.stringify(shown.envelope)]);
        }
        after = entry.seq;
      }
      if (page.length < REPLAY_PAGE) return frames;
    }
  }, (agentId, seq) => store.markDelivered(agentId, seq));

  return {
    presence,
    push,

    /** Stores and routes a follower message; resolves once it is committed. */
    accept(item: InboundItem): Promise<InboundOutcome> {
      return new Promise((resolve, reject) => {
        queue.push({ item, at: performance.now(), resolve, reject });
        if (!scheduled && !flushing) {
          scheduled = true;
          // One turn of the event loop lets the requests that arrived together share a commit;
          // setImmediate takes microseconds where setTimeout(0) waits about 2 ms.
          setImmediate(flush);
        }
      });
    },

    /** Applies a store operation's result: pushes what it logged. */
    async apply<T>(op: Promise<Applied<T>>): Promise<T> {
      const applied = await op;
      push(applied.deliveries);
      return applied.value;
    },

    /** Whether the follower a logged entry is about was forgotten since it was logged: the
     * replay's rule (at or below that follower's last forget's cut), for what comes of the
     * entry later (a reply's outcome, which WeChat gives seconds after). */
    async wasForgotten(entry: LogEntry): Promise<boolean> {
      const concern = followerOf(entry);
      if (concern === null) return false;
      const cuts = await store.forgetCuts(entry.agentId, [concern.followerId]);
      return entry.seq <= (cuts.get(concern.followerId) ?? 0);
    },

    /** Appends envelopes to agents' logs and pushes them. */
    async sendToAgents(
      entries: Array<{ agentId: string; envelope: Envelope }>,
    ): Promise<LogEntry[]> {
      const applied = await store.appendToAgents(entries);
      push(applied.deliveries);
      return applied.value;
    },

    /** Tells the agent's sockets here an envelope without logging it (hub.tell): never
     * replayed, and nothing the store could deliver a second time later. */
    tell(agentId: string, envelope: Envelope): number {
      return hub.tell(agentId, envelope);
    },

    /** Registers a socket, replays what the agent missed, then lets live frames through. */
    async connect(
      agentId: string,
      socket: AgentSocket,
      since: number | null,
    ): Promise<AgentConnection> {
      const conn = hub.add(agentId, socket);
      try {
        await ready(conn);
      } catch (error) {
        // An agent the store could not bring online must not count as online here.
        hub.remove(conn);
        throw error;
      }
      return conn;

      async function ready(conn: AgentConnection): Promise<void> {
        // What the replay read up to: live frames above it wait for the seqs between.
        let readTo = 0;
        try {
          const applied = await store.agentOnline(agentId, presence);
          // Followers handed over on coming online reach the agent's other sockets now and this
          // one through its backlog; the hub drops whatever the replay already wrote.
          push(applied.deliveries);
          const record = await store.getAgent(agentId);
          let after = since ?? record?.cursor ?? 0;
          // A since= beyond the agent's last seq names a log this store does not have (a Redis
          // or a DATA_DIR that came back empty): everything it has is new to the agent.
          if (since !== null && since > (record?.seq ?? 0)) after = 0;
          readTo = after;
          const known = new Map<string, Forgotten>();
          replay: for (;;) {
            const page = await store.readLog(agentId, after, REPLAY_PAGE);
            await noteForgotten(store, agentId, page, known);
            for (const entry of page) {
              const shown = replayed(entry, known);
              if (shown === null) {
                after = readTo = entry.seq;
                continue;
              }
              // A long backlog is paced by the reader: a fast one drains it, a stalled one trips
              // the hub's bound and is told to come back with since=.
              if (conn.socket.bufferedAmount > REPLAY_HIGH_WATER) await drained(conn.socket);
              const frame = shown.frame ??= JSON.stringify(shown.envelope);
              if (!hub.writeTo(conn, entry.seq, frame)) break replay;
              after = readTo = entry.seq;
            }
            if (page.length < REPLAY_PAGE) break;
          }
        } finally {
          hub.finishReplay(conn, readTo);
        }
        if (conn.lastSeq > 0) store.markDelivered(agentId, conn.lastSeq);
      }
    },

    /** Unregisters a socket. */
    disconnect(conn: AgentConnection): void {
      if (hub.remove(conn)) {
        store.agentOffline?.(conn.agentId).catch(() => {/* presence expires on its own */});
      }
    },

    /** Waits until every accepted message is committed and pushed. */
    async drain(): Promise<void> {
      while (queue.length > 0 || flushing) {
        await new Promise((r) => setTimeout(r, 5));
      }
    },
  };
}

/** The message path. */
export type Switchboard = ReturnType<typeof createSwitchboard>;
