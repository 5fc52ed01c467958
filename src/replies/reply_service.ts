// An agent's reply on its way to the follower: checked against the contact's owner and WeChat's
// window and quota, recorded and echoed to the agent's sockets, then sent through WeChat's
// customer-service API (or the demo outbox) one at a time per follower, with the result told
// back to the agent as a 102 `reply_sent` or a -1 carrying WeChat's errcode (not told when its
// follower was forgotten meanwhile, and not sent at all when that was before its turn). A reply
// that delivered nothing (WeChat refused it, or it never reached WeChat's send) gives its count
// back.

import { getLogger } from "@logtape/logtape";
import { type AgentAnswer, refuse, type ReplyHandler } from "../agents/agent_messages.ts";
import { settleUnanswered } from "./unanswered_replies.ts";
import { createSystemEnvelope, type Envelope } from "../protocol/envelope.ts";
import type { Switchboard } from "../core/switchboard.ts";
import type { BridgeMetrics } from "../http/metrics.ts";
import {
  type Applied,
  type HistoryItem,
  type LogEntry,
  type ReplyOutcomeOptions,
  ReplyRefusedError,
  type Store,
} from "../core/store.ts";
import { WechatApiError, type WechatClient } from "../wechat/api_client.ts";
import type { DemoOutbox } from "./demo_outbox.ts";
import { type AgentReply, mediaToUpload, parseAgentReply, toCustomMessage } from "./outbound.ts";
import { MediaUrlError } from "./public_get.ts";
import { unsignedMediaUrl, type UrlSigner } from "../media/signed_url.ts";
import type { UploadType } from "./upload_rules.ts";
import { type AgentFiles, tooManyFiles } from "./agent_files.ts";
import { createClientIdReleases } from "./client_id_release.ts";
import {
  checkReplyAllowed,
  checkTypingAllowed,
  closesWindow,
  type ReplyCheck,
  returnsReply,
  windowClosesAt,
  windowStateOf,
} from "../protocol/window.ts";

const log = getLogger(["bridge", "replies"]);

/** Where replies go: WeChat's API, or the demo outbox when there are no credentials. */
export type ReplyTarget =
  | {
    kind: "wechat";
    client: WechatClient;
    fetchMedia: (url: string, type: UploadType) => Promise<MediaFile>;
    /** Each agent's files in memory (agent_files.ts): a media_url's file holds a place from its
     * download until its reply is done. */
    files?: AgentFiles;
    /** A JPEG thumbnail of at most `maxBytes` of a video, for a video reply without one. */
    makeThumb?: (video: Uint8Array, maxBytes: number) => Promise<Uint8Array>;
    /** The customer-service account an agent's replies are shown as sent by (AGENT_KF_ACCOUNTS). */
    kfAccountOf?: (agentId: string) => string | undefined;
  }
  | { kind: "demo"; outbox: DemoOutbox };

/** WeChat's limit for a `thumb` upload. */
const THUMB_MAX_BYTES = 64 * 1024;

/** What the reply service works with. */
export interface ReplyContext {
  store: Store;
  switchboard: Switchboard;
  metrics: BridgeMetrics;
  now: () => number;
  newId: () => string;
  companyId: string;
  /** The media URL signer: a reply's `media_url` shaped like the bridge's must be signed by it. */
  signer?: UrlSigner;
}

/** A file an agent's `media_url` pointed at. */
export interface MediaFile {
  bytes: Uint8Array;
  contentType: string;
  filename: string;
}

/** A reply as its count was taken: its history number and the window (its follower's act, ms)
 * it was counted in. */
interface Counted {
  n: number;
  countedIn: number;
  /** Its echo in the agent's log: whether its follower was forgotten since is asked of it. */
  logged?: LogEntry;
}

/** A reply whose follower was forgotten (user_authorization_revoke) before it reached WeChat. */
class FollowerForgotten extends Error {}

/** A reply not sent because the store could not say whether its follower was forgotten. */
class ForgetUnknown extends Error {}

/** How long an HTTP caller waits for WeChat's answer before it is told "sending". */
const HTTP_WAIT_MS = 10_000;
/** How many times a reply's outcome the store refused is written again (over about 8 minutes). */
const OUTCOME_TRIES = 20;
/** How long a client_id is remembered. */
const CLIENT_ID_TTL_MS = 24 * 3600_000;
/** A recorded reply's error when the bridge failed on it before WeChat was asked. */
const NOT_SENT = "The bridge failed before sending it: nothing reached WeChat";

/** Makes and uploads a video's thumbnail; undefined (the video goes without) when it cannot. */
async function uploadThumb(
  target: Extract<ReplyTarget, { kind: "wechat" }>,
  video: Uint8Array,
): Promise<string | undefined> {
  try {
    const jpeg = await target.makeThumb!(video, THUMB_MAX_BYTES);
    if (jpeg.byteLength > THUMB_MAX_BYTES) {
      log.warn("Video thumbnail is {bytes} bytes, over WeChat's 64 KB: sent without", {
        bytes: jpeg.byteLength,
      });
      return undefined;
    }
    return await target.client.uploadMedia("thumb", jpeg, "thumb.jpg", "image/jpeg");
  } catch (error) {
    // A video WeChat plays without a cover is better than no video.
    log.warn("Cannot make a thumbnail for a video reply: {error}", { error });
    return undefined;
  }
}

/** Creates the reply handler over a target. */
export function createReplyService(
  ctx: ReplyContext,
  target: ReplyTarget,
): ReplyHandler & {
  drain(): Promise<void>;
  settleUnanswered(before: number): Promise<number>;
} {
  const { store, switchboard } = ctx;
  /** Replies this process recorded and is still sending: never settled as left unanswered. */
  const inFlight = new Set<string>();
  /** Replies whose outcome the store refused, until written again (or given up): still this
   * process's, though their turn is over. */
  const outcomesPending = new Set<string>();
  const byClientId = new Map<string, { at: number; result: Promise<AgentAnswer> }>();
  const perFollower = new Map<string, Promise<unknown>>();
  const releases = createClientIdReleases(store);
  /** Outcomes and give-backs the store refused, to be written again (untilTaken); stopped at
   * shutdown. */
  const outcomeRetries = { timers: new Set<ReturnType<typeof setTimeout>>(), stopped: false };

  function notify(agentId: string, envelope: Envelope): Promise<unknown> {
    return switchboard.sendToAgents([{ agentId, envelope }]).catch((error) => {
      log.error("Cannot tell agent {agent_id} a reply's result: {error}", {
        agent_id: agentId,
        error,
      });
      // A store that takes nothing now (a disk filled while WeChat took the reply) left the
      // socket never told: the console showed the reply on its way, and it was sent again.
      // Told here at once, unlogged; its history item gets the outcome (recordOutcome).
      if (store.unreachable?.(error)) switchboard.tell(agentId, envelope);
    });
  }

  async function deliver(
    agentId: string,
    followerId: string,
    reply: AgentReply,
    data: Record<string, unknown>,
    file: MediaFile | null,
    /** Called before anything goes to WeChat (the upload, the send); throws FollowerForgotten
     * when its follower was forgotten meanwhile. */
    stillWanted: () => Promise<void>,
    /** Called as the send to WeChat starts: a failure before it delivered nothing. */
    sending: () => void,
  ) {
    await stillWanted();
    if (target.kind === "demo") {
      target.outbox.add(followerId, {
        msg_type: reply.msgType,
        msg: data["msg"] as Record<string, unknown>,
        send_time: Math.floor(ctx.now() / 1000),
        agent_id: agentId,
      });
      return;
    }
    const upload = mediaToUpload(reply);
    let mediaId: string | undefined;
    let thumbMediaId: string | undefined;
    if (upload && file) {
      mediaId = await target.client.uploadMedia(
        upload.type,
        file.bytes,
        file.filename,
        file.contentType,
      );
      if (reply.msgType === "video" && reply.thumbMediaId === null && target.makeThumb) {
        thumbMediaId = await uploadThumb(target, file.bytes);
      }
    }
    // The upload took a while: the follower may have been forgotten since.
    if (mediaId !== undefined) await stillWanted();
    sending();
    await target.client.sendCustomMessage(
      toCustomMessage(followerId, reply, {
        mediaId,
        thumbMediaId,
        kfAccount: target.kfAccountOf?.(agentId),
      }),
    );
  }

  /** Gives a reply's count back (it delivered nothing): what the -1 then says of the quota. */
  async function giveBack(followerId: string, counted: Counted): Promise<Record<string, number>> {
    const write = () => store.returnReply(followerId, counted.n, counted.countedIn);
    try {
      const left = await write();
      // The bridge's count after, so the agent's program shows the reply it can still send.
      return left === null ? {} : { replies_since_inbound: left };
    } catch (error) {
      // Tried again while the store is away (a Redis loading or busy refuses at once): given
      // up, it stayed counted, one reply less than WeChat allows until the follower wrote. A
      // late one is given back only into the window it was counted in, once: never one more.
      const failed = (e: unknown, again: boolean) =>
        log.error("Cannot give back the refused reply of {follower_id}{again}: {error}", {
          follower_id: followerId,
          again: again ? ", trying again" : "",
          error: e,
        });
      failed(error, true);
      untilTaken(write, failed, 1);
      return {};
    }
  }

  /**
   * Whether the reply's follower was forgotten since the reply was recorded
   * (user_authorization_revoke; by the replay's rule, its echo at or below the forget's cut).
   * Its outcome is then told nobody: a notice would name the follower and its reply again, in
   * the agent's log, after the revoke's notice dropped the conversation.
   */
  async function forgottenSince(counted: Counted | null): Promise<boolean> {
    if (counted?.logged === undefined) return false;
    try {
      return await switchboard.wasForgotten(counted.logged);
    } catch (error) {
      log.warn("Cannot tell whether a reply's follower was forgotten: {error}", { error });
      return false;
    }
  }

  /**
   * A reply whose follower was forgotten while it waited its turn: nothing more goes to WeChat
   * for that follower. Its socket agent is told nothing, as of a late outcome after a forget (the
   * revoke's notice dropped the conversation); an HTTP caller still waiting gets 410.
   */
  async function dropForgotten(
    followerId: string,
    n: number,
    id: string,
    echo: { client_id?: string },
  ): Promise<AgentAnswer> {
    log.info("A reply to forgotten follower {follower_id} is not sent", {
      follower_id: followerId,
    });
    // By its id: it lands on this reply only, gone with the forget (or a new conversation's).
    await store.updateReply(followerId, { n, id }, "failed", "not sent: the follower was forgotten")
      .catch((error) =>
        log.error("Cannot record the dropped reply of {follower_id}: {error}", {
          follower_id: followerId,
          error,
        })
      );
    return refuse(
      410,
      `Not sent: follower ${followerId} revoked its authorization (user_authorization_revoke) before the reply's turn`,
      { ...echo, reply_id: id, contact_id: followerId },
    );
  }

  /**
   * Runs a store write, tried again while the store is away (over about 8 minutes, stopped at
   * shutdown); `failed` is told the first failure and the last.
   */
  async function untilTaken(
    write: () => Promise<unknown>,
    failed: (error: unknown, again: boolean) => void,
    tries = 0,
    /** Called once it is written (true), or given up (false). */
    ended?: (written: boolean) => void,
  ): Promise<void> {
    try {
      await write();
      ended?.(true);
    } catch (error) {
      const again = !outcomeRetries.stopped && tries < OUTCOME_TRIES;
      if (tries === 0 || !again) failed(error, again);
      if (!again) return ended?.(false);
      const timer = setTimeout(() => {
        outcomeRetries.timers.delete(timer);
        untilTaken(write, failed, tries + 1, ended);
      }, Math.min(1_000 * 2 ** tries, 30_000));
      Deno.unrefTimer(timer);
      outcomeRetries.timers.add(timer);
    }
  }

  /**
   * Writes a reply's outcome on its history item. A store that fails here does not change the
   * outcome the agent is told: a reply WeChat took, answered "store unavailable: retry", was
   * sent again under a fresh client_id and reached the follower twice.
   */
  function recordOutcome(
    followerId: string,
    reply: { n: number; id: string },
    status: "sent" | "failed",
    error?: string,
    options?: ReplyOutcomeOptions,
  ): Promise<void> {
    // Tried again while the store is away: left as it was, history said "sending" for good,
    // and the console showed the reply on its way after every reload. By its id, a late write
    // lands on this reply only. Until then a sweep must not fail it as left unanswered: the
    // agent, told its outcome, would then hear it failed.
    outcomesPending.add(reply.id);
    return untilTaken(
      () => store.updateReply(followerId, reply, status, error, options),
      (e, again) =>
        log.error("Cannot record the {status} reply {reply_id} of {follower_id}{again}: {error}", {
          status,
          reply_id: reply.id,
          follower_id: followerId,
          again: again ? ", trying again" : "",
          error: e,
        }),
      0,
      // Given up, it stays this process's: its agent was told its outcome, and a sweep here
      // would tell it "may not have been sent" (the next start's settles it).
      (written) => written && outcomesPending.delete(reply.id),
    );
  }

  /** The reply's media_url was refused or could not be read: nothing went to WeChat. */
  function refuseMedia(
    agentId: string,
    followerId: string,
    counted: Counted | null,
    id: string,
    echo: { client_id?: string },
    error: MediaUrlError,
  ): Promise<AgentAnswer> {
    const message = `Cannot send the reply: ${error.message}`;
    return refuseUnsent(agentId, followerId, counted, id, echo, message, error.status, {
      status: error.status,
    });
  }

  /** Nothing of the reply went to WeChat: its count is given back, the agent told, `status`. */
  async function refuseUnsent(
    agentId: string,
    followerId: string,
    counted: Counted | null,
    id: string,
    echo: { client_id?: string },
    message: string,
    status = 503,
    msg: Record<string, unknown> = {},
    /** The agent was told already (the store was what failed: unsentEnvelope, at once). */
    told = false,
  ): Promise<AgentAnswer> {
    // Held from a sweep while its count is given back (recordOutcome holds it after).
    if (counted !== null) outcomesPending.add(id);
    // null: refused before it was recorded (so before it counted against WeChat's quota).
    const quota = counted === null ? {} : await giveBack(followerId, counted);
    const [, forgotten] = await Promise.all([
      counted !== null && recordOutcome(followerId, { n: counted.n, id }, "failed", message),
      forgottenSince(counted),
    ]);
    const body = { ...unsentBody(followerId, id, echo, message), ...quota };
    if (!forgotten && !told) await notify(agentId, unsentEnvelope(body, message, msg));
    return refuse(status, message, body);
  }

  /** What the -1 of a reply that reached nothing at WeChat names. */
  function unsentBody(
    followerId: string,
    id: string,
    echo: { client_id?: string },
    message: string,
  ) {
    return { ...echo, reply_id: id, contact_id: followerId, errcode: -1, errmsg: message };
  }

  /** The -1 telling the agent a reply reached nothing at WeChat. */
  function unsentEnvelope(
    body: ReturnType<typeof unsentBody>,
    message: string,
    msg: Record<string, unknown> = {},
  ): Envelope {
    return {
      data: {
        id: ctx.newId(),
        name: "",
        avatar: "",
        msg_type: "error",
        company_id: ctx.companyId,
        send_time: Math.floor(ctx.now() / 1000),
        msg: { errcode: -1, errmsg: body.errmsg, ...msg },
        ...body,
      },
      result: { code: -1, message },
    };
  }

  async function send(
    agentId: string,
    followerId: string,
    data: Record<string, unknown>,
    clientId: string | null,
    wait: boolean,
    claim?: () => Promise<boolean>,
  ): Promise<AgentAnswer> {
    const echo = clientId === null ? {} : { client_id: clientId };
    let reply: AgentReply;
    try {
      reply = parseAgentReply(data);
    } catch (error) {
      return refuse(400, (error as Error).message, echo);
    }
    // History re-signs the media_url a reply stored whichever key signed it (AGENT_SECRET may
    // change), so what is stored in that shape must be a URL the bridge gave.
    const named = (data["msg"] as Record<string, unknown> | undefined)?.["media_url"];
    if (ctx.signer && typeof named === "string" && unsignedMediaUrl(ctx.signer, named)) {
      return refuse(
        400,
        "msg.media_url names a bridge media file (/media/<key>) without the bridge's signature: " +
          "send the URL the bridge gave (POST upload, a follower's media_path, GET media_url)",
        echo,
      );
    }
    const contact = await store.getContact(followerId);
    if (!contact) return refuse(404, `No follower ${followerId}`, echo);
    if (contact.agent_id !== null && contact.agent_id !== agentId) {
      return refuse(
        409,
        `Follower ${followerId} is served by ${contact.agent_id}; ask for a transfer`,
        // Who serves it, so the agent's program can show the conversation as theirs.
        { ...echo, contact_id: followerId, served_by: contact.agent_id },
      );
    }
    if (!contact.subscribed) {
      return refuse(
        403,
        `Follower ${followerId} has unsubscribed: WeChat will not deliver replies`,
        {
          ...echo,
          contact_id: followerId,
          limit: "unsubscribed",
        },
      );
    }
    const now = ctx.now();
    const state = windowStateOf(contact);
    /** WeChat's reason, as the agent is told it whether this check or the store's refused. */
    const refuseByWechatRules = (check: Extract<ReplyCheck, { ok: false }>) => {
      const closes = windowClosesAt(state);
      return refuse(403, check.message, {
        ...echo,
        contact_id: followerId,
        limit: check.limit,
        reopens_at: check.reopensAt === null ? null : Math.floor(check.reopensAt / 1000),
        window_closed_at: closes === null ? null : Math.floor(closes / 1000),
      });
    };
    // A quick answer without a store write; the store checks again as it counts the reply.
    const check = checkReplyAllowed(state, now);
    if (!check.ok) return refuseByWechatRules(check);
    const id = ctx.newId();
    const item: HistoryItem = {
      id,
      name: agentId,
      avatar: "",
      msg_type: String(data["msg_type"]),
      contact_id: followerId,
      company_id: ctx.companyId,
      send_time: Math.floor(now / 1000),
      msg: (data["msg"] ?? {}) as Record<string, unknown>,
      direction: "out",
      status: "sending",
      agent_id: agentId,
      ...echo,
    };
    // The agent's file is read before the reply counts against WeChat's quota: a media_url
    // that is refused or cannot be read never reaches WeChat, so it must not use a reply up.
    let file: MediaFile | null = null;
    /** Gives the file's place back: once the reply is done, or refused before it is queued. */
    let releaseFile = () => {};
    const upload = target.kind === "wechat" ? mediaToUpload(reply) : null;
    if (upload && target.kind === "wechat") {
      const place = target.files ? target.files.take(agentId) : () => {};
      if (place === null) {
        // Refused before it was recorded: nothing counted, and the same client_id may retry.
        return {
          ...refuse(429, tooManyFiles(agentId, "send the reply"), {
            ...echo,
            contact_id: followerId,
            retry_after: 1,
          }),
          headers: { "retry-after": "1" },
        };
      }
      releaseFile = place;
      try {
        file = await target.fetchMedia(upload.url, upload.type);
      } catch (error) {
        releaseFile();
        if (!(error instanceof MediaUrlError)) throw error;
        return await refuseMedia(agentId, followerId, null, id, echo, error);
      }
    }
    // Another instance took this client_id (the agent's socket moved there and the console
    // sent again what it saw no echo of): that one sends it, and its echo reaches the agent.
    if (claim && !(await claim())) {
      releaseFile();
      return {
        status: 202,
        body: {
          data: { ...echo, contact_id: followerId, status: "sending" },
          result: { code: 0, message: "accepted" },
        },
      };
    }
    let recorded: Applied<{ n: number }> | null = null;
    let n: number;
    // From before the store has it: a sweep while the store takes it (or the switchboard tells
    // the agent) found it "sending" and no sender, and failed a reply this process then sent.
    inFlight.add(id);
    try {
      recorded = await store.recordReply(agentId, followerId, item);
      ({ n } = await switchboard.apply(Promise.resolve(recorded)));
    } catch (error) {
      releaseFile();
      if (!recorded) {
        inFlight.delete(id);
        if (error instanceof ReplyRefusedError) return refuseByWechatRules(error.check);
        throw error;
      }
      // Recorded, then failed before WeChat was asked: settled as any reply that reached
      // nothing (its count given back, its outcome written, its agent told through its log,
      // so every socket the echo reached hears it), held from a sweep until then.
      log.error("Reply {reply_id} failed before it was sent: {error}", { reply_id: id, error });
      try {
        return await refuseUnsent(
          agentId,
          followerId,
          { n: recorded.value.n, countedIn: contact.last_inbound_at },
          id,
          echo,
          NOT_SENT,
          500,
        );
      } finally {
        inFlight.delete(id);
      }
    }
    // The window it counted in, as read before: one a message opened in between (or a follower
    // forgotten and writing again, whose history numbers start over) gets nothing back.
    const counted: Counted = {
      n,
      countedIn: contact.last_inbound_at,
      logged: recorded.deliveries.find((e) => e.agentId === agentId && e.envelope.data.id === id),
    };

    // Replies to one follower leave in the order they were written; other followers' replies
    // do not wait behind a slow one.
    const previous = perFollower.get(followerId) ?? Promise.resolve();
    const result = previous.then(async (): Promise<AgentAnswer> => {
      let sent = false;
      try {
        // A reply queued behind one WeChat refused with 45015/45047 is not sent: WeChat would
        // refuse it too.
        const closedBy = (await store.getContact(followerId))?.window_closed_by;
        if (closedBy) {
          throw new WechatApiError(closedBy, "not sent: WeChat closed the reply window");
        }
        // Fails closed: a store that cannot answer may be hiding a revoke, and nothing may
        // reach a follower who revoked its authorization.
        const stillWanted = async () => {
          let forgotten: boolean;
          try {
            forgotten = counted.logged !== undefined &&
              await switchboard.wasForgotten(counted.logged);
          } catch (error) {
            log.warn("Cannot tell whether {follower_id} was forgotten: reply not sent ({error})", {
              follower_id: followerId,
              error,
            });
            throw new ForgetUnknown(
              `Not sent: cannot tell whether follower ${followerId} revoked its authorization ` +
                `(the store did not answer: ${(error as Error).message}); send it again`,
            );
          }
          if (forgotten) throw new FollowerForgotten();
        };
        await deliver(agentId, followerId, reply, data, file, stillWanted, () => sent = true);
      } catch (error) {
        if (error instanceof FollowerForgotten) return await dropForgotten(followerId, n, id, echo);
        // Nothing reached WeChat, for the store failed: before the send (its turn's first read)
        // or on the forget check. Told as WeChat's refusal (502), it kept the client_id, and a
        // send again was the same failure for a day. Answered at once: the count given back
        // and the history item each wait on that store (seconds apiece while it reconnects);
        // they follow. The -1 goes to the agent's sockets here at once, not through that store:
        // there it never arrived while the store was down (and one it took late came twice).
        // After the send began, only a store's error that is no WechatApiError (WeChat's own and
        // its network's are: api_client.ts) is the store's: the access token it keeps, read or
        // refreshed before the message went.
        const storeDown = (!sent || !(error instanceof WechatApiError)) &&
          store.unreachable?.(error);
        if (error instanceof ForgetUnknown || storeDown) {
          const why = error instanceof Error ? error.message : String(error);
          const message = error instanceof ForgetUnknown
            ? why
            : `Not sent: the store is unavailable (${why}); nothing reached WeChat, send it again`;
          switchboard.tell(
            agentId,
            unsentEnvelope(unsentBody(followerId, id, echo, message), message),
          );
          refuseUnsent(agentId, followerId, counted, id, echo, message, 503, {}, true).catch((e) =>
            log.error("Cannot settle the unsent reply of {follower_id}: {error}", {
              follower_id: followerId,
              error: e,
            })
          );
          return refuse(503, message, { ...echo, reply_id: id, contact_id: followerId });
        }
        if (error instanceof MediaUrlError) {
          return await refuseMedia(agentId, followerId, counted, id, echo, error);
        }
        const errcode = error instanceof WechatApiError ? error.errcode : -1;
        if (closesWindow(errcode)) {
          await store.closeWindow(followerId, errcode, counted.countedIn).catch((e) =>
            log.error("Cannot record the closed window of {follower_id}: {error}", {
              follower_id: followerId,
              error: e,
            })
          );
        }
        // Delivered nothing: WeChat refused it, or it failed before the send (an upload).
        // Sent with no answer (-1: a timeout, a reset, a 5xx) it may have been delivered, and
        // counts; the client sends it again only after a try that surely did nothing
        // (api_client.ts), so a refusal means no copy went out.
        const undelivered = sent ? returnsReply(errcode) : !closesWindow(errcode);
        const quota = undelivered ? await giveBack(followerId, counted) : {};
        const errmsg = error instanceof Error ? error.message : String(error);
        const wechatMsg = error instanceof WechatApiError ? error.errmsg : errmsg;
        // Sent and never clearly refused: history says so, as the console did before a reload
        // ("Not confirmed"; "Not delivered" read as safe to send again).
        const unconfirmed = sent && !returnsReply(errcode) && !closesWindow(errcode);
        const [, forgotten] = await Promise.all([
          recordOutcome(followerId, { n, id }, "failed", wechatMsg, { unconfirmed }),
          forgottenSince(counted),
        ]);
        const body = {
          ...echo,
          reply_id: id,
          contact_id: followerId,
          errcode,
          errmsg: wechatMsg,
          ...quota,
          ...(unconfirmed ? { unconfirmed: true } : {}),
        };
        if (!forgotten) {
          await notify(agentId, {
            data: {
              id: ctx.newId(),
              name: "",
              avatar: "",
              msg_type: "error",
              company_id: ctx.companyId,
              send_time: Math.floor(ctx.now() / 1000),
              msg: { errcode, errmsg: wechatMsg },
              ...body,
            },
            result: { code: -1, message: `WeChat refused the reply: ${wechatMsg} (${errcode})` },
          });
        }
        return refuse(502, `WeChat refused the reply: ${wechatMsg} (${errcode})`, body);
      }
      // By its id too: a forget meanwhile, and the follower writing again, starts the history
      // numbers over, and this reply's number may be the new conversation's.
      const [, forgotten] = await Promise.all([
        recordOutcome(followerId, { n, id }, "sent"),
        forgottenSince(counted),
      ]);
      ctx.metrics.messagesOut.inc({ msg_type: `reply_${item.msg_type}` });
      if (!forgotten) {
        await notify(
          agentId,
          createSystemEnvelope({
            event: "reply_sent",
            reply_id: id,
            contact_id: followerId,
            ...echo,
            text: "回复已送达微信",
          }, { id: ctx.newId(), companyId: ctx.companyId, sendTime: Math.floor(ctx.now() / 1000) }),
        );
      }
      return {
        status: 200,
        body: {
          data: { id, ...echo, contact_id: followerId, status: "sent" },
          result: { code: 0, message: "ok" },
        },
      };
    });
    // Its file is no longer held once its turn is over, sent or not.
    result.finally(() => {
      releaseFile();
      inFlight.delete(id);
    }).catch(() => {});
    const tail = result.catch(() => {});
    perFollower.set(followerId, tail);
    tail.then(() => {
      if (perFollower.get(followerId) === tail) perFollower.delete(followerId);
    });
    const accepted: AgentAnswer = {
      status: 202,
      body: {
        data: { id, ...echo, contact_id: followerId, status: "sending" },
        result: { code: 0, message: "accepted" },
      },
    };
    if (!wait) return accepted;
    const timeout = new Promise<AgentAnswer>((resolve) => {
      const t = setTimeout(() => resolve(accepted), HTTP_WAIT_MS);
      // Both ways handled: a `finally` here rejected again, unhandled, which stops Deno.
      result.then(() => clearTimeout(t), () => clearTimeout(t));
    });
    return await Promise.race([result, timeout]);
  }

  return {
    /** Settles the replies recorded "sending" before `before` (ms) that no process is
     * sending any more (unanswered_replies.ts); resolves to how many. */
    settleUnanswered(before: number) {
      return settleUnanswered({
        store,
        notify,
        inFlight: (id) => inFlight.has(id) || outcomesPending.has(id),
        newId: ctx.newId,
        now: ctx.now,
        companyId: ctx.companyId,
      }, before);
    },
    /** Waits for the replies on their way to WeChat (shutdown): each then is sent or failed,
     * recorded, and its agent told, rather than cut off with the process. */
    async drain() {
      while (perFollower.size > 0) await Promise.allSettled([...perFollower.values()]);
      releases.stop();
      outcomeRetries.stopped = true;
      for (const timer of outcomeRetries.timers) clearTimeout(timer);
      outcomeRetries.timers.clear();
    },

    reply(agentId, followerId, data, { wait }) {
      const clientId = typeof data["client_id"] === "string" && data["client_id"] !== ""
        ? data["client_id"]
        : null;
      if (clientId === null) return send(agentId, followerId, data, null, wait);
      // A client_id names a reply in one conversation: a program that numbers its replies per
      // conversation sends c-1 to each follower, and the second was taken for the first's
      // duplicate and never sent. XML carries no NUL, so no follower id runs into the client_id.
      const scoped = `${followerId}\u0000${clientId}`;
      const key = `${agentId}\u0000${scoped}`;
      const now = ctx.now();
      const seen = byClientId.get(key);
      if (seen && now - seen.at < CLIENT_ID_TTL_MS) return seen.result;
      if (byClientId.size > 100_000) {
        for (const [k, v] of byClientId) if (now - v.at >= CLIENT_ID_TTL_MS) byClientId.delete(k);
      }
      // With several instances the client_id is also taken in the shared store, just before
      // the reply is recorded: this map alone knows nothing of the other instances.
      let claimed = false;
      const claim = store.claimClientId
        ? async () => {
          // Given back by a refusal while the store was down: released first, or found taken.
          await releases.beforeClaim(key);
          return claimed = await store.claimClientId!(
            agentId,
            followerId,
            clientId,
            CLIENT_ID_TTL_MS,
          );
        }
        : undefined;
      const result = send(agentId, followerId, data, clientId, wait, claim);
      byClientId.set(key, { at: now, result });
      // A refusal before sending (window, owner) may be retried with the same client_id.
      const forget = () => {
        byClientId.delete(key);
        if (claimed && store.releaseClientId) releases.release(key, agentId, followerId, clientId);
      };
      // A throw (the store refusing it as it is recorded: the follower taken meanwhile) is the
      // caller's to answer; left unhandled here too, it stopped the process.
      result.then((a) => {
        if (a.status >= 400 && a.status !== 502) forget();
      }, forget);
      return result;
    },

    async typing(agentId, followerId, on) {
      const contact = await store.getContact(followerId);
      if (!contact) return refuse(404, `No follower ${followerId}`);
      if (contact.agent_id !== null && contact.agent_id !== agentId) {
        return refuse(409, `Follower ${followerId} is served by ${contact.agent_id}`, {
          contact_id: followerId,
          served_by: contact.agent_id,
        });
      }
      // Typing uses no quota, but WeChat takes it only within 30 s of an exchange.
      const lastOut = contact.last_message?.direction === "out" ? contact.last_message_at : 0;
      const check = checkTypingAllowed(
        windowStateOf(contact),
        Math.max(contact.last_inbound_at, lastOut),
        ctx.now(),
      );
      if (!check.ok) {
        return refuse(403, `Typing is not relayed: ${check.message}`, {
          contact_id: followerId,
          limit: check.limit,
        });
      }
      if (target.kind === "wechat") {
        try {
          await target.client.typing(followerId, on);
        } catch (error) {
          const errmsg = error instanceof WechatApiError ? error.errmsg : String(error);
          return refuse(502, `WeChat refused typing: ${errmsg}`, { contact_id: followerId });
        }
      } else {
        target.outbox.typing(followerId, on);
      }
      return {
        status: 200,
        body: { data: { contact_id: followerId, typing: on }, result: { code: 0, message: "ok" } },
      };
    },
  };
}
