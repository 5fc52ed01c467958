// The composition root: the whole bridge built from its configuration and its side effects
// (store, clock, fetch, ffmpeg), with the one route table. main.ts and every test build the
// server here, so the server the tests run is the server that ships.

import { checkingHost } from "./http/host_check.ts";
import { getLogger } from "@logtape/logtape";
import { Counter } from "prom-client";
import { createAgentMessages } from "./agents/agent_messages.ts";
import { agentIdFrom, createAgentSocketHandler } from "./agents/agent_socket.ts";
import { createAgentAuth } from "./agents/auth.ts";
import { createConversationRoutes } from "./agents/conversations.ts";
import { createTeamRoutes } from "./agents/team_routes.ts";
import type { Config } from "./config.ts";
import { createAccountFront } from "./account_front.ts";
import type { AccountConfig } from "./accounts.ts";
import { withAccount } from "./logging.ts";
import { createHub } from "./core/hub.ts";
import {
  type ContactCursor,
  type InboundItem,
  MessageTooLargeError,
  type Store,
  StoreError,
  StoreStateLostError,
} from "./core/store.ts";
import { createSwitchboard } from "./core/switchboard.ts";
import { HttpError } from "./http/http_error.ts";
import {
  type ConnectionInfo,
  defaultConnectionLimits,
  type GuardedHandler,
  type GuardedServer,
  openFilesLimit,
  serveDirect,
  serveGuarded,
} from "./http/connections.ts";
import { createDiskCheck } from "./http/disk_check.ts";
import {
  clientKeyOf,
  createKeyedRateLimiter,
  DEFAULT_LIMITS,
  readBodyLimited,
} from "./http/limits.ts";
import { createBridgeMetrics, PROMETHEUS_CONTENT_TYPE } from "./http/metrics.ts";
import { createRouteTable, errorResponse, json, type Route } from "./http/router.ts";
import { msgTypeLabel } from "./http/msg_type_label.ts";
import { createStaticFiles } from "./http/static_files.ts";
import { createMediaIntake, type MediaIntake } from "./media/intake.ts";
import { createSharedMediaIntake } from "./media/shared_intake.ts";
import { createMediaJobLimiter, createMediaPipeline, type GetMedia } from "./media/pipeline.ts";
import { serveMedia } from "./media/serve.ts";
import { renewMediaUrlRoute } from "./media/renew.ts";
import { createUrlSigner, renewMediaUrls } from "./media/signed_url.ts";
import { createDiskStorage, mediaKeyOf, type MediaStorage } from "./media/storage.ts";
import {
  createForgottenFiles,
  followerMediaKeys,
  mediaKeysIn,
  UPLOAD_HOLD_MS,
} from "./media/forgotten_files.ts";
import { createS3Client } from "./media/s3_client.ts";
import { createS3Storage } from "./media/s3_storage.ts";
import { videoThumbnail } from "./media/transcode.ts";
import { createToolLimiter, type ToolLimiter } from "./media/tool_limiter.ts";
import { loadMediaSecret } from "./media/url_secret.ts";
import { HEARTBEAT_FRAME } from "./protocol/envelope.ts";
import { createAgentFiles } from "./replies/agent_files.ts";
import { createAgentUpload } from "./replies/agent_upload.ts";
import { createDemoMedia } from "./replies/demo_media.ts";
import { createDemoOutbox } from "./replies/demo_outbox.ts";
import { createHostList } from "./replies/address_policy.ts";
import { createMediaUrlFetcher } from "./replies/media_url.ts";
import { resolveWithSystem } from "./replies/public_get.ts";
import { createReplyService, type ReplyContext } from "./replies/reply_service.ts";
import { historyRetentionMsOf, openStore } from "./store/open_store.ts";
import { createWechatClient } from "./wechat/api_client.ts";
import { createWechatCrypto } from "./wechat/crypto.ts";
import { nameSettings } from "./wechat/setting_names.ts";
import { createOperatorEvents } from "./wechat/operator_events.ts";
import { createPassiveReplies } from "./wechat/passive_reply.ts";
import { createRefusedCallbacks } from "./wechat/refused_callbacks.ts";
import { createWechatWebhook } from "./wechat/webhook.ts";
import { createSignedBodies } from "./wechat/signed_bodies.ts";

const log = getLogger(["bridge", "http"]);

/** SPEC's base path; every route is also served at the root. */
export const BASE = "/im_component/wx_official_account";

/** How long requests already in flight when the server stops may take before sockets close. */
const IN_FLIGHT_LIMIT_MS = 5_000;
/** How long a stop waits for media jobs under way before leaving them to the journal. */
const MEDIA_DRAIN_LIMIT_MS = 2_000;
/** How long a stop waits for replies on their way to WeChat (main.ts gives a stop 10 s). */
const REPLY_DRAIN_LIMIT_MS = 5_000;
/** How long a reply may stay "sending" at another instance (Redis) before it counts as left
 * unanswered: far past any send (WeChat's timeouts and retries, a video's upload). */
const UNANSWERED_AFTER_MS = 10 * 60_000;
/** How often replies left unanswered are looked for (and once at start). */
const UNANSWERED_SWEEP_MS = 60_000;
/** Contacts read at once when followers of an agent taken off the account are let go. */
const RELEASE_PAGE = 500;

/** The side effects a server is built with; each defaults to the real thing. */
export interface Effects {
  /** Default: the store the configuration names (Deno KV under DATA_DIR, memory, Redis). */
  store?: Store;
  now?: () => number;
  /**
   * Outbound HTTP: WeChat's API and follower media downloads. Agents' `media_url`s go through
   * node:http instead, connected to the address that was checked (src/replies/public_get.ts).
   */
  fetch?: typeof fetch;
  /** Resolves a host name an agent's `media_url` names; default the system's (getaddrinfo). */
  resolveHost?: (hostname: string) => Promise<string[]>;
  /** The ffmpeg binary (subprocesses). */
  ffmpeg?: string;
  /** The ffprobe binary (subprocesses). */
  ffprobe?: string;
  /** Where the console's files are read from. */
  staticDir?: string;
}

/** What every account of one process shares: ffmpeg runs, followers' media jobs and agents'
 * `media_url` downloads at once. */
interface ProcessLimits {
  tools: ToolLimiter;
  mediaJobs: ToolLimiter;
  /** As many as followers' media jobs, apart from them: an agent's slow `media_url` (15 s each,
   * 4 an agent) must not hold up every follower's pictures. */
  mediaUrls: ToolLimiter;
}

/** The heartbeat's turns an interval: one every 100 ms (at most 600), so a turn writes to a
 * few sockets of thousands rather than all at once. */
function heartbeatSlotsOf(intervalS: number): number {
  return Math.min(600, Math.max(1, Math.round(intervalS * 10)));
}

/**
 * Builds the whole bridge; call `listen()` to serve it and `stop()` to shut it down. With
 * ACCOUNTS_FILE, one bridge per account behind one front (src/account_front.ts).
 */
export async function createServer(config: Config, effects: Effects = {}): Promise<Server> {
  // One limit for the process: the cores and the memory are shared by every account's media.
  const limits: ProcessLimits = {
    tools: createToolLimiter(),
    mediaJobs: createMediaJobLimiter(),
    mediaUrls: createMediaJobLimiter(),
  };
  return config.accounts.length > 0
    ? await createAccountsServer(config, effects, limits)
    : await createAccountServer(config, effects, limits);
}

/** The bridge of one official account: its store, WeChat client, hub and routes. */
async function createAccountServer(config: Config, effects: Effects, limits: ProcessLimits) {
  const { tools } = limits;
  // A key without an appid, or a malformed key, stops start-up rather than every message.
  const wechatCrypto = config.wechatAesKey
    ? createWechatCrypto({
      aesKey: config.wechatAesKey,
      appId: config.wechatAppId ?? "",
      previousAesKey: config.wechatAesKeyPrevious,
      previousKeyName: nameSettings(config.accountId, "aesKeyPrevious"),
    })
    : undefined;
  const now = effects.now ?? Date.now;
  const doFetch = effects.fetch ?? fetch;
  const mediaSecret = await loadMediaSecret(config.dataDir, config.agentSecret);
  // Before the store opens, so a bucket that does not answer leaves nothing open behind it.
  const storedMedia = await openMediaStorage(config);
  const store = effects.store ?? await openStore(config, now);
  // One process holds an embedded store: every reply recorded before it opened was another's,
  // which stopped before WeChat answered it.
  const storeOpenedAt = now();
  // A forgotten follower's files go once no history names them; puts of a file being deleted
  // wait for it and write it again.
  const forgottenFiles = createForgottenFiles({
    dir: `${config.dataDir}/media-forgotten`,
    storage: storedMedia,
    named: (keys) => store.mediaInHistory(keys),
    heldElsewhere: store.mediaHeld ? (keys) => store.mediaHeld!(keys) : undefined,
    settled: () => intake.settled(),
    now,
  });
  const storage = forgottenFiles.guard(storedMedia);
  /** A forgotten follower's message whose files were stored after its forget listed them. */
  const forgetFilesOf = (item: InboundItem) => {
    const keys = mediaKeysIn(JSON.stringify(item.envelope.data.msg));
    if (keys.length === 0) return;
    // Not awaited: the sweep waits for the media jobs running, this one among them.
    forgottenFiles.remember(keys).then(() => forgottenFiles.sweep()).catch((error) =>
      log.error("Cannot record a forgotten follower's media files: {error}", { error })
    );
  };
  const metrics = createBridgeMetrics();

  let idCounter = 0;
  const idPrefix = now().toString(36);
  const newId = () => `${idPrefix}-${(++idCounter).toString(36)}`;

  const client = config.wechatAppId && config.wechatSecret
    ? createWechatClient({
      apiBase: config.wechatApiBase,
      appId: config.wechatAppId,
      secret: config.wechatSecret,
      fetch: doFetch,
      now,
      // Instances on one Redis share one token: each refresh of their own would revoke the others'.
      tokenCache: store.tokenCache,
      onCall: metrics.onWechatApiCall,
    })
    : null;
  const outbox = client === null ? createDemoOutbox() : null;
  const signer = createUrlSigner(mediaSecret, { ttlS: config.mediaUrlTtlS, now });
  const demoMedia = client === null
    ? createDemoMedia({
      storage: createDiskStorage(`${config.dataDir}/demo-media`),
      signer,
      maxBytes: config.mediaMaxBytes,
    })
    : null;
  // Demo pictures are served beside the bridge's media, from their own bounded directory.
  const servedMedia = demoMedia ? demoMedia.servedWith(storage) : storage;
  const getMedia: GetMedia = client ? (id, opts) => client.getMedia(id, opts) : demoMedia!.getMedia;
  // Each agent's files in memory: uploads and media_url replies count together.
  const agentFiles = createAgentFiles();
  const upload = createAgentUpload({
    files: agentFiles,
    // Its reply is written later: a forget meanwhile must not delete the file it names.
    storage: {
      ...storage,
      async put(bytes, ext) {
        const key = mediaKeyOf(bytes, ext);
        forgottenFiles.uploaded(key);
        // Every instance's forget keeps it too (with Redis): the reply may go through another.
        await store.holdMedia?.(key, UPLOAD_HOLD_MS);
        return await storage.put(bytes, ext);
      },
    },
    signer,
    client,
    onDemoMedia: demoMedia?.remember,
    limiter: tools,
    ffprobe: effects.ffprobe,
  });
  const pipeline = createMediaPipeline({
    jobs: limits.mediaJobs,
    storage,
    signer,
    getMedia,
    fetch: doFetch,
    allowedHosts: config.mediaAllowedHosts,
    maxBytes: config.mediaMaxBytes,
    timeoutMs: config.mediaTimeoutMs,
    ffmpeg: effects.ffmpeg,
    ffprobe: effects.ffprobe,
    limiter: tools,
  });

  // The hub deals sockets to these turns; the heartbeat timer below runs them.
  const heartbeatSlots = heartbeatSlotsOf(config.heartbeatIntervalS);
  const hub = createHub({
    onOnline: () => metrics.agentsOnline.set(hub.agentCount),
    onOffline: () => metrics.agentsOnline.set(hub.agentCount),
    heartbeatSlots,
  });
  const switchboard = createSwitchboard({
    store,
    hub,
    observer: {
      delivered(entry, sockets) {
        if (sockets > 0) {
          metrics.messagesOut.inc({ msg_type: msgTypeLabel(entry.envelope.data.msg_type) });
        }
      },
      routed(outcome, ms) {
        if (outcome === "delivered") metrics.deliveryLatency.observe(ms / 1000);
      },
    },
  });
  // A store that lost its state (Redis back empty) says so: operators alert on this counter.
  const storeStateLost = new Counter({
    name: "bridge_store_state_lost_total",
    help: "Times the store was found to have lost its state (a Redis that came back empty).",
    registers: [metrics.registry],
  });
  store.onStateLost?.(() => storeStateLost.inc());
  // The gauge is read synchronously at scrape time; the store answers asynchronously.
  let queueDepth = 0;
  metrics.queueDepth.setCollector(() => queueDepth);
  /** Tells agents about 48-hour windows closing or closed (SPEC: "window expiry"). */
  const sweepWindows = async (): Promise<number> =>
    store.sweepWindows ? await switchboard.apply(store.sweepWindows(now())) : 0;
  /** The timers a listening server runs: heartbeats, the queue gauge, window notices. */
  const timers: ReturnType<typeof setInterval>[] = [];
  function startTimers(): void {
    const turnMs = (config.heartbeatIntervalS * 1000) / heartbeatSlots;
    // Turns are counted from the clock, not from the timer's firings: each firing comes late on
    // a busy thread, and counted by firings the lateness of a whole interval's turns added up
    // (1 s heartbeats came 1.4 s apart). Turns missed are made up, at most one round.
    const startedAt = performance.now();
    let turnsDone = 0;
    timers.push(setInterval(() => {
      const due = Math.floor((performance.now() - startedAt + 1) / turnMs);
      for (let n = Math.min(due - turnsDone, heartbeatSlots); n > 0; n--) {
        hub.beat(HEARTBEAT_FRAME);
      }
      turnsDone = due;
    }, turnMs));
    timers.push(setInterval(() => {
      store.queueDepth().then((n) => queueDepth = n, () => {});
    }, 5_000));
    timers.push(setInterval(() => {
      sweepWindows().catch((error) => log.warn("Cannot sweep reply windows: {error}", { error }));
    }, config.windowSweepIntervalS * 1000));
    void settleUnanswered();
    timers.push(setInterval(() => void settleUnanswered(), UNANSWERED_SWEEP_MS));
  }

  /** The last sweep begun, and one waiting for it: sweeps run one at a time, so that two never
   * settle (and tell) one reply, and a sweep asked for meanwhile is run once, after. */
  let sweeping: Promise<number> = Promise.resolve(0);
  let nextSweep: Promise<number> | null = null;

  /** Fails the replies left "sending" by a bridge that stopped before WeChat answered, and
   * those this one left so (no sender and no outcome); resolves to how many (0 when the store
   * did not answer). */
  function settleUnanswered(): Promise<number> {
    if (nextSweep) return nextSweep;
    const next = sweeping.then(() => {
      nextSweep = null;
      return sweepUnanswered();
    });
    nextSweep = sweeping = next;
    return next;
  }

  async function sweepUnanswered(): Promise<number> {
    // Instances sharing Redis send at the same time: theirs count only once long overdue. On
    // an embedded store every reply before it opened was a stopped bridge's; after, one of
    // this process's that nothing sends any more is settled as late as another instance's.
    const overdue = now() - UNANSWERED_AFTER_MS;
    const before = config.redisUrl ? overdue : Math.max(storeOpenedAt, overdue);
    try {
      const settled = await replies.settleUnanswered(before);
      if (settled > 0) {
        log.warn("{count} replies were left unanswered by a stop: failed as not confirmed", {
          count: settled,
        });
      }
      return settled;
    } catch (error) {
      log.warn("Cannot settle replies left unanswered: {error}", { error });
      return 0;
    }
  }

  const auth = createAgentAuth({
    secret: config.agentSecret,
    allowedOrigins: config.allowedOrigins,
  });
  /** Who is calling an agent HTTP route: credentials, else `userid`. */
  async function agentOf(req: Request, url: URL, required: boolean): Promise<string | null> {
    const claimed = agentIdFrom(url);
    const hasToken = req.headers.has("authorization") || url.searchParams.has("token");
    if (!auth.required && claimed === null) {
      if (required) throw new HttpError(400, "Missing userid");
      return null;
    }
    if (auth.required && !hasToken && !required) {
      throw new HttpError(401, "Missing agent token");
    }
    return await auth.authenticate(req, url, claimed);
  }
  const agentRequired = async (req: Request, url: URL) => (await agentOf(req, url, true))!;

  const replyContext: ReplyContext = {
    store,
    switchboard,
    metrics,
    now,
    newId,
    companyId: config.companyId,
    signer,
  };
  const replies = createReplyService(
    replyContext,
    client
      ? {
        kind: "wechat",
        client,
        fetchMedia: createMediaUrlFetcher({
          resolve: effects.resolveHost ?? resolveWithSystem,
          privateHosts: createHostList(config.mediaUrlPrivateHosts),
          maxBytes: config.mediaMaxBytes,
          timeoutMs: config.mediaTimeoutMs,
          limiter: tools,
          jobs: limits.mediaUrls,
          ffprobe: effects.ffprobe,
        }),
        files: agentFiles,
        makeThumb: (video, maxBytes) =>
          videoThumbnail(video, {
            timeoutMs: config.mediaTimeoutMs,
            ffmpeg: effects.ffmpeg,
            limiter: tools,
            maxBytes,
          }),
        // Own keys only: an agent named constructor got Object.prototype's function.
        kfAccountOf: (agentId) =>
          Object.hasOwn(config.agentKfAccounts, agentId)
            ? config.agentKfAccounts[agentId]
            : undefined,
      }
      : { kind: "demo", outbox: outbox! },
  );
  const accountAgents = config.accountAgents && new Set(config.accountAgents);
  /** Whether the agent serves this account (ACCOUNTS_FILE's `agents`); one account: anyone. */
  const serves = accountAgents ? (agentId: string) => accountAgents.has(agentId) : undefined;
  const messages = createAgentMessages({
    store,
    serves,
    switchboard,
    replies,
    companyId: config.companyId,
    now,
    newId,
  });
  // Instances on one Redis keep a follower's media queue there: any of them may get the
  // follower's next message, and any may have to finish the queue of one that is gone.
  const accept = (item: InboundItem) => switchboard.accept(item);
  const journalDir = `${config.dataDir}/media-jobs`;
  const intake: MediaIntake = store.mediaQueue
    ? createSharedMediaIntake({
      pipeline,
      queue: store.mediaQueue,
      accept,
      journalDir,
      unreachable: (error) => store.unreachable?.(error) ?? false,
      discarded: forgetFilesOf,
    })
    : createMediaIntake({ pipeline, journalDir, accept, discarded: forgetFilesOf });
  const operatorEvents = createOperatorEvents({
    store,
    switchboard,
    onlineAgents: async () => store.onlineAgents ? await store.onlineAgents() : hub.onlineAgents(),
    countReport: (event) => metrics.accountReports.inc({ event }),
    now,
  });
  const webhook = createWechatWebhook({
    token: config.wechatToken,
    crypto: wechatCrypto,
    accountId: config.accountId,
    originalId: config.accountOriginalId,
    policy: {
      maxAgeS: config.wechatMaxAgeS,
      requireEncryption: config.wechatRequireEncryption,
    },
    companyId: config.companyId,
    now,
    newId,
    // Demo mode: the follower simulator's `?name=` is the follower's display name.
    acceptNames: outbox !== null,
    accept(given, _message, url) {
      metrics.messagesIn.inc({ msg_type: given.envelope.data.msg_type });
      const item = serves && given.to !== "" && !serves(given.to) ? { ...given, to: "" } : given;
      if (intake.wants(item)) return intake.submit(item, config.publicUrl ?? url.origin);
      return switchboard.accept(item);
    },
    report: operatorEvents.report,
    // The follower's media still being fetched goes first, or it would be stored afterwards;
    // its messages that come meanwhile are stored after the forget.
    // Its files are written down before the store forgets it, and deleted after WeChat has
    // its answer.
    forget: (message, envelope) =>
      intake.forget(message.from, async () => {
        const keys = await followerMediaKeys(message.from, (id, before, limit) =>
          store.readHistory(id, before, limit));
        await forgottenFiles.remember(keys);
        await operatorEvents.forget(message, envelope);
        if (keys.length > 0) {
          void forgottenFiles.sweep();
        }
      }),
    profileChanged: operatorEvents.profileChanged,
    location: operatorEvents.location,
    // An agent taken off the account's list is still known to its store: ToUserName naming
    // it is the account's message, for the agents who serve it.
    isAgent: (id) => (serves?.(id) ?? true) ? store.isKnownAgent(id) : Promise.resolve(false),
    maxPlainBytes: DEFAULT_LIMITS.wechatXmlBytes,
    // WeChat's retry may reach another instance, and so may a replay, or reach the next run:
    // shared and on-disk stores remember (STORE=memory: this process does).
    signedBodies: store.firstBody
      ? {
        first: (signature, hash, expiresAtMs) =>
          store.firstBody!(signature, hash, expiresAtMs - now()),
        settle: () => store.bodiesKept?.() ?? Promise.resolve(),
      }
      : createSignedBodies(now),
    passive: createPassiveReplies({
      autoReplyText: config.autoReplyText,
      workingHours: config.workingHours,
      transferCustomerService: config.transferCustomerService,
      now,
      anyAgentOnline: async () =>
        store.onlineAgents ? (await store.onlineAgents()).length > 0 : hub.agentCount > 0,
      // A follower's lines are spread over the instances sharing a store: it decides.
      ...(store.firstAutoReply
        ? { firstAutoReply: (id: string, ttlMs: number) => store.firstAutoReply!(id, ttlMs) }
        : {}),
    }),
  });
  const upgrade = createAgentSocketHandler({
    hub,
    switchboard,
    messages,
    auth,
    limits: DEFAULT_LIMITS,
    idleTimeoutS: Math.max(config.heartbeatIntervalS * 2, 10),
    unreachable: (error) => store.unreachable?.(error) ?? false,
    onSocketCount: (open) => metrics.agentSocketsOpen.set(open),
    onRejected: (reason) => metrics.rejected.inc({ reason }),
  });
  const files = createStaticFiles(
    effects.staticDir ?? new URL("../static/", import.meta.url).pathname,
    {
      mediaOrigins: config.publicUrl && URL.canParse(config.publicUrl)
        ? [new URL(config.publicUrl).origin]
        : [],
    },
  );
  const conversations = createConversationRoutes({
    store,
    agentOf: agentRequired,
    // Media URLs have a lifetime; history is read long after, so it hands out fresh ones.
    renewMsg: (msg, direction) => renewMediaUrls(signer, msg, direction, config.publicUrl),
    now,
    historyRetentionMs: historyRetentionMsOf(config),
  });
  const team = createTeamRoutes({
    store,
    now,
    serves,
    agentOf: agentRequired,
    // A shared store knows who is online on every instance; otherwise this process does.
    onlineAgents: async () => {
      const shared = (store as { onlineAgents?: () => Promise<string[]> }).onlineAgents;
      return shared ? await shared.call(store) : [...hub.onlineAgents()];
    },
  });

  // A token or key that no longer matches is refused on every callback: said, and counted.
  const refusedCallbacks = createRefusedCallbacks({
    count: (status) => metrics.rejected.inc({ reason: `webhook_${status}` }),
  });
  const decoder = new TextDecoder();
  /** WeChat's XML, by either route, answered and timed the same way. */
  async function receiveXml(body: string, url: URL, started: number): Promise<Response> {
    let res: Response;
    try {
      res = await webhook.receive(body, url);
    } catch (error) {
      refusedCallbacks.note(error);
      throw error;
    }
    metrics.webhookDuration.observe((performance.now() - started) / 1000);
    return res;
  }
  /** WeChat's URL check (its console's 提交), refused or not, as the callbacks are. */
  function verifyUrl(url: URL): Response {
    try {
      return webhook.verify(url);
    } catch (error) {
      refusedCallbacks.note(error);
      throw error;
    }
  }
  const sendLimiter = createKeyedRateLimiter(config.sendRatePerS, config.sendRatePerS * 2, now);
  async function send(
    req: Request,
    url: URL,
    _params: unknown,
    info?: ConnectionInfo,
  ): Promise<Response> {
    const started = performance.now();
    // The seed's own test posts WeChat XML to /send: read up to WeChat's cap, then hold JSON
    // to its own.
    const bytes = await readBodyLimited(
      req,
      Math.max(DEFAULT_LIMITS.sendBodyBytes, DEFAULT_LIMITS.xmlBodyBytes),
    );
    const text = decoder.decode(bytes);
    if (text.trimStart().startsWith("<")) return await receiveXml(text, url, started);
    if (bytes.byteLength > DEFAULT_LIMITS.sendBodyBytes) {
      throw new HttpError(413, `Request body is larger than ${DEFAULT_LIMITS.sendBodyBytes} bytes`);
    }
    const agentId = await agentOf(req, url, false);
    // Per agent, or per client address for anonymous pushes (open mode, seed 2.1).
    const wait = sendLimiter.take(
      agentId ?? `addr:${clientKeyOf(info?.remoteAddr.hostname ?? "?")}`,
    );
    if (wait > 0) {
      metrics.rejected.inc({ reason: "send_rate" });
      throw new HttpError(
        429,
        `Too many messages: at most ${config.sendRatePerS} per second`,
        { "retry-after": String(wait) },
      );
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new HttpError(400, "Cannot parse body: expected JSON (or WeChat XML)");
    }
    metrics.messagesIn.inc({ msg_type: "agent" });
    const answer = await messages.handle(agentId, body);
    const res = json(answer.body, answer.status);
    for (const [name, value] of Object.entries(answer.headers ?? {})) res.headers.set(name, value);
    return res;
  }
  function sendXml(req: Request, url: URL): Promise<Response> {
    const started = performance.now();
    // A chained promise, not another async function awaiting two: every webhook passes here.
    return readBodyLimited(req, DEFAULT_LIMITS.xmlBodyBytes).then((bytes) =>
      receiveXml(decoder.decode(bytes), url, started)
    );
  }
  const disk = createDiskCheck(config.dataDir);
  async function ready(): Promise<Response> {
    try {
      await store.ping();
    } catch (error) {
      const status = error instanceof StoreStateLostError
        ? "store lost its state: re-establishing"
        : "store unreachable";
      return json({ status }, 503);
    }
    const problem = await disk.check();
    if (problem !== null) return json({ status: problem }, 503);
    return json({ status: "ready" });
  }
  /**
   * Demo routes exist only in demo mode, and with AGENT_SECRET set only for an agent's token:
   * they show any follower's replies and take uploads, which no stranger may use.
   */
  const demoOnly = (handler: Route["handler"]): Route["handler"] => async (req, url, params) => {
    if (!outbox) throw new HttpError(404, "Demo mode is off: WeChat credentials are set");
    if (auth.required) await auth.authenticate(req, url, null);
    return await handler(req, url, params);
  };
  const publicBase = (url: URL) => config.publicUrl ?? url.origin;

  // The route table: every route of the bridge, each at SPEC's base path and at the root.
  const B = (path: string) => [`${BASE}${path}`, path];
  const routes: Array<[string, string[], Route["handler"]]> = [
    ["GET", B("/msg"), (req, url) => upgrade(req, url)],
    ["POST", B("/send"), send],
    ["GET", B("/send_xml"), (_req, url) => verifyUrl(url)],
    ["POST", B("/send_xml"), sendXml],
    ["GET", B("/contacts"), conversations.contacts],
    ["GET", B("/history"), conversations.history],
    ["GET", B("/search"), team.search],
    ["GET", B("/agents"), team.agents],
    ["GET", B("/quick_replies"), team.listQuickReplies],
    ["POST", B("/quick_replies"), team.saveQuickReply],
    ["DELETE", B("/quick_replies/:id"), team.deleteQuickReply],
    ["GET", B("/media_url"), async (req, url) => {
      await agentRequired(req, url);
      return await renewMediaUrlRoute(url, signer, servedMedia);
    }],
    ["POST", B("/upload"), async (req, url) => {
      const agentId = await agentRequired(req, url);
      return await upload(req, publicBase(url), agentId);
    }],
    [
      "POST",
      [`${BASE}/demo/media`],
      demoOnly((req, url) => demoMedia!.upload(req, publicBase(url))),
    ],
    [
      "GET",
      [`${BASE}/demo/replies`],
      demoOnly((_req, url) => {
        const contactId = url.searchParams.get("contact_id");
        if (!contactId) throw new HttpError(400, "Missing contact_id");
        const since = Number(url.searchParams.get("since") ?? 0);
        return json(outbox!.since(contactId, Number.isFinite(since) ? since : 0));
      }),
    ],
    [
      "GET",
      ["/media/:key"],
      (req, url, params) =>
        serveMedia(req, params["key"] ?? "", url.searchParams, {
          storage: servedMedia,
          signer,
          now,
        }),
    ],
    ["GET", ["/healthz"], () => json({ status: "ok" })],
    ["GET", ["/readyz"], ready],
    [
      "GET",
      ["/metrics"],
      async () =>
        new Response(await metrics.render(), {
          headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
        }),
    ],
    [
      "GET",
      ["/"],
      (req, url) =>
        req.headers.get("upgrade")?.toLowerCase() === "websocket"
          ? upgrade(req, url)
          : files.serve(req, "index.html"),
    ],
    ["GET", ["/console"], (req) => files.serve(req, "console.html")],
    ["GET", ["/console/follower"], (req) => files.serve(req, "follower.html")],
    ["GET", ["/favicon.ico"], (req) => files.serve(req, "favicon.svg")],
    ["GET", ["/static/:file+"], (req, _url, params) => files.serve(req, params["file"] ?? "")],
  ];
  const table = createRouteTable(
    routes.flatMap(([method, paths, handler]) => paths.map((path) => ({ method, path, handler }))),
  );

  let lastUnreachableLog = -Infinity;
  /** The answer to a request whose route threw: said to the client, logged when unexpected. */
  function failed(error: unknown, req: Request, url: URL): Response {
    if (error instanceof HttpError) {
      return errorResponse(error.status, error.message, error.headers);
    }
    if (error instanceof SyntaxError) return errorResponse(400, error.message);
    if (error instanceof MessageTooLargeError) return errorResponse(413, error.message);
    // Logged where it was found; WeChat retries a 503 until the state is back.
    if (error instanceof StoreStateLostError) {
      return errorResponse(503, error.message, { "retry-after": "1" });
    }
    // Every request fails the same way while it lasts: one line in 10 s says it, not a stack
    // trace a request; /readyz answers 503 meanwhile.
    if (store.unreachable?.(error)) {
      const t = performance.now();
      if (t - lastUnreachableLog >= 10_000) {
        lastUnreachableLog = t;
        log.warn("The store cannot take requests: they are answered 503 ({error})", {
          error: (error as Error).message,
        });
      }
      return errorResponse(503, "Store unavailable: retry", { "retry-after": "1" });
    }
    log.error("Request {method} {path} failed: {error}", {
      method: req.method,
      path: url.pathname,
      error,
    });
    return errorResponse(500, "Internal error");
  }

  // While stopping, new requests are turned away (WeChat retries, a balancer moves on), and the
  // ones in flight finish before the sockets close: whatever was answered `success` is delivered.
  let stopping = false;
  let inFlight = 0;
  // Counting and routing in one async function, not one awaiting the other: each layer of
  // async call was a promise, a frame and a turn of the microtask queue on every webhook.
  async function handler(req: Request, info?: ConnectionInfo): Promise<Response> {
    if (stopping) {
      return errorResponse(503, "Server shutting down: retry", { "retry-after": "1" });
    }
    inFlight++;
    try {
      const url = new URL(req.url);
      try {
        const found = table.find(req.method === "HEAD" ? "GET" : req.method, url);
        // The connection is passed along, not kept per request in a WeakMap: V8 treats every
        // entry of one as an ephemeron. Only anonymous pushes to /send read its address.
        if ("handler" in found) return await found.handler(req, url, found.params, info);
        if (found.allowed.length > 0) {
          // HEAD is served wherever GET is (the lookup above): the answer says so.
          const allowed = found.allowed.includes("GET") && !found.allowed.includes("HEAD")
            ? [...found.allowed, "HEAD"]
            : found.allowed;
          return errorResponse(405, `Method ${req.method} not allowed`, {
            allow: allowed.join(", "),
          });
        }
        return errorResponse(404, `No route for ${url.pathname}`);
      } catch (error) {
        return failed(error, req, url);
      }
    } finally {
      inFlight--;
    }
  }

  let served: GuardedServer | undefined;
  let stopped: Promise<void> | undefined;
  /**
   * Followers still bound to an agent taken off this account's list are let go (closed): the
   * file is read at start, that agent can never connect here again, and their next message
   * would wait in its queue, where no one else could claim or answer it.
   */
  async function releaseRemovedAgents(): Promise<void> {
    if (!serves) return;
    for (const { agent_id: agentId } of await store.listAgents()) {
      if (serves(agentId)) continue;
      let released = 0;
      let after: ContactCursor | null = null;
      for (;;) {
        const page = await store.listContacts(agentId, { limit: RELEASE_PAGE, after });
        for (const contact of page) {
          if (contact.agent_id !== agentId) continue;
          try {
            await switchboard.apply(store.closeConversation(contact.follower_id, agentId));
            released++;
          } catch (error) {
            // Another instance on the same store let it go first, or the follower wrote meanwhile.
            if (!(error instanceof StoreError)) throw error;
          }
        }
        const last = page[page.length - 1];
        if (page.length < RELEASE_PAGE || last === undefined) break;
        after = { at: last.last_message_at, id: last.follower_id };
      }
      if (released > 0) {
        log.warn(
          "Agent {agent} no longer serves this account: {count} followers it served go to its agents",
          { agent: agentId, count: released },
        );
      }
    }
  }

  async function start(): Promise<void> {
    await releaseRemovedAgents();
    const resumed = await intake.recover();
    if (resumed) {
      log.info("Resuming {count} media messages from before the restart", { count: resumed });
    }
    // A forget's files a crash left undeleted.
    void forgottenFiles.sweep();
    startTimers();
  }

  return {
    handler,
    hub,
    switchboard,
    metrics,
    intake,
    store,
    sweepWindows,
    /** The sweep of replies left unanswered that the timers run (once at start, each minute). */
    settleUnanswered,
    /** Demo mode: no WeChat credentials, replies go to the follower simulator. */
    demo: outbox !== null,
    /** Resumes journaled media jobs and starts the timers, without serving (several accounts). */
    start,
    /** Resumes journaled media jobs, serves on `port` (0: a free one), starts the heartbeat. */
    async listen(
      options: { port: number; hostname: string; onListen?: (addr: Deno.NetAddr) => void },
    ): Promise<Deno.NetAddr> {
      await start();
      served = listenOn(config, options, handler);
      options.onListen?.(served.addr);
      return served.addr;
    },
    /**
     * Stops: new requests get 503, those in flight finish, sockets close with `code` (1012 tells
     * agents to reconnect with `since=`), accepted messages are delivered, the store closes.
     */
    stop(code = 1012, reason = "server restarting: reconnect with since="): Promise<void> {
      stopped ??= (async () => {
        stopping = true;
        served?.stopAccepting();
        const patience = performance.now() + IN_FLIGHT_LIMIT_MS;
        while (inFlight > 0 && performance.now() < patience) {
          await new Promise((r) => setTimeout(r, 5));
        }
        for (const timer of timers.splice(0)) clearInterval(timer);
        await switchboard.drain();
        hub.closeAll(code, reason);
        // Until the agents answer the close, the server's own shutdown would close their
        // sockets again as 1001 "going away" and hide the code that says "reconnect with since=".
        const closing = performance.now() + 1_000;
        while (hub.socketCount > 0 && performance.now() < closing) {
          await new Promise((r) => setTimeout(r, 5));
        }
        // Replies already at WeChat finish (the agents, moved elsewhere, hear of them through
        // the store): cut off, one would reach the follower but stay "sending", and the agent
        // might send it again.
        await waitAtMost(replies.drain(), REPLY_DRAIN_LIMIT_MS);
        // Requests still waiting on their client (a stalled body) are cut here, not waited for.
        await served?.shutdown();
        // Media jobs still running (a slow WeChat download) stay journaled and resume at the
        // next start, or stay queued in Redis for another instance: waiting for them could
        // outlast the shutdown deadline.
        intake.stop();
        await waitAtMost(intake.drain(), MEDIA_DRAIN_LIMIT_MS);
        // A deletion cut off here runs again at the next start.
        await waitAtMost(forgottenFiles.stop(), MEDIA_DRAIN_LIMIT_MS);
        await store.close();
      })();
      return stopped;
    },
  };
}

/** Waits for `work`, but no longer than `ms` (a stop has its own deadline). */
async function waitAtMost(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([work, new Promise((r) => timer = setTimeout(r, ms))]);
  clearTimeout(timer);
}

/**
 * The media storage MEDIA_STORE names: DATA_DIR/media, or a bucket every instance shares, which
 * must answer before the bridge starts (a wrong key or bucket is said once, not on every image).
 */
async function openMediaStorage(config: Config): Promise<MediaStorage> {
  if (config.mediaStore.kind === "disk") return createDiskStorage(`${config.dataDir}/media`);
  const storage = createS3Storage({
    client: createS3Client(config.mediaStore, { timeoutMs: config.mediaTimeoutMs }),
    prefix: config.mediaStore.prefix,
    presign: config.mediaStore.presign,
  });
  await storage.check();
  return storage;
}

/**
 * Several accounts: a bridge for each (its own DATA_DIR/accounts/<id>, Redis key prefix, WeChat
 * credentials), served on one port by the front. What a single bridge exposes (hub, store, …)
 * is the first account's; `accounts` has each.
 */
async function createAccountsServer(
  config: Config,
  effects: Effects,
  limits: ProcessLimits,
): Promise<Server> {
  const units = new Map<string, AccountServer>();
  try {
    for (const account of config.accounts) {
      // Each account opens its own store: a store handed in by a test is for one account.
      const unit = await withAccount(
        account.id,
        () =>
          createAccountServer(configOf(config, account), { ...effects, store: undefined }, limits),
      );
      units.set(account.id, unit);
    }
  } catch (error) {
    await Promise.all([...units.values()].map((unit) => unit.stop()));
    throw error;
  }
  const front = createAccountFront({
    accounts: config.accounts.map((account) => ({ config: account, unit: units.get(account.id)! })),
    auth: createAgentAuth({ secret: config.agentSecret, allowedOrigins: config.allowedOrigins }),
    base: BASE,
  });
  const first = units.get(config.accounts[0]!.id)!;
  // Timers and journaled jobs started here log as their account's.
  const startEach = async () => {
    for (const [id, unit] of units) await withAccount(id, () => unit.start());
  };
  let served: GuardedServer | undefined;
  let stopped: Promise<void> | undefined;
  return {
    ...first,
    handler: front.handler,
    accounts: units,
    demo: [...units.values()].every((unit) => unit.demo),
    start: startEach,
    async listen(options) {
      await startEach();
      served = listenOn(config, options, front.handler);
      options.onListen?.(served.addr);
      return served.addr;
    },
    stop(code, reason) {
      stopped ??= (async () => {
        // Each account turns new requests away, finishes its own and closes its agents' sockets.
        await Promise.all(
          [...units].map(([id, unit]) => withAccount(id, () => unit.stop(code, reason))),
        );
        await served?.shutdown();
      })();
      return stopped;
    },
  };
}

/** The listening socket: guarded against held connections (the default), or Deno.serve alone
 * behind a proxy that guards (CONNECTION_GUARD=off; see docs/production.md for the cost). */
function listenOn(
  config: Config,
  options: { port: number; hostname: string },
  unchecked: GuardedHandler,
): GuardedServer {
  const handler = checkingHost(unchecked);
  if (!config.connectionGuard) return serveDirect(options, handler);
  const limits = defaultConnectionLimits(openFilesLimit());
  if (config.maxConnections !== undefined) limits.maxConnections = config.maxConnections;
  log.debug("At most {max} connections", { max: limits.maxConnections });
  return serveGuarded({ port: options.port, hostname: options.hostname, limits }, handler);
}

/** One account's configuration: its WeChat credentials, its own data directory and key prefix. */
function configOf(config: Config, account: AccountConfig): Config {
  return {
    ...config,
    wechatToken: account.token,
    wechatAesKey: account.aesKey,
    wechatAesKeyPrevious: account.aesKeyPrevious,
    wechatAppId: account.appId,
    wechatSecret: account.secret,
    wechatApiBase: account.apiBase ?? config.wechatApiBase,
    agentKfAccounts: account.kfAccounts,
    autoReplyText: account.autoReplyText ?? config.autoReplyText,
    dataDir: `${config.dataDir}/accounts/${account.id}`,
    redisUrl: config.redisUrl ? withRedisPrefix(config.redisUrl, account.id) : undefined,
    accounts: [],
    accountAgents: account.agents ?? undefined,
    accountId: account.id,
    accountOriginalId: account.originalId,
  };
}

/** The Redis URL with the account's key prefix under the configured one (`bridge:` default). */
function withRedisPrefix(redisUrl: string, accountId: string): string {
  const url = new URL(redisUrl);
  const base = url.searchParams.get("prefix") || "bridge:";
  url.searchParams.set("prefix", `${base}${accountId}:`);
  return url.toString();
}

type AccountServer = Awaited<ReturnType<typeof createAccountServer>>;

/** A built server; `accounts` is there with ACCOUNTS_FILE, each account's own bridge by id. */
export type Server = AccountServer & { accounts?: ReadonlyMap<string, AccountServer> };
