// What agents send, over their socket or `POST send`: the seed's 2.1 shape. A message to a
// follower is a reply (handed to the reply service); to an agent, it is delivered to that
// agent; `typing`, `read`, `transfer`, `close`, `claim`, `note`, `rename` and `capacity` are
// commands.

import type { Switchboard } from "../core/switchboard.ts";
import { MessageTooLargeError, ServedByOtherError, type Store, StoreError } from "../core/store.ts";
import { codeOf, createErrorEnvelope, type Envelope } from "../protocol/envelope.ts";

/** The answer to one agent message: an HTTP status and the JSON body (or socket frame). */
export interface AgentAnswer {
  status: number;
  body: Record<string, unknown>;
  /** HTTP headers for `POST send`'s answer (a 429's Retry-After); a socket gets the body only. */
  headers?: Record<string, string>;
}

/** Sends replies to followers; see src/replies/reply_service.ts. */
export interface ReplyHandler {
  /** With `wait`, resolves when WeChat answered; without, once the reply is recorded. */
  reply(
    agentId: string,
    followerId: string,
    data: Record<string, unknown>,
    options: { wait: boolean },
  ): Promise<AgentAnswer>;
  typing(agentId: string, followerId: string, on: boolean): Promise<AgentAnswer>;
}

/** What agent messages need. */
export interface AgentMessageDeps {
  store: Store;
  switchboard: Switchboard;
  replies: ReplyHandler;
  companyId: string;
  now: () => number;
  newId: () => string;
  /** True for an agent who serves this account (ACCOUNTS_FILE's `agents`); unset: any agent. */
  serves?: (agentId: string) => boolean;
}

const COMMANDS = new Set([
  "typing",
  "read",
  "transfer",
  "close",
  "capacity",
  "rename",
  "claim",
  "note",
  "labels",
]);

/** Labels on one conversation: a few short words. */
export const LABEL_LIMITS = { count: 10, length: 20 };

/** How long a private or handover note may be. */
export const NOTE_MAX = 2_000;

/** A -1 answer with a status. */
export function refuse(
  status: number,
  message: string,
  data: Record<string, unknown> = {},
): AgentAnswer {
  return { status, body: createErrorEnvelope(message, data) };
}

/** `answer` with the command's `client_id` in its data (none given: unchanged). */
function withClientId(answer: AgentAnswer, echo: { client_id?: string }): AgentAnswer {
  if (echo.client_id === undefined) return answer;
  const data = answer.body["data"] as Record<string, unknown> | undefined;
  return { ...answer, body: { ...answer.body, data: { ...data, ...echo } } };
}

/** Fields of an agent-to-agent message only the server sets, or never on one (`account`: the
 * official account a follower wrote to); the sender's `client_id` and its own fields pass. */
const SERVER_FIELDS = [
  "account",
  "id",
  "name",
  "avatar",
  "agent_id",
  "from",
  "company_id",
  "send_time",
  "seq",
  "direction",
  "status",
];

function withoutServerFields(data: Record<string, unknown>): Record<string, unknown> {
  const copy = { ...data };
  for (const field of SERVER_FIELDS) delete copy[field];
  return copy;
}

const ok = (data: Record<string, unknown>): AgentAnswer => ({
  status: 200,
  body: { data, result: { code: 0, message: "ok" } },
});

/** Creates the handler for agents' messages. */
export function createAgentMessages(deps: AgentMessageDeps) {
  const { store, switchboard } = deps;

  async function command(
    agentId: string,
    type: string,
    contactId: string,
    msg: Record<string, unknown>,
  ): Promise<AgentAnswer> {
    switch (type) {
      case "typing":
        return await deps.replies.typing(agentId, contactId, msg["on"] !== false);
      case "read": {
        // As the other commands: an agent that does not serve the follower is told so.
        const contact = await store.getContact(contactId);
        if (!contact) return refuse(404, `Cannot mark read: no follower ${contactId}`);
        const mine = contact.agent_id === agentId || contact.last_agent_id === agentId;
        // A follower waiting for anyone may be looked at; another agent's may not be touched.
        if (!mine && contact.agent_id !== null) {
          return refuse(409, `Cannot mark read: ${contactId} is served by another agent`);
        }
        await store.markRead(agentId, contactId);
        return ok({ contact_id: contactId, unread: 0 });
      }
      case "transfer": {
        const to = msg["to"];
        if (typeof to !== "string" || to === "") {
          return refuse(400, "Cannot transfer: msg.to must name the agent to transfer to");
        }
        const note = typeof msg["note"] === "string" ? msg["note"].trim() : "";
        if (note.length > NOTE_MAX) {
          return refuse(400, `Cannot transfer: msg.note is longer than ${NOTE_MAX} characters`);
        }
        // An agent taken off the account's list is still known to its store, and could never
        // connect to it again to serve the follower handed over.
        if (deps.serves && !deps.serves(to)) {
          return refuse(409, `Cannot transfer: agent ${to} does not serve this account`);
        }
        await switchboard.apply(store.transfer(contactId, agentId, to, note));
        return ok({ contact_id: contactId, agent_id: to });
      }
      case "labels": {
        const raw = msg["labels"];
        const labels = Array.isArray(raw)
          ? [...new Set(raw.map((l) => typeof l === "string" ? l.trim() : ""))]
          : null;
        if (
          labels === null || labels.length > LABEL_LIMITS.count ||
          labels.some((l) => l === "" || l.length > LABEL_LIMITS.length)
        ) {
          return refuse(
            400,
            `Cannot label: msg.labels must be at most ${LABEL_LIMITS.count} labels of 1-${LABEL_LIMITS.length} characters`,
          );
        }
        await store.setLabels(agentId, contactId, labels);
        return ok({ contact_id: contactId, labels });
      }
      case "claim":
        await switchboard.apply(store.claim(contactId, agentId));
        return ok({ contact_id: contactId, agent_id: agentId, status: "open" });
      case "note": {
        const text = typeof msg["content"] === "string" ? msg["content"].trim() : "";
        if (text === "" || text.length > NOTE_MAX) {
          return refuse(400, `Cannot add a note: msg.content must be 1-${NOTE_MAX} characters`);
        }
        const { n } = await switchboard.apply(store.addNote(agentId, contactId, text));
        return ok({ contact_id: contactId, n });
      }
      case "rename": {
        const name = typeof msg["name"] === "string" ? msg["name"].trim() : "";
        if (name === "" || name.length > 64) {
          return refuse(400, "Cannot rename: msg.name must be 1-64 characters");
        }
        await store.renameContact(agentId, contactId, name);
        return ok({ contact_id: contactId, name });
      }
      case "close":
        await switchboard.apply(store.closeConversation(contactId, agentId));
        return ok({ contact_id: contactId, status: "closed" });
      default: {
        const max = msg["max"];
        if (max !== null && (typeof max !== "number" || !Number.isInteger(max) || max < 0)) {
          return refuse(400, "Cannot set capacity: msg.max must be a whole number or null");
        }
        await store.setCapacity(agentId, max);
        // A raised capacity may let waiting followers in at once, if the agent is here for them.
        if (switchboard.presence.isOnline(agentId)) {
          await switchboard.apply(store.agentOnline(agentId, switchboard.presence));
        }
        return ok({ capacity: max });
      }
    }
  }

  return {
    /** Handles one parsed JSON body from `agentId` (null: an anonymous HTTP push). Sockets
     * pass `wait: false`: a reply's result reaches them as an envelope, and a slow WeChat must
     * not hold up what the agent sends next. */
    async handle(
      agentId: string | null,
      body: unknown,
      options: { wait: boolean } = { wait: true },
    ): Promise<AgentAnswer> {
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        return refuse(400, "Cannot parse message: expected a JSON object {data, result}");
      }
      const data = (body as Record<string, unknown>)["data"];
      if (typeof data !== "object" || data === null || Array.isArray(data)) {
        return refuse(400, "Cannot parse message: data must be an object");
      }
      const d = data as Record<string, unknown>;
      const clientId = typeof d["client_id"] === "string" ? d["client_id"] : undefined;
      const echo = clientId === undefined ? {} : { client_id: clientId };
      const msgType = d["msg_type"];
      if (typeof msgType !== "string" || msgType === "") {
        return refuse(400, "Cannot parse message: data.msg_type is missing", echo);
      }
      const msg = d["msg"] ?? {};
      if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
        return refuse(400, "Cannot parse message: data.msg must be an object", echo);
      }
      const contactId = d["contact_id"];
      const isCapacity = msgType === "capacity";
      if (!isCapacity && (typeof contactId !== "string" || contactId === "")) {
        return refuse(400, "Cannot parse message: data.contact_id is missing", echo);
      }
      try {
        if (COMMANDS.has(msgType)) {
          if (agentId === null) {
            return refuse(401, `Cannot ${msgType}: say who you are with userid= or a token`, echo);
          }
          const answer = await command(
            agentId,
            msgType,
            String(contactId ?? ""),
            msg as Record<string, unknown>,
          );
          // A refusal names the command it answers, as a reply's does: the console keeps
          // typing's and read's quiet and shows the others where they were asked.
          return answer.status >= 400 ? withClientId(answer, echo) : answer;
        }
        const to = contactId as string;
        if (await store.getContact(to)) {
          if (agentId === null) {
            return refuse(
              401,
              "Cannot reply: say which agent you are with userid= or a token",
              echo,
            );
          }
          return await deps.replies.reply(agentId, to, d, options);
        }
        if (await store.isKnownAgent(to)) {
          // As with a transfer: one taken off the account's list could never read it here.
          if (deps.serves && !deps.serves(to)) {
            return refuse(409, `Cannot send: agent ${to} does not serve this account`, {
              ...echo,
              contact_id: to,
            });
          }
          const envelope: Envelope = {
            data: {
              ...withoutServerFields(d),
              // Who sent it is the server's to say, from the credentials: a sender that could
              // set these could pass itself off as another agent, or as the system.
              id: deps.newId(),
              name: agentId ?? "",
              avatar: "",
              company_id: deps.companyId,
              send_time: Math.floor(deps.now() / 1000),
              msg_type: msgType,
              contact_id: to,
              msg: msg as Record<string, unknown>,
              ...(agentId === null ? {} : { from: agentId, agent_id: agentId }),
            },
            // The code follows the type (the seed's "102" for a system push still reads 102):
            // never 0, 101 or -1, which would pass for the server's ack, heartbeat or refusal;
            // and the message is the bridge's, as on every message ("Not sent: …" passed for
            // a delivery result).
            result: { code: codeOf(msgType), message: "common" },
          };
          const entries = [{ agentId: to, envelope }];
          // The sender's sockets see what it sent, as with replies: one thread on every tab.
          if (agentId !== null && agentId !== to) {
            entries.push({
              agentId,
              envelope: {
                data: { ...envelope.data, direction: "out", status: "delivered" },
                result: envelope.result,
              },
            });
          }
          const [entry] = await switchboard.sendToAgents(entries);
          return ok({ id: envelope.data.id, seq: entry?.seq, status: "delivered", ...echo });
        }
        return refuse(404, `Cannot send: no follower or agent is named ${to}`, {
          ...echo,
          contact_id: to,
        });
      } catch (error) {
        if (error instanceof ServedByOtherError) {
          // Who serves it, as a refused reply or typing says, so the agent's program can show
          // the conversation as theirs.
          return refuse(409, error.message, {
            ...echo,
            contact_id: error.followerId,
            served_by: error.servedBy,
          });
        }
        if (error instanceof StoreError) {
          return refuse(error instanceof MessageTooLargeError ? 413 : 409, error.message, echo);
        }
        throw error;
      }
    },
  };
}

/** The handler for agents' messages. */
export type AgentMessages = ReturnType<typeof createAgentMessages>;
