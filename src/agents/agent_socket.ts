// An agent's WebSocket: the upgrade (id, credentials, origin, subprotocol, socket limit), the
// replay on open, and what the agent sends (size and rate limited; errors go back as -1
// envelopes on that socket, which stays open).

import { getLogger } from "@logtape/logtape";
import { HttpError } from "../http/http_error.ts";
import { createRateLimiter, type RateLimiter } from "../http/limits.ts";
import type { Switchboard } from "../core/switchboard.ts";
import type { AgentMessages } from "./agent_messages.ts";
import { AGENT_ID_RULE, isAgentId } from "./agent_id.ts";
import type { AgentAuth } from "./auth.ts";
import { createErrorEnvelope } from "../protocol/envelope.ts";
import type { AgentConnection, Hub } from "../core/hub.ts";
import { wholeNumberOf } from "./query_number.ts";

const log = getLogger(["bridge", "agents"]);

/** Close code: the token expired; get a fresh one and reconnect (with `since=`). */
export const CLOSE_TOKEN_EXPIRED = 4401;

/** Close code (policy violation): the socket went on writing far past its rate. */
export const CLOSE_FLOOD = 1008;
/** Frames refused over the rate in a row, none taken between, after which the socket is
 * closed: at 10 a second one is taken every 100 ms, so this is 5,000 frames a second. */
const FLOOD_REFUSALS = 500;

/** Limits on one socket. */
export interface SocketLimits {
  frameBytes: number;
  messagesPerSecond: number;
  messageBurst: number;
  socketsPerAgent: number;
}

/** What the socket handler needs. */
export interface AgentSocketDeps {
  hub: Hub;
  switchboard: Switchboard;
  messages: AgentMessages;
  auth: AgentAuth;
  limits: SocketLimits;
  idleTimeoutS: number;
  onSocketCount?: (open: number, agents: number) => void;
  onRejected?: (reason: string) => void;
  /** True for a store error that means it takes nothing now (Store.unreachable). */
  unreachable?: (error: unknown) => boolean;
}

/** The agent's id from `userid` or `userId`; 400 when missing or malformed. */
export function agentIdFrom(url: URL): string | null {
  const raw = url.searchParams.get("userid") ?? url.searchParams.get("userId");
  if (raw === null || raw === "") return null;
  if (!isAgentId(raw)) throw new HttpError(400, `userid must be ${AGENT_ID_RULE}`);
  return raw;
}

/** Creates the upgrade handler for agent sockets. */
export function createAgentSocketHandler(deps: AgentSocketDeps) {
  const { hub } = deps;
  // Sockets upgraded but not yet in the hub (it registers them on open), so that sockets
  // opened at once cannot all pass the per-agent limit.
  const opening = new Map<string, number>();
  const env: SessionEnv = { deps, opening, encoder: new TextEncoder() };

  return async function upgrade(req: Request, url: URL): Promise<Response> {
    deps.auth.checkOrigin(req);
    const claimed = agentIdFrom(url);
    if (claimed === null && !url.searchParams.has("token")) {
      throw new HttpError(400, "Missing userid: connect with ?userid=ID");
    }
    const { userid: agentId, validUntilMs } = await deps.auth.identify(req, url, claimed, true);
    const sinceRaw = url.searchParams.get("since");
    let since: number | null = null;
    if (sinceRaw !== null && sinceRaw !== "") {
      since = wholeNumberOf(sinceRaw);
      if (since === null) throw new HttpError(400, "since must be a whole number >= 0");
    }
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      throw new HttpError(426, "Connect with a WebSocket", { upgrade: "websocket" });
    }
    // The route serves HEAD as GET; Deno would upgrade it too (RFC 6455 §4.1: a GET only).
    if (req.method !== "GET") {
      throw new HttpError(405, "Open the WebSocket with a GET", { allow: "GET" });
    }
    if (hub.socketsOf(agentId) + (opening.get(agentId) ?? 0) >= deps.limits.socketsPerAgent) {
      deps.onRejected?.("sockets");
      throw new HttpError(
        429,
        `Agent ${agentId} already has ${deps.limits.socketsPerAgent} sockets open`,
      );
    }
    const requested = req.headers.get("sec-websocket-protocol");
    const protocol = requested?.split(",")[0]?.trim() || undefined;
    let upgraded: ReturnType<typeof Deno.upgradeWebSocket>;
    try {
      upgraded = Deno.upgradeWebSocket(req, { protocol, idleTimeout: deps.idleTimeoutS });
    } catch (error) {
      // A handshake with a missing or bad header (Connection, Sec-WebSocket-Key, …).
      throw new HttpError(400, `Cannot upgrade: ${(error as Error).message}`);
    }
    const { socket, response } = upgraded;
    opening.set(agentId, (opening.get(agentId) ?? 0) + 1);
    // One object per socket handles all four events: thousands of idle agents each cost
    // one small object instead of a closure per event, a limiter closure and their context.
    const session = new Session(agentId, socket, since, env, validUntilMs);
    socket.addEventListener("open", session);
    socket.addEventListener("close", session);
    socket.addEventListener("error", session);
    socket.addEventListener("message", session);
    return response;
  };
}

/**
 * The chains a frame waits its turn on: its `data.contact_id`'s, and a transfer's also its
 * target agent's (`msg.to`). The agent told of a transfer hears of it before whatever the sender
 * writes to it after ("F is yours now"), which otherwise overtook the transfer's store step;
 * and a transfer waits for what was written to its target before it.
 */
function chainKeys(body: unknown): string[] {
  const data = (body as { data?: Record<string, unknown> } | null)?.data;
  const contactId = typeof data?.["contact_id"] === "string" ? data["contact_id"] : "";
  const to = data?.["msg_type"] === "transfer"
    ? (data["msg"] as { to?: unknown } | null | undefined)?.to
    : undefined;
  return typeof to === "string" && to !== "" && to !== contactId ? [contactId, to] : [contactId];
}

/** The `client_id` and `contact_id` a frame names, for a -1 that answers it. */
function frameIds(body: unknown): { client_id?: string; contact_id?: string } {
  const data = (body as { data?: Record<string, unknown> } | null)?.data;
  const pick = (v: unknown) => typeof v === "string" && v !== "" ? v : undefined;
  return { client_id: pick(data?.["client_id"]), contact_id: pick(data?.["contact_id"]) };
}

/** What every session shares. */
interface SessionEnv {
  deps: AgentSocketDeps;
  opening: Map<string, number>;
  encoder: TextEncoder;
}

/** One agent socket's state and its event handling (see `handleEvent`). */
class Session {
  #conn: AgentConnection | null = null;
  #closed = false;
  #pending = true;
  /** Each conversation's frames, handled one at a time (by `data.contact_id`, and a
   * transfer's target agent: chainKeys). */
  readonly #chains = new Map<string, Promise<void>>();
  #expiry: ReturnType<typeof setTimeout> | undefined;
  readonly #limiter: RateLimiter;
  /** Frames refused over the rate since the last one taken (see FLOOD_REFUSALS). */
  #refusedInARow = 0;

  constructor(
    readonly agentId: string,
    readonly socket: WebSocket,
    readonly since: number | null,
    readonly env: SessionEnv,
    readonly validUntilMs: number | null,
  ) {
    this.#limiter = createRateLimiter(
      env.deps.limits.messagesPerSecond,
      env.deps.limits.messageBurst,
    );
  }

  /** Closes the socket when its token expires: the agent must come back with a fresh one. */
  #watchExpiry(): void {
    if (this.validUntilMs === null || this.#closed) return;
    const left = this.validUntilMs - Date.now();
    if (left <= 0) {
      try {
        this.socket.close(CLOSE_TOKEN_EXPIRED, "token expired: reconnect with a fresh token");
      } catch { /* closed already */ }
      return;
    }
    // setTimeout takes at most 2^31-1 ms (24.8 days); a longer token is checked again then.
    this.#expiry = setTimeout(() => this.#watchExpiry(), Math.min(left, 2 ** 31 - 1));
    Deno.unrefTimer(this.#expiry);
  }

  handleEvent(event: Event): void {
    switch (event.type) {
      case "open":
        return this.#open();
      case "close":
        return this.#close();
      case "error":
        // A failed upgrade fires only "error".
        return this.#opened();
      case "message":
        return this.#message(event as MessageEvent);
    }
  }

  /** The socket is no longer opening (opened, closed or failed). */
  #opened(): void {
    if (!this.#pending) return;
    this.#pending = false;
    const { opening } = this.env;
    const n = (opening.get(this.agentId) ?? 1) - 1;
    if (n > 0) opening.set(this.agentId, n);
    else opening.delete(this.agentId);
  }

  #open(): void {
    const { deps } = this.env;
    // connect() adds the socket to the hub before its first await: the count stays right.
    this.#opened();
    this.#watchExpiry();
    deps.switchboard.connect(this.agentId, this.socket, this.since).then((c) => {
      this.#conn = c;
      if (this.#closed) deps.switchboard.disconnect(c);
      deps.onSocketCount?.(deps.hub.socketCount, deps.hub.agentCount);
    }).catch((error) => {
      log.error("Cannot bring agent {agent_id} online: {error}", { agent_id: this.agentId, error });
      try {
        this.socket.close(1011, "store unavailable, reconnect with since=");
      } catch { /* closed already */ }
    });
  }

  #close(): void {
    const { deps } = this.env;
    this.#opened();
    this.#closed = true;
    clearTimeout(this.#expiry);
    if (this.#conn) deps.switchboard.disconnect(this.#conn);
    deps.onSocketCount?.(deps.hub.socketCount, deps.hub.agentCount);
  }

  #sendError(message: string, data: Record<string, unknown> = {}): void {
    this.#answer(createErrorEnvelope(message, data));
  }

  /**
   * A -1 that answers one of this socket's frames, to this socket only, never replayed. SPEC
   * puts `data.seq` on every envelope but the heartbeat: it carries the seq of the last message
   * this socket was sent, so an agent that keeps the last seq it saw and reconnects with
   * `since=` from it misses nothing (a fresh seq would be one no replay knows).
   */
  #answer(envelope: { data: Record<string, unknown> }): void {
    if (this.socket.readyState !== WebSocket.OPEN) return;
    envelope.data.seq = this.#conn?.lastSeq ?? 0;
    this.env.deps.hub.answer(this.socket, JSON.stringify(envelope));
  }

  /** Refuses a frame over the rate: a -1, or the socket closed once it floods. */
  #refuseOverRate(): void {
    const { deps } = this.env;
    deps.onRejected?.("rate");
    // A program that ignores its -1s and writes on (a loop gone wrong, or an attack) was
    // answered each of its frames, ~100 bytes for 8: closed, it costs nothing more.
    if (++this.#refusedInARow >= FLOOD_REFUSALS) {
      try {
        this.socket.close(
          CLOSE_FLOOD,
          `too many messages: at most ${deps.limits.messagesPerSecond} per second`,
        );
      } catch { /* closed already */ }
      return;
    }
    this.#sendError(`Too many messages: at most ${deps.limits.messagesPerSecond} per second`);
  }

  #message(event: MessageEvent): void {
    const { deps, encoder } = this.env;
    const limits = deps.limits;
    // Every frame counts against the rate, whatever it is: answered before, binary and
    // oversized frames were a -1 each without limit.
    if (!this.#limiter.take()) return this.#refuseOverRate();
    this.#refusedInARow = 0;
    if (typeof event.data !== "string") {
      this.#sendError("Cannot parse message: send JSON text frames");
      return;
    }
    if (
      event.data.length > limits.frameBytes / 3 &&
      encoder.encode(event.data).byteLength > limits.frameBytes
    ) {
      deps.onRejected?.("frame_size");
      this.#sendError(`Message is larger than ${limits.frameBytes} bytes`);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(event.data);
    } catch {
      this.#sendError("Cannot parse message: not JSON");
      return;
    }
    // One message at a time per conversation keeps an agent's replies in the order it sent
    // them; one chain for the socket held every conversation behind a media_url reply's
    // download (up to MEDIA_TIMEOUT_MS, and its wait for a place).
    const keys = chainKeys(body);
    const previous = keys.map((key) => this.#chains.get(key) ?? Promise.resolve());
    const next = Promise.all(previous).then(async () => {
      try {
        const answer = await deps.messages.handle(this.agentId, body, { wait: false });
        if (answer.status >= 400) this.#answer(answer.body as { data: Record<string, unknown> });
      } catch (error) {
        // Named, so the console can tell which reply failed.
        const { client_id: clientId, contact_id: contactId } = frameIds(body);
        const ids = {
          ...(clientId ? { client_id: clientId } : {}),
          ...(contactId ? { contact_id: contactId } : {}),
        };
        if (deps.unreachable?.(error)) {
          // Over HTTP this is a 503 to retry; here it was "Internal error" naming no frame, and
          // the console could not tell which reply failed, nor that sending it again would do.
          this.#sendError(
            `Not done: the store is unavailable (${
              error instanceof Error ? error.message : error
            }); ` +
              "nothing was recorded, send it again",
            ids,
          );
          return;
        }
        log.error("Agent message failed: {error}", { error });
        this.#sendError("Internal error: the message was not handled", ids);
      }
    });
    for (const key of keys) this.#chains.set(key, next);
    next.then(() => {
      for (const key of keys) if (this.#chains.get(key) === next) this.#chains.delete(key);
    });
  }
}
