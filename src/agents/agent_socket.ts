// An agent's WebSocket: the upgrade (id, credentials, origin, subprotocol, socket limit), the
// replay on open, and what the agent sends (size and rate limited; errors go back as -1
// envelopes on that socket, which stays open).

import { getLogger } from "@logtape/logtape";
import { HttpError } from "../http_error.ts";
import { createRateLimiter } from "../limits.ts";
import type { Switchboard } from "../switchboard.ts";
import type { AgentMessages } from "./agent_messages.ts";
import type { AgentAuth } from "./auth.ts";
import { createErrorEnvelope } from "./envelope.ts";
import type { AgentConnection, Hub } from "./hub.ts";

const log = getLogger(["bridge", "agents"]);

/** Close code for a bad frame or a broken limit; the reason says which. */
export const CLOSE_POLICY = 4000;
/** Close code when an agent already has too many sockets. */
export const CLOSE_TOO_MANY = 4008;

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
}

const USER_ID = /^[\p{L}\p{N}_.@:-]{1,64}$/u;

/** The agent's id from `userid` or `userId`; 400 when missing or malformed. */
export function agentIdFrom(url: URL): string | null {
  const raw = url.searchParams.get("userid") ?? url.searchParams.get("userId");
  if (raw === null || raw === "") return null;
  if (!USER_ID.test(raw)) {
    throw new HttpError(400, "userid must be 1-64 letters, digits or _ . @ : -");
  }
  return raw;
}

/** Creates the upgrade handler for agent sockets. */
export function createAgentSocketHandler(deps: AgentSocketDeps) {
  const { hub, switchboard, messages } = deps;
  const encoder = new TextEncoder();
  // Sockets upgraded but not yet in the hub (it registers them on open), so that sockets
  // opened at once cannot all pass the per-agent limit.
  const opening = new Map<string, number>();

  return async function upgrade(req: Request, url: URL): Promise<Response> {
    deps.auth.checkOrigin(req);
    const claimed = agentIdFrom(url);
    if (claimed === null && !url.searchParams.has("token")) {
      throw new HttpError(400, "Missing userid: connect with ?userid=ID");
    }
    const agentId = await deps.auth.authenticate(req, url, claimed);
    const sinceRaw = url.searchParams.get("since");
    let since: number | null = null;
    if (sinceRaw !== null && sinceRaw !== "") {
      since = Number(sinceRaw);
      if (!Number.isSafeInteger(since) || since < 0) {
        throw new HttpError(400, "since must be a whole number >= 0");
      }
    }
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      throw new HttpError(426, "Connect with a WebSocket", { upgrade: "websocket" });
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
    let pending = true;
    const opened = () => {
      if (!pending) return;
      pending = false;
      const n = (opening.get(agentId) ?? 1) - 1;
      if (n > 0) opening.set(agentId, n);
      else opening.delete(agentId);
    };
    const limiter = createRateLimiter(deps.limits.messagesPerSecond, deps.limits.messageBurst);
    let conn: AgentConnection | null = null;
    let closed = false;
    let chain = Promise.resolve();

    const sendError = (message: string, data: Record<string, unknown> = {}) => {
      if (socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify(createErrorEnvelope(message, data)));
      }
    };

    socket.onopen = () => {
      // connect() adds the socket to the hub before its first await: the count stays right.
      opened();
      switchboard.connect(agentId, socket, since).then((c) => {
        conn = c;
        if (closed) switchboard.disconnect(c);
        deps.onSocketCount?.(hub.socketCount, hub.agentCount);
      }).catch((error) => {
        log.error("Cannot bring agent {agent_id} online: {error}", { agent_id: agentId, error });
        try {
          socket.close(1011, "store unavailable, reconnect with since=");
        } catch { /* closed already */ }
      });
    };
    socket.onclose = () => {
      opened();
      closed = true;
      if (conn) switchboard.disconnect(conn);
      deps.onSocketCount?.(hub.socketCount, hub.agentCount);
    };
    // A failed upgrade fires only "error".
    socket.onerror = opened;
    socket.onmessage = (event) => {
      if (typeof event.data !== "string") {
        sendError("Cannot parse message: send JSON text frames");
        return;
      }
      if (
        event.data.length > deps.limits.frameBytes / 3 &&
        encoder.encode(event.data).byteLength > deps.limits.frameBytes
      ) {
        deps.onRejected?.("frame_size");
        sendError(`Message is larger than ${deps.limits.frameBytes} bytes`);
        return;
      }
      if (!limiter.take()) {
        deps.onRejected?.("rate");
        sendError(`Too many messages: at most ${deps.limits.messagesPerSecond} per second`);
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(event.data);
      } catch {
        sendError("Cannot parse message: not JSON");
        return;
      }
      // One message at a time per socket keeps an agent's replies in the order it sent them.
      chain = chain.then(async () => {
        try {
          const answer = await messages.handle(agentId, body, { wait: false });
          if (answer.status >= 400) {
            socket.readyState === WebSocket.OPEN &&
              socket.send(JSON.stringify(answer.body));
          }
        } catch (error) {
          log.error("Agent message failed: {error}", { error });
          sendError("Internal error: the message was not handled");
        }
      });
    };
    return response;
  };
}
