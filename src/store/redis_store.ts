// The store several bridge instances share: routing runs in Redis as one Lua script per batch
// (redis_scripts.ts), presence is a heartbeat key per instance, and entries committed by one
// instance reach the agents connected to another on that instance's pub/sub channel. A Redis that
// comes back empty is found by its generation marker and re-established before routing resumes.

import { getLogger } from "@logtape/logtape";
import { Redis } from "redis";
import { keyCollector } from "../core/media_refs.ts";
import { type Envelope, type EnvelopeData, replyCodeOf } from "../protocol/envelope.ts";
import { type ModelOptions, noteItem, previewOf, sortQuickReplies } from "../core/model.ts";
import { checkReplyAllowed, WINDOW_WARNING_MS, windowStateOf } from "../protocol/window.ts";
import { createAgentOrder } from "./redis_order.ts";
import {
  HEADER,
  QUEUED_FIELDS,
  REPLY_REFUSED,
  ROUTING_LUA,
  SERVED_BY_OTHER,
  STATE_LOST,
  STORE_ERROR,
} from "./redis_scripts.ts";
import {
  type AgentRecord,
  type Applied,
  type Contact,
  type ContactPage,
  type HistoryItem,
  type InboundItem,
  type InboundOutcome,
  isAfterCursor,
  isUnanswered,
  type LocationOutcome,
  type LogEntry,
  type MediaQueue,
  type Presence,
  type QueuedItem,
  type QuickReply,
  replyOutcome,
  type ReplyOutcomeOptions,
  ReplyRefusedError,
  ServedByOtherError,
  type Store,
  StoreError,
  StoreStateLostError,
  type TokenCache,
  type UnansweredReply,
} from "../core/store.ts";

const log = getLogger(["bridge", "redis"]);

/** Options of the Redis store. */
export interface RedisStoreOptions extends ModelOptions {
  /** `redis://[user:pass@]host:port[/db][?prefix=name:]`; `rediss://` for TLS. */
  url: string;
  /** How often this instance renews its presence; it counts as dead after two missed. */
  heartbeatMs: number;
  /** Key prefix; else the URL's `prefix` parameter, else `bridge:`. */
  prefix?: string;
  /** Entries kept per agent log, and for how long (ms). */
  logMax?: number;
  logRetentionMs?: number;
  /** Items kept per conversation, and how long an idle conversation is kept (ms). */
  historyMax?: number;
  historyRetentionMs?: number;
}

/** The Redis store, with what tests and operators need beyond `Store`. */
export interface RedisStore extends Store {
  readonly instanceId: string;
  readonly prefix: string;
  readonly tokenCache: TokenCache;
  readonly mediaQueue: MediaQueue;
  agentOffline(agentId: string): Promise<void>;
  onRemoteEntries(listener: (entries: LogEntry[]) => void): void;
  /** Agents with a socket on any live instance. */
  onlineAgents(): Promise<string[]>;
  firstReport(key: string, ttlMs: number): Promise<boolean>;
  firstAutoReply(followerId: string, ttlMs: number): Promise<boolean>;
  firstBody(signature: string, hash: string, ttlMs: number): Promise<string>;
}

const DEFAULT_PREFIX = "bridge:";
/** Contacts a forget's media scan reads at a time (HSCAN COUNT), their histories in one round trip. */
const SCAN_COUNT = 200;
const CURSOR_FLUSH_MS = 100;
const CATCH_UP_PAGE = 500;
/** How long an out-of-order entry waits for the ones before it before the log is read. */
const GAP_MS = 200;
/** How often the subscriber link is asked whether it still answers, at most: one a NAT or
 * firewall dropped without closing never writes, so never notices, and what other instances
 * commit stops coming. Unanswered by the next ask, it is made again. */
const SUBSCRIBER_CHECK_MS = 5_000;
/** How long to wait before trying again to re-establish a lost state. */
const RESTORE_RETRY_MS = 250;
/** Redis's refusals that say "not now", the command not run: LOADING, BUSY (a script or
 * module past busy-reply-threshold), MASTERDOWN, TRYAGAIN, CLUSTERDOWN, READONLY (a master
 * demoted by a failover, until the connection finds the new one), NOREPLICAS, OOM (maxmemory
 * reached under noeviction: a script is refused at its first write, before it wrote any, as
 * a full disk refuses a commit). */
const NOT_NOW_REPLY = /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY|NOREPLICAS|OOM)\b/;
/** A write refused by a replica: the connection leads to a demoted master (see reconnectOnError). */
const READONLY_REPLY = /^READONLY\b/;

/**
 * Takes a reply's client_id in one conversation (KEYS[1], `<follower>\0<client_id>`). The
 * version before took it for the agent alone (KEYS[2], `<client_id>`, its instance id as the
 * value): through the rolling restart that moves the agents' sockets between the two, a reply
 * the console sent again after the move went to the follower twice. So one of those keys held
 * is taken, and the agent-wide key is set too (`=<follower>`, which only the old version reads)
 * so an old instance does not send again what a new one took. ARGV: instance, ttl ms, follower.
 */
const CLAIM_CLIENT_ID_LUA = `
local held = redis.call('get', KEYS[2])
if held and string.sub(held, 1, 1) ~= '=' then return 0 end
if not redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX') then return 0 end
redis.call('set', KEYS[2], '=' .. ARGV[3], 'PX', ARGV[2], 'NX')
return 1`;

/** Gives back what CLAIM_CLIENT_ID_LUA took for this instance (the agent-wide key only when it
 * set it for this follower). A release is tried again when Redis's answer was lost, and may
 * have run already: another instance may hold the client_id since, sending it, and deleting
 * its claim let the same client_id be sent once more. ARGV: follower, instance. */
const RELEASE_CLIENT_ID_LUA = `
if redis.call('get', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('del', KEYS[1])
if redis.call('get', KEYS[2]) == '=' .. ARGV[1] then redis.call('del', KEYS[2]) end
return 1`;

/** Where to connect: a plain URL, or Sentinel's addresses and the name of the primary. */
export interface RedisTarget {
  url?: string;
  sentinel?: {
    sentinels: Array<{ host: string; port: number }>;
    name: string;
    username?: string;
    password?: string;
    db?: number;
    sentinelPassword?: string;
  };
  /** The key prefix from the URL's `prefix` parameter, or null. */
  prefix: string | null;
}

const URL_HELP = "expected redis://host:port, rediss://… or redis+sentinel://host:port,…/primary";

/** Reads REDIS_URL: `redis://` or `rediss://` as Redis reads them, `redis+sentinel://h1:26379,
 * h2:26379/primary` for Sentinel; a `prefix` parameter lets one Redis serve several accounts. */
export function parseRedisUrl(raw: string): RedisTarget {
  const sentinel =
    /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?]+)\/([^/?]+)(?:\/(\d+))?(?:\?(.*))?$/
      .exec(raw);
  if (sentinel) {
    const [, user, password, hosts, name, db, query] = sentinel;
    const sentinels = hosts!.split(",").map((hostPort) => {
      const m = /^([^:]+)(?::(\d+))?$/.exec(hostPort.trim());
      if (!m) throw new Error(`Cannot read REDIS_URL: bad Sentinel address "${hostPort}"`);
      return { host: m[1]!, port: Number(m[2] ?? 26379) };
    });
    const params = new URLSearchParams(query ?? "");
    const prefix = params.get("prefix");
    const sentinelPassword = params.get("sentinelPassword");
    return {
      sentinel: {
        sentinels,
        name: decodeURIComponent(name!),
        ...(user ? { username: decodeURIComponent(user) } : {}),
        ...(password ? { password: decodeURIComponent(password) } : {}),
        ...(db ? { db: Number(db) } : {}),
        ...(sentinelPassword ? { sentinelPassword } : {}),
      },
      prefix: prefix || null,
    };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`Cannot read REDIS_URL: ${URL_HELP}`);
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new Error(`Cannot read REDIS_URL: ${URL_HELP}, got ${url.protocol}`);
  }
  const prefix = url.searchParams.get("prefix");
  url.searchParams.delete("prefix");
  return { url: url.toString(), prefix: prefix || null };
}

/** Connects to Redis and returns the shared store; throws when Redis cannot be reached. */
export async function createRedisStore(options: RedisStoreOptions): Promise<RedisStore> {
  const target = parseRedisUrl(options.url);
  const prefix = options.prefix ?? target.prefix ?? DEFAULT_PREFIX;
  const instanceId = crypto.randomUUID();
  const presenceTtlMs = options.heartbeatMs * 2;
  const settings = {
    logMax: options.logMax ?? 5_000,
    logRetentionMs: options.logRetentionMs ?? 7 * 24 * 3600_000,
    historyMax: options.historyMax ?? 2_000,
    historyRetentionMs: options.historyRetentionMs ?? 30 * 24 * 3600_000,
  };
  const k = {
    agents: `${prefix}agents`,
    agent: (id: string) => `${prefix}agent:${id}`,
    log: (id: string) => `${prefix}log:${id}`,
    contacts: `${prefix}contacts`,
    served: (id: string) => `${prefix}served:${id}`,
    waiting: `${prefix}waiting`,
    queuedCount: `${prefix}queued_count`,
    history: (id: string) => `${prefix}hist:${id}`,
    /** Replies recorded "sending", by time (s): `n:follower` (redis_scripts.ts reply). */
    unanswered: `${prefix}unanswered`,
    forgetCut: (id: string) => `${prefix}forget_cut:${id}`,
    instances: `${prefix}instances`,
    instance: (id: string) => `${prefix}instance:${id}`,
    online: (id: string) => `${prefix}online:${id}`,
    deliver: (id: string) => `${prefix}deliver:${id}`,
    token: `${prefix}wechat_token`,
    report: (key: string) => `${prefix}report:${key}`,
    autoReply: (followerId: string) => `${prefix}auto_reply:${followerId}`,
    mediaHold: (key: string) => `${prefix}media_hold:${key}`,
    signedBody: (signature: string) => `${prefix}signed_body:${signature}`,
    quickReplies: `${prefix}quick_replies`,
    clientId: (agentId: string, clientId: string) =>
      `${prefix}client_id:${agentId.length}:${agentId}:${clientId}`,
  };

  // Commands fail after a few retries instead of hanging a webhook while Redis is away.
  // Named connections show in CLIENT LIST which instance holds them.
  const clientOptions = {
    lazyConnect: true,
    maxRetriesPerRequest: 3,
    connectionName: `bridge-${instanceId}`,
    // A master demoted by a failover behind the same address (a managed Redis's endpoint, a DNS
    // name or proxy moved to the promoted replica) keeps the connection open and refuses every
    // write: kept, every webhook was 503 for good. A new connection finds the new master; the
    // refused command fails (503, retried by WeChat) rather than being sent again on it (2):
    // an address that leads to a replica for good sent it again for ever, and a start on one
    // hung instead of saying READONLY.
    reconnectOnError: (error: Error) => READONLY_REPLY.test(error.message),
  };
  const client = target.sentinel
    ? new Redis({ ...target.sentinel, ...clientOptions })
    : new Redis(target.url!, clientOptions);
  const subscriber = client.duplicate({ connectionName: `bridge-${instanceId}-sub` });
  for (const [name, conn] of [["commands", client], ["subscriber", subscriber]] as const) {
    conn.on("error", (error: Error) => {
      log.warn("Redis {connection} connection: {message}", {
        connection: name,
        message: error.message,
      });
    });
  }
  let sha: string;
  try {
    await client.connect();
    await subscriber.connect();
    // One channel per instance, from the start: an agent's entries come on it from the moment
    // the `online` operation puts the agent in this instance's set, which the backlog precedes.
    await subscriber.subscribe(k.deliver(instanceId));
    sha = await client.script("LOAD", ROUTING_LUA) as string;
  } catch (error) {
    client.disconnect();
    subscriber.disconnect();
    throw new Error(`Cannot connect to Redis: ${(error as Error).message}`);
  }
  log.info("Redis store ready: key prefix {prefix}, instance {instance}", {
    prefix,
    instance: instanceId,
  });
  const localAgents = new Set<string>();
  const pendingCursors = new Map<string, number>();
  const listeners: Array<(entries: LogEntry[]) => void> = [];
  let cursorTimer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;
  /** Whose state this instance routes on (the script refuses every other: see STATE_LOST). */
  let generation = "";
  /** Set while a lost state is re-established: operations are refused until it is done. */
  let restoring: Promise<void> | null = null;
  const lostListeners: Array<() => void> = [];
  /** Agents Redis is known to hold. The script never removes one, so a yes stays true until
   * the state is lost; it spares the webhook a round trip per message (ToUserName = agent). */
  const knownAgents = new Set<string>();
  /** The highest seq this instance has seen per agent, so seqs go on increasing after a loss. */
  const highest = new Map<string, number>();
  const noteSeqs = (entries: LogEntry[]): void => {
    for (const e of entries) {
      if (e.seq > (highest.get(e.agentId) ?? 0)) highest.set(e.agentId, e.seq);
    }
  };

  function header(op: string): Array<string | number> {
    const values: Record<(typeof HEADER)[number], string | number> = {
      prefix,
      now: options.now(),
      idBase: options.newId(),
      companyId: options.companyId,
      instanceId,
      logMax: settings.logMax,
      logRetentionMs: settings.logRetentionMs,
      historyMax: settings.historyMax,
      historyRetentionMs: settings.historyRetentionMs,
      presenceTtlMs,
      op,
      generation,
    };
    return HEADER.map((name) => values[name]);
  }

  /** Runs one operation of the routing script; the log entries it appended come back parsed.
   * While a lost state is re-established only the re-establishing itself (`restore`) runs.
   * An entry made from one of `sent` (the inbound items' data and tails) comes back as its
   * number, and is made here from what was sent. */
  async function run<T>(
    op: string,
    args: Array<string | number>,
    restore = false,
    sent: ReadonlyArray<{ envelope: Envelope; tail: string }> = [],
  ): Promise<{ value: T; entries: LogEntry[] }> {
    if (restoring !== null && !restore) throw lostError();
    const head = header(op);
    const argv = [...head, ...args];
    let reply: [T, Array<string | number>];
    try {
      try {
        reply = await client.evalsha(sha, 0, ...argv) as typeof reply;
      } catch (error) {
        // A restarted or failed-over Redis has lost its script cache.
        if (!replyIs(error, "NOSCRIPT")) throw error;
        sha = await client.script("LOAD", ROUTING_LUA) as string;
        reply = await client.evalsha(sha, 0, ...argv) as typeof reply;
      }
    } catch (error) {
      if (replyIs(error, STORE_ERROR)) {
        throw new StoreError((error as Error).message.slice(STORE_ERROR.length + 1));
      }
      if (replyIs(error, SERVED_BY_OTHER)) {
        const served = JSON.parse((error as Error).message.slice(SERVED_BY_OTHER.length + 1));
        throw new ServedByOtherError(String(served.follower_id), String(served.agent_id));
      }
      if (replyIs(error, STATE_LOST)) {
        if (!restore) void stateLost((error as Error).message.slice(STATE_LOST.length + 1));
        throw lostError();
      }
      if (replyIs(error, REPLY_REFUSED)) {
        const contact = JSON.parse((error as Error).message.slice(REPLY_REFUSED.length + 1));
        throw replyRefused(contact, Number(head[HEADER.indexOf("now")]));
      }
      throw error;
    }
    const [value, flat] = reply;
    const entries: LogEntry[] = [];
    for (let i = 0; i < flat.length; i += 3) {
      const agentId = String(flat[i]);
      const seq = Number(flat[i + 1]);
      const json = flat[i + 2];
      const item = typeof json === "number" ? sent[json] : undefined;
      if (item) {
        const { data, result } = item.envelope;
        const envelope = { data: { seq, ...withoutSeq(data) }, result };
        entries.push({ agentId, seq, envelope, frame: `{"data":{"seq":${seq}${item.tail}` });
      } else {
        const frame = String(json);
        entries.push({ agentId, seq, envelope: JSON.parse(frame), frame });
      }
    }
    noteSeqs(entries);
    return { value, entries };
  }

  function lostError(): StoreStateLostError {
    return new StoreStateLostError(
      "Redis lost the bridge's state; it is being re-established: retry",
    );
  }

  /**
   * Redis answered with another generation than ours, or none: it restarted empty or failed
   * over to an empty replica (or another instance found that first and re-established it).
   * Until this instance has re-established it, every operation is refused, so WeChat retries.
   */
  function stateLost(found: string): Promise<void> {
    if (restoring !== null || closed) return restoring ?? Promise.resolve();
    log.error(
      "Redis lost the bridge's state: generation {expected} expected, {found} found. Messages " +
        "and contacts stored before are gone; follower messages get 503 until it is re-established",
      { expected: generation, found: found || "none" },
    );
    for (const listener of lostListeners) listener();
    knownAgents.clear();
    restoring = (async () => {
      while (!closed) {
        try {
          await reestablish();
          return;
        } catch (error) {
          log.error("Cannot re-establish the state in Redis yet: {message}", {
            message: (error as Error).message,
          });
          await new Promise((r) => setTimeout(r, RESTORE_RETRY_MS));
        }
      }
    })().finally(() => restoring = null);
    return restoring;
  }

  /** Adopts (or makes) the current generation, carries every agent's seq on from the highest
   * seen here, and brings this instance's agents online again: the followers who write next
   * are routed to agents that are there, and the agents are shown every message. */
  async function reestablish(): Promise<void> {
    generation = (await run<string>("generation", [crypto.randomUUID()], true)).value;
    if (highest.size > 0) await run("raise", [...highest].flat(), true);
    await heartbeat();
    for (const agentId of localAgents) {
      order.untrack(agentId);
      order.track(agentId);
      const { value: [before], entries } = await run<[number, number]>("online", [agentId], true);
      order.begin(agentId, before);
      emit(order.admit(entries));
    }
    log.error(
      "Redis state re-established as generation {generation}: {agents} agents here online again",
      { generation, agents: localAgents.size },
    );
  }

  /** Whether Redis still holds our generation; starts re-establishing when it does not. */
  async function checkGeneration(): Promise<void> {
    if (restoring !== null || closed) return;
    const found = (await run<string>("generation", [crypto.randomUUID()], true)).value;
    if (found !== generation) await stateLost(found);
  }

  /** What the switchboard pushes: this commit's entries, in order per agent connected here. */
  function applied<T>(value: T, entries: LogEntry[]): Applied<T> {
    return { value, deliveries: order.admit(entries) };
  }

  /** A note's history item and log tail, as the script's `note` takes them. */
  function noteArgs(author: string, followerId: string, text: string): [string, string] {
    const now = options.now();
    const item = noteItem({
      id: options.newId(),
      author,
      followerId,
      companyId: options.companyId,
      sendTime: Math.floor(now / 1000),
      text,
    });
    return [JSON.stringify(item), tailOf({ data: item, result: { code: 102, message: "note" } })];
  }

  function parseMember(member: string, agentId: string): LogEntry {
    const envelope = JSON.parse(member.slice(member.indexOf("|") + 1)) as Envelope;
    return { agentId, seq: envelope.data.seq ?? 0, envelope };
  }

  async function readLog(agentId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
    const members = await client.zrangebyscore(
      k.log(agentId),
      `(${afterSeq}`,
      "+inf",
      "LIMIT",
      0,
      limit,
    );
    return members.map((m) => parseMember(m, agentId));
  }

  async function contactsOf(ids: string[]): Promise<Contact[]> {
    if (ids.length === 0) return [];
    const raws = await client.hmget(k.contacts, ...ids);
    return raws.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as Contact);
  }

  async function getAgent(agentId: string): Promise<AgentRecord | null> {
    const h = await client.hgetall(k.agent(agentId));
    if (h["seq"] === undefined) return null;
    return {
      agent_id: agentId,
      seq: Number(h["seq"]),
      cursor: Number(h["cursor"] ?? 0),
      capacity: h["capacity"] === undefined || h["capacity"] === "" ? null : Number(h["capacity"]),
      load: Number(h["load"] ?? 0),
    };
  }

  /** Whether this instance's presence was written once already (the first finds none). */
  let registered = false;
  // Presence: this instance's key lives two heartbeats; its online set is rewritten from the
  // local view each time, so a lost agentOffline heals within one heartbeat.
  async function heartbeat(): Promise<void> {
    const tx = client.multi()
      .exists(k.instance(instanceId))
      .set(k.instance(instanceId), "1", "PX", presenceTtlMs)
      .sadd(k.instances, instanceId)
      .del(k.online(instanceId));
    if (localAgents.size > 0) {
      tx.sadd(k.online(instanceId), ...localAgents).pexpire(k.online(instanceId), presenceTtlMs);
    }
    const [[, present] = []] = await tx.exec() ?? [];
    // Our presence had lapsed (this process stalled past its TTL): other instances stopped
    // publishing to us meanwhile, so what they committed is read from the logs.
    if (present === 0 && registered) order.catchUp();
    registered = true;
  }
  try {
    generation = (await run<string>("generation", [crypto.randomUUID()])).value;
  } catch (error) {
    client.disconnect();
    subscriber.disconnect();
    throw new Error(`Cannot connect to Redis: ${(error as Error).message}`);
  }
  await heartbeat();
  const heartbeatTimer = setInterval(() => {
    // A Redis emptied without dropping the connection (a failover) is found here too.
    heartbeat().then(checkGeneration).catch((error) =>
      log.warn("Cannot renew presence in Redis: {message}", { message: error.message })
    );
  }, options.heartbeatMs);
  // A restarted Redis drops the connection: look at once whether it came back empty.
  client.on("ready", () => {
    checkGeneration().catch((error) =>
      log.warn("Cannot read the generation in Redis: {message}", { message: error.message })
    );
  });
  Deno.unrefTimer(heartbeatTimer);

  function flushCursors(): Promise<unknown> {
    cursorTimer = undefined;
    if (pendingCursors.size === 0) return Promise.resolve();
    const args = [...pendingCursors].flat();
    pendingCursors.clear();
    return run("cursor", args).catch((error) =>
      log.warn("Cannot save delivery cursors: {message}", { message: error.message })
    );
  }

  function emit(entries: LogEntry[]): void {
    if (entries.length === 0) return;
    for (const listener of listeners) listener(entries);
  }

  const order = createAgentOrder({
    fill: (agentId, afterSeq) => readLog(agentId, afterSeq, CATCH_UP_PAGE),
    emit,
    gapMs: GAP_MS,
    onError: (error) =>
      log.warn("Cannot read a missing log entry: {message}", {
        message: (error as Error).message,
      }),
  });

  subscriber.on("message", (channel: string, message: string) => {
    if (channel !== k.deliver(instanceId)) return;
    let entries: LogEntry[];
    try {
      entries = parsePublication(message, localAgents);
    } catch (error) {
      // Not ours to crash on: the next entry leaves a gap, which is read from the log.
      log.warn("Cannot read a publication: {message}", { message: (error as Error).message });
      return;
    }
    noteSeqs(entries);
    emit(order.admit(entries));
  });

  // Publications sent while the subscriber was reconnecting are lost: read them from the logs.
  // (connect() resolved after the first "ready": every one from here on is a reconnect.)
  subscriber.on("ready", () => {
    if (!closed) order.catchUp();
  });

  // The subscriber only reads: a link that stopped passing anything without closing is found
  // by asking it, and made again (its "ready" reads from the logs what it missed).
  let subscriberAsked = false;
  const subscriberCheckMs = Math.min(options.heartbeatMs, SUBSCRIBER_CHECK_MS);
  const subscriberTimer = setInterval(() => {
    if (closed) return;
    if (subscriberAsked) {
      subscriberAsked = false;
      log.warn(
        "Redis subscriber connection did not answer within {ms} ms: connecting it again",
        { ms: subscriberCheckMs },
      );
      subscriber.disconnect(true);
      return;
    }
    if (subscriber.status !== "ready") return;
    subscriberAsked = true;
    subscriber.ping().then(
      () => subscriberAsked = false,
      // Failed, not silent: the connection's own error and reconnect handle it.
      () => subscriberAsked = false,
    );
  }, subscriberCheckMs);
  Deno.unrefTimer(subscriberTimer);

  const tokenCache: TokenCache = {
    async get() {
      const raw = await client.get(k.token);
      return raw === null ? null : JSON.parse(raw);
    },
    async set(entry) {
      const ttl = Math.max(1, Math.round(entry.expiresAt - options.now()));
      await client.set(k.token, JSON.stringify(entry), "PX", ttl);
    },
  };

  const mediaQueue: MediaQueue = {
    async push(item, publicBase) {
      // A lone surrogate (previewOf cut an emoji in two) becomes U+FFFD, as in ARGV: JSON's
      // escape for it is one the script's cjson cannot decode, which would stop the queue.
      const fields = [...inboundFields(item), publicBase].map((field) => field.toWellFormed());
      await run("mqpush", [item.followerId, JSON.stringify(fields)]);
    },
    async followers() {
      return await client.smembers(`${prefix}mediaq_followers`);
    },
    async lease(followerId, ms) {
      return (await run<number>("mqlease", [followerId, ms, "take"])).value === 1;
    },
    async renew(followerId, ms) {
      return (await run<number>("mqlease", [followerId, ms, "renew"])).value === 1;
    },
    async head(followerId) {
      const { value } = await run<[string, number] | []>("mqhead", [followerId]);
      if (value.length === 0) return null;
      return parseQueued(value[0], value[1] === 1);
    },
    async pop(followerId, head) {
      return (await run<number>("mqpop", [followerId, head.raw, "pop"])).value;
    },
    async release(followerId) {
      await run("mqrelease", [followerId]);
    },
    async setAside(followerId) {
      return (await run<number>("mqpop", [followerId, "", "aside"])).value;
    },
  };

  return {
    instanceId,
    prefix,
    tokenCache,
    mediaQueue,

    async acceptInbound(items: InboundItem[], _presence: Presence) {
      // `_presence` is this instance's view; the script reads every instance's from Redis.
      const args: Array<string | number> = [options.dedupTtlMs];
      const sent: Array<{ envelope: Envelope; tail: string }> = [];
      for (const item of items) {
        const fields = inboundFields(item);
        args.push(...fields, item.fromQueue ?? "");
        sent.push({ envelope: item.envelope, tail: `${fields[6]},"result":${fields[7]}}` });
      }
      const { value, entries } = await run<InboundOutcome[]>("inbound", args, false, sent);
      return applied(value, entries);
    },

    async reportLocation(item, place) {
      const { value, entries } = await run<LocationOutcome>("location", [
        item.followerId,
        dataRest(item.envelope.data),
        JSON.stringify(item.envelope.result),
        // Empty (Lua's tonumber: nil) for a report with no place.
        place?.latitude ?? "",
        place?.longitude ?? "",
        place?.precision ?? "",
        place?.at ?? item.receivedAt,
        item.dedupKey === null ? "" : `k${item.dedupKey}`,
        options.dedupTtlMs,
      ]);
      return applied(value, entries);
    },

    async appendToAgents(toAppend) {
      const args = toAppend.flatMap((e) => [e.agentId, tailOf(e.envelope)]);
      const { entries } = await run<number>("append", args);
      return applied(entries, entries);
    },

    async agentOnline(agentId: string, _presence: Presence) {
      const added = !localAgents.has(agentId);
      if (added) {
        localAgents.add(agentId);
        order.track(agentId);
      }
      try {
        // An agent arriving while a lost state is re-established waits for it, not refused.
        if (restoring !== null) await restoring;
        // `seq` is the agent's seq before this call: what came before reaches it by replay.
        const { value: [seq, lapsed], entries } = await run<[number, number]>("online", [agentId]);
        order.begin(agentId, seq);
        // The heartbeat would now find our presence written and heal nothing: the other agents
        // here are put back in the online set, then what was not published to them is read.
        if (lapsed === 1 && registered) await heartbeat().then(() => order.catchUp());
        return applied(undefined, entries);
      } catch (error) {
        // The socket is refused; the heartbeat rewrites presence without it.
        if (added) {
          localAgents.delete(agentId);
          order.untrack(agentId);
        }
        throw error;
      }
    },

    async agentOffline(agentId: string) {
      if (!localAgents.delete(agentId)) return;
      order.untrack(agentId);
      // Sent at once, so an `online` for the same agent that follows comes after it in Redis.
      await client.srem(k.online(instanceId), agentId);
    },

    onRemoteEntries(listener) {
      listeners.push(listener);
    },

    readLog,

    markDelivered(agentId: string, seq: number): void {
      if (seq <= (pendingCursors.get(agentId) ?? 0)) return;
      pendingCursors.set(agentId, seq);
      if (cursorTimer === undefined && !closed) {
        const timer = setTimeout(flushCursors, CURSOR_FLUSH_MS);
        Deno.unrefTimer(timer);
        cursorTimer = timer;
      }
    },

    getAgent,

    async isKnownAgent(agentId: string) {
      if (knownAgents.has(agentId)) return true;
      const known = (await client.sismember(k.agents, agentId)) === 1;
      if (known && restoring === null) knownAgents.add(agentId);
      return known;
    },

    async getContact(followerId: string) {
      const raw = await client.hget(k.contacts, followerId);
      return raw === null ? null : JSON.parse(raw) as Contact;
    },

    async listContacts(agentId: string, page?: ContactPage) {
      if (page === undefined) {
        const ids = await client.zrevrange(k.served(agentId), 0, -1);
        const list = await contactsOf(ids);
        // The index is by last agent; a contact's own record is the truth.
        return list.filter((c) => c.last_agent_id === agentId)
          .sort((a, b) => b.last_message_at - a.last_message_at);
      }
      // The index is scored by last message time; equal scores come in reverse id order, as
      // the cursor counts them. Only the page is read.
      const after = page.after ?? null;
      const out: Contact[] = [];
      const count = Math.min(Math.max(page.limit, 50), 1000);
      for (let offset = 0; out.length < page.limit;) {
        const raw = await client.zrevrangebyscore(
          k.served(agentId),
          after === null ? "+inf" : String(after.at),
          "-inf",
          "LIMIT",
          offset,
          count,
        );
        offset += raw.length;
        const list = (await contactsOf(raw)).filter((c) =>
          c.last_agent_id === agentId && (after === null || isAfterCursor(c, after))
        );
        out.push(...list.slice(0, page.limit - out.length));
        if (raw.length < count) break;
      }
      return out;
    },

    async listWaiting() {
      return await contactsOf(await client.zrange(k.waiting, 0, -1));
    },

    async readHistory(followerId: string, before: number | null, limit: number) {
      const raw = await client.hget(k.contacts, followerId);
      const last = raw === null ? 0 : (JSON.parse(raw) as Contact).history_seq;
      const first = Math.max(1, last - settings.historyMax + 1);
      const end = before === null ? last + 1 : Math.min(before, last + 1);
      const start = Math.max(first, end - limit);
      if (end <= start) return { items: [], nextBefore: null };
      const ns = Array.from({ length: end - start }, (_, i) => start + i);
      const raws = await client.hmget(k.history(followerId), ...ns.map(String));
      const items = raws.filter((r): r is string => r !== null)
        .map((r) => JSON.parse(r) as HistoryItem);
      // An idle conversation's history expires whole: nothing further back either.
      const nextBefore = items.length > 0 && start > first ? start : null;
      return { items, nextBefore };
    },

    async recordReply(agentId: string, followerId: string, item: HistoryItem) {
      const data = withoutSeq(item);
      const envelope: Envelope = {
        data,
        result: { code: replyCodeOf(item.msg_type), message: "common" },
      };
      const { value, entries } = await run<number>("reply", [
        agentId,
        followerId,
        tailOf(envelope),
        JSON.stringify(item),
        item.msg_type,
        previewOf(envelope),
      ]);
      return applied({ n: value }, entries);
    },

    async unansweredReplies(before: number, limit: number) {
      const members = await client.zrangebyscore(
        k.unanswered,
        "-inf",
        `(${Math.ceil(before / 1000)}`,
        "LIMIT",
        0,
        limit,
      );
      if (members.length === 0) return [];
      const places = members.map((member) => {
        const at = member.indexOf(":");
        return { member, n: Number(member.slice(0, at)), followerId: member.slice(at + 1) };
      });
      // The page's items in one round trip, not one after another.
      const tx = client.multi();
      for (const { followerId, n } of places) tx.hget(k.history(followerId), String(n));
      const rows = await tx.exec();
      const found: UnansweredReply[] = [];
      const answered: string[] = [];
      places.forEach(({ member, n, followerId }, i) => {
        // A read that failed must not count as an item gone: its member would be dropped.
        const [error, raw] = rows?.[i] ?? [new Error("Redis did not answer every read"), null];
        if (error) throw error;
        const item = typeof raw === "string" ? JSON.parse(raw) as HistoryItem : null;
        // Answered by a script before this one, forgotten or expired: the member goes too.
        if (isUnanswered(item)) found.push({ followerId, n, item });
        else answered.push(member);
      });
      if (answered.length > 0) await client.zrem(k.unanswered, ...answered);
      return found;
    },

    async updateReply(
      followerId: string,
      reply: { n: number; id: string },
      status: "sent" | "failed",
      error?: string,
      outcomeOptions?: ReplyOutcomeOptions,
    ) {
      const key = k.history(followerId);
      // Check-and-set, so that nothing written between the read and the write is overwritten
      // (a forget, and the follower's new conversation numbering an item the same).
      for (let attempt = 0; attempt < 5; attempt++) {
        const raw = await client.hget(key, String(reply.n));
        if (raw === null) return false;
        const stored = JSON.parse(raw) as HistoryItem;
        if (stored.id !== reply.id) return false;
        // Another instance's sweep settled it since: the script below refused that write.
        if (outcomeOptions?.onlySending && !isUnanswered(stored)) return false;
        const item = { ...stored, ...replyOutcome(status, error, outcomeOptions) };
        const { value } = await run<number>("outcome", [
          followerId,
          reply.n,
          raw,
          JSON.stringify(item),
        ]);
        if (value === 1) return true;
      }
      throw new Error(`Cannot update reply ${followerId}/${reply.n}: it kept changing`);
    },

    async transfer(followerId: string, fromAgent: string, toAgent: string, note?: string) {
      const [hist, tail] = note ? noteArgs(fromAgent, followerId, note) : ["", ""];
      const { entries } = await run<number>("transfer", [
        followerId,
        fromAgent,
        toAgent,
        hist,
        tail,
      ]);
      return applied(undefined, entries);
    },

    async claim(followerId: string, agentId: string) {
      const { entries } = await run<number>("claim", [followerId, agentId]);
      return applied(undefined, entries);
    },

    async addNote(agentId: string, followerId: string, text: string) {
      const { value, entries } = await run<number>("note", [
        agentId,
        followerId,
        ...noteArgs(agentId, followerId, text),
      ]);
      return applied({ n: value }, entries);
    },

    async listAgents() {
      const ids = (await client.smembers(k.agents)).sort();
      const tx = client.multi();
      for (const id of ids) tx.hmget(k.agent(id), "seq", "cursor", "capacity", "load");
      const rows = (await tx.exec()) ?? [];
      return ids.map((id, i): AgentRecord => {
        const v = (rows[i]?.[1] ?? []) as Array<string | null>;
        return {
          agent_id: id,
          seq: Number(v[0] ?? 0),
          cursor: Number(v[1] ?? 0),
          capacity: v[2] === null || v[2] === undefined || v[2] === "" ? null : Number(v[2]),
          load: Number(v[3] ?? 0),
        };
      });
    },

    async listQuickReplies() {
      const raws = Object.values(await client.hgetall(k.quickReplies));
      return sortQuickReplies(raws.map((r) => JSON.parse(r) as QuickReply));
    },

    async putQuickReply(reply: QuickReply) {
      await client.hset(k.quickReplies, reply.id, JSON.stringify(reply));
    },

    async deleteQuickReply(id: string) {
      return (await client.hdel(k.quickReplies, id)) > 0;
    },

    async closeConversation(followerId: string, agentId: string) {
      const { entries } = await run<number>("close", [followerId, agentId]);
      return applied(undefined, entries);
    },

    async closeWindow(followerId: string, errcode: number, countedIn: number) {
      await run("closewindow", [followerId, errcode, countedIn]);
    },

    async returnReply(followerId: string, n: number, countedIn: number) {
      const { value } = await run<number>("returnreply", [followerId, n, countedIn]);
      return value < 0 ? null : value;
    },

    async forgetFollower(followerId: string, notice: Envelope) {
      const { value, entries } = await run<number>("forget", [followerId, tailOf(notice)]);
      return applied(value === 1, entries);
    },

    async forgetCuts(agentId: string, followerIds: readonly string[]) {
      // Sent at once, answered together: one round trip for the page, as getContact()s are.
      const seqs = await Promise.all(
        followerIds.map((id) => client.hget(k.forgetCut(id), agentId)),
      );
      const found = new Map<string, number>();
      followerIds.forEach((id, i) => {
        const seq = seqs[i];
        if (seq !== null && seq !== undefined) found.set(id, Number(seq));
      });
      return found;
    },
    async mediaInHistory(keys: readonly string[]) {
      // Every history belongs to a contact: the contacts' hash names them all, read a page at a
      // time (HSCAN: a million contacts are never one reply), each page's histories in one round
      // trip, and no Redis command holds it for long.
      const named = new Set<string>();
      const collect = keyCollector(keys);
      let cursor = "0";
      do {
        const [next, flat] = await client.hscan(k.contacts, cursor, "COUNT", SCAN_COUNT);
        cursor = next;
        const followers = flat.filter((_, i) => i % 2 === 0);
        const histories = await Promise.all(followers.map((id) => client.hvals(k.history(id))));
        for (const items of histories) for (const raw of items) collect(raw, named);
      } while (cursor !== "0" && named.size < keys.length);
      return named;
    },

    async setCapacity(agentId: string, capacity: number | null) {
      await run("capacity", [agentId, capacity === null ? "" : capacity]);
    },

    async sweepWindows(_now: number) {
      // Every instance may sweep: the script notes each notice in the contact, so it is sent once.
      const { value, entries } = await run<number>("windows", [WINDOW_WARNING_MS]);
      return applied(value, entries);
    },
    async renameContact(agentId: string, followerId: string, name: string) {
      await run("rename", [agentId, followerId, name]);
    },
    async setLabels(agentId: string, followerId: string, labels: string[]) {
      await run("labels", [agentId, followerId, JSON.stringify(labels)]);
    },
    async markRead(agentId: string, followerId: string) {
      await run("read", [agentId, followerId]);
    },

    async queueDepth() {
      return Number(await client.get(k.queuedCount) ?? 0);
    },

    async claimClientId(agentId, followerId, clientId, ttlMs) {
      const keys = [
        k.clientId(agentId, `${followerId}\u0000${clientId}`),
        k.clientId(agentId, clientId),
      ];
      const taken = await client.eval(
        CLAIM_CLIENT_ID_LUA,
        2,
        ...keys,
        instanceId,
        ttlMs,
        followerId,
      );
      return taken === 1;
    },

    async releaseClientId(agentId, followerId, clientId) {
      await client.eval(
        RELEASE_CLIENT_ID_LUA,
        2,
        k.clientId(agentId, `${followerId}\u0000${clientId}`),
        k.clientId(agentId, clientId),
        followerId,
        instanceId,
      );
    },

    // ioredis gives up on a command after maxRetriesPerRequest reconnections; a command sent
    // as the connection drops fails with the socket's own error. A Redis that is there but
    // cannot answer now (loading its data, running a long script, a replica without its
    // master, a cluster resharding or down, a master demoted by a failover) refuses with one of
    // these codes and ran nothing: taken for WeChat's refusal, a reply was answered 502 and its
    // client_id kept for a day.
    unreachable(error) {
      if (!(error instanceof Error)) return false;
      // A lost state refuses every routing call until it is re-established, having run none: a
      // socket's frame was answered "Internal error" for it, naming no frame, where HTTP says 503.
      return error instanceof StoreStateLostError ||
        error.name === "MaxRetriesPerRequestError" ||
        error.message === "Connection is closed." ||
        /\b(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE)\b/.test(error.message) ||
        (error.name === "ReplyError" && NOT_NOW_REPLY.test(error.message));
    },

    async firstReport(key, ttlMs) {
      return await client.set(k.report(key), "1", "PX", ttlMs, "NX") === "OK";
    },
    async firstAutoReply(followerId, ttlMs) {
      return await client.set(k.autoReply(followerId), "1", "PX", Math.max(1, ttlMs), "NX") ===
        "OK";
    },
    async holdMedia(key: string, ttlMs: number) {
      await client.set(k.mediaHold(key), "1", "PX", Math.max(1, ttlMs));
    },
    async mediaHeld(keys: readonly string[]) {
      if (keys.length === 0) return new Set<string>();
      const found = await client.mget(...keys.map((key) => k.mediaHold(key)));
      return new Set(keys.filter((_, i) => found[i] !== null));
    },
    // SET NX alone (not with GET, which needs Redis 7): one round trip for every first body, a
    // second only for a retry or a replay. A key gone between the two was nobody's: `hash`.
    async firstBody(signature, hash, ttlMs) {
      const key = k.signedBody(signature);
      if (await client.set(key, hash, "PX", Math.max(1, ttlMs), "NX") === "OK") return hash;
      return await client.get(key) ?? hash;
    },

    async onlineAgents() {
      const online = new Set<string>();
      for (const id of await client.smembers(k.instances)) {
        if (await client.exists(k.instance(id)) !== 1) continue;
        for (const agent of await client.smembers(k.online(id))) online.add(agent);
      }
      return [...online].sort();
    },

    async ping() {
      if (restoring !== null) throw lostError();
      await checkGeneration();
      if (restoring !== null) throw lostError();
    },

    onStateLost(listener) {
      lostListeners.push(listener);
    },

    async close() {
      if (closed) return;
      closed = true;
      clearInterval(heartbeatTimer);
      clearInterval(subscriberTimer);
      order.close();
      if (cursorTimer !== undefined) clearTimeout(cursorTimer);
      try {
        await flushCursors();
        // Sockets here are closed: agents stop counting as online at once, not after the TTL.
        await client.multi().del(k.instance(instanceId), k.online(instanceId))
          .srem(k.instances, instanceId).exec();
        await subscriber.quit();
        await client.quit();
      } catch {
        subscriber.disconnect();
        client.disconnect();
      }
    },
  };
}

/** Another instance's publication (lines: agent, envelope JSON, agent, …), for the agents
 * connected here. The JSON is kept as the frame the sockets get. */
function parsePublication(message: string, agents: ReadonlySet<string>): LogEntry[] {
  const lines = message.split("\n");
  const entries: LogEntry[] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const agentId = lines[i]!;
    if (!agents.has(agentId)) continue;
    const frame = lines[i + 1]!;
    const envelope = JSON.parse(frame) as Envelope;
    entries.push({ agentId, seq: envelope.data.seq ?? 0, envelope, frame });
  }
  return entries;
}

/** An inbound item as the script reads it (INBOUND_FIELDS but the from-the-queue flag). */
function inboundFields(item: InboundItem): string[] {
  return [
    item.followerId,
    item.name ?? "",
    item.to,
    item.kind,
    item.dedupKey === null ? "" : `k${item.dedupKey}`,
    item.event ?? "",
    dataRest(item.envelope.data),
    JSON.stringify(item.envelope.result),
    item.envelope.data.msg_type,
    previewOf(item.envelope),
    String(item.receivedAt),
  ];
}

/** A media queue entry (inboundFields, then the intake's media base if it pushed it) as the
 * item it was made from. */
function parseQueued(raw: string, stored: boolean): QueuedItem {
  const fields = JSON.parse(raw) as string[];
  const [followerId, name, to, kind, dedup, event, data, result] = fields as Array<
    string | undefined
  >;
  if (fields.length < QUEUED_FIELDS || data === undefined || result === undefined) {
    throw new SyntaxError(`Cannot parse a media queue entry: ${fields.length} fields`);
  }
  const envelope = {
    data: JSON.parse(data === "}" ? "{}" : `{${data.slice(1)}`),
    result: JSON.parse(result),
  } as Envelope;
  return {
    item: {
      followerId: followerId!,
      name: name || null,
      to: to!,
      kind: kind as InboundItem["kind"],
      envelope,
      receivedAt: Number(fields[10]),
      dedupKey: dedup ? dedup.slice(1) : null,
      ...(event ? { event } : {}),
    },
    publicBase: fields[QUEUED_FIELDS] ?? null,
    stored,
    raw,
  };
}

/** The envelope's JSON after `{"data":{"seq":N`, which the script completes with the seq. */
function tailOf(envelope: Envelope): string {
  return `${dataRest(envelope.data)},"result":${JSON.stringify(envelope.result)}}`;
}

/** `data` as JSON without its seq and its opening `{`: what follows `{"data":{"seq":N`. */
function dataRest(data: EnvelopeData): string {
  const json = JSON.stringify(withoutSeq(data));
  return json === "{}" ? "}" : `,${json.slice(1)}`;
}

function withoutSeq(data: EnvelopeData): EnvelopeData {
  const copy = { ...data };
  delete copy.seq;
  return copy;
}

/** The script's refusal as window.ts words it, from the contact state the script read. */
function replyRefused(contact: Contact, now: number): ReplyRefusedError {
  const check = checkReplyAllowed(windowStateOf(contact), now);
  return new ReplyRefusedError(
    check.ok
      ? { ok: false, limit: "quota", reopensAt: null, message: "WeChat allows no more replies" }
      : check,
  );
}

/** Whether a Redis error reply starts with `code` (NOSCRIPT, or the script's STORE). */
function replyIs(error: unknown, code: string): boolean {
  return error instanceof Error && error.message.startsWith(`${code} `);
}
