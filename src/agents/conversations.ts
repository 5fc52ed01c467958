// What an agent reads over HTTP: its contact list (with the followers waiting for an agent)
// and one conversation's history, oldest first, paged backwards.

import { HttpError } from "../http/http_error.ts";
import { json } from "../http/router.ts";
import type { Store } from "../core/store.ts";
import { windowClosesAt, windowStateOf } from "../protocol/window.ts";

/** What the routes need: the store, and who is calling. */
export interface ConversationDeps {
  store: Store;
  agentOf(req: Request, url: URL): Promise<string>;
  /** A history item's `msg` as the agent should read it (media URLs with a fresh lifetime). */
  renewMsg?: (msg: Record<string, unknown>) => Record<string, unknown>;
}

/** Creates `GET contacts` and `GET history`. */
export function createConversationRoutes(deps: ConversationDeps) {
  const { store } = deps;
  return {
    async contacts(req: Request, url: URL): Promise<Response> {
      const agentId = await deps.agentOf(req, url);
      const list = await store.listContacts(agentId);
      const waiting = await store.listWaiting();
      const s = (ms: number) => Math.floor(ms / 1000);
      return json({
        contacts: list.map((c) => ({
          contact_id: c.follower_id,
          name: c.name,
          avatar: c.avatar,
          agent_id: c.agent_id,
          status: c.status,
          last_message: c.last_message,
          last_message_time: s(c.last_message_at),
          last_inbound_time: s(c.last_inbound_at),
          // The allowance WeChat gives: 48 h after a message, a minute after a follow or menu tap.
          window_expires_at: s(windowClosesAt(windowStateOf(c)) ?? 0),
          unread: c.unread,
          subscribed: c.subscribed,
        })),
        waiting: waiting.map((c) => ({
          contact_id: c.follower_id,
          name: c.name,
          since: s(c.waiting_since ?? c.last_inbound_at),
          last_message: c.last_message,
        })),
      });
    },

    async history(req: Request, url: URL): Promise<Response> {
      const agentId = await deps.agentOf(req, url);
      const contactId = url.searchParams.get("contact_id");
      if (!contactId) throw new HttpError(400, "Missing contact_id");
      const contact = await store.getContact(contactId);
      if (!contact) throw new HttpError(404, `No contact ${contactId}`);
      if (contact.agent_id !== agentId && contact.last_agent_id !== agentId) {
        throw new HttpError(403, `Contact ${contactId} is served by another agent`);
      }
      const limitRaw = Number(url.searchParams.get("limit") ?? 50);
      const limit = Number.isInteger(limitRaw) && limitRaw > 0 ? Math.min(limitRaw, 200) : 50;
      const beforeRaw = url.searchParams.get("before");
      const before = beforeRaw === null || beforeRaw === "" ? null : Number(beforeRaw);
      if (before !== null && (!Number.isSafeInteger(before) || before < 0)) {
        throw new HttpError(400, "before must be a cursor from next_before");
      }
      const page = await store.readHistory(contactId, before, limit);
      const renew = deps.renewMsg;
      const messages = renew
        ? page.items.map((item) => ({ ...item, msg: renew(item.msg) }))
        : page.items;
      return json({ messages, next_before: page.nextBefore });
    },
  };
}
