// What an agent reads over HTTP: its contact list (with the followers waiting for an agent),
// newest first and paged by a cursor, and one conversation's history, oldest first, paged
// backwards.

import { HttpError } from "../http/http_error.ts";
import { json } from "../http/router.ts";
import { keptLastMessage } from "../core/history_retention.ts";
import type { Contact, ContactCursor, Store } from "../core/store.ts";
import { replyQuotaOf, windowClosesAt, windowStateOf } from "../protocol/window.ts";
import { wholeNumberOf } from "./query_number.ts";

/** What the routes need: the store, and who is calling. */
export interface ConversationDeps {
  store: Store;
  agentOf(req: Request, url: URL): Promise<string>;
  /** A history item's `msg` as the agent should read it (media URLs with a fresh lifetime). */
  renewMsg?: (msg: Record<string, unknown>, direction: string) => Record<string, unknown>;
  now: () => number;
  /** HISTORY_RETENTION_DAYS, ms: a preview goes with its conversation's history. */
  historyRetentionMs: number;
}

/** Contacts in one page of `GET contacts` unless `limit` says otherwise, and at most. */
export const CONTACTS_PAGE = 200;
const CONTACTS_PAGE_MAX = 1000;

/** `next` of a contacts page: where the next one starts. */
function cursorOf(c: Contact): string {
  return `${c.last_message_at}.${c.follower_id}`;
}

/** Reads `cursor=` as `cursorOf` wrote it. */
function parseCursor(raw: string): ContactCursor {
  const dot = raw.indexOf(".");
  const at = Number(raw.slice(0, dot));
  if (dot <= 0 || !Number.isSafeInteger(at) || dot === raw.length - 1) {
    throw new HttpError(400, "cursor must be the next value of the previous page");
  }
  return { at, id: raw.slice(dot + 1) };
}

function pageLimit(url: URL, fallback: number, max: number): number {
  const raw = url.searchParams.get("limit");
  if (raw === null || raw === "") return fallback;
  const n = wholeNumberOf(raw);
  if (n === null || n < 1) {
    throw new HttpError(400, "limit must be a whole number above 0");
  }
  return Math.min(n, max);
}

/** Creates `GET contacts` and `GET history`. */
export function createConversationRoutes(deps: ConversationDeps) {
  const { store } = deps;
  return {
    async contacts(req: Request, url: URL): Promise<Response> {
      const agentId = await deps.agentOf(req, url);
      const limit = pageLimit(url, CONTACTS_PAGE, CONTACTS_PAGE_MAX);
      const rawCursor = url.searchParams.get("cursor");
      const after = rawCursor === null || rawCursor === "" ? null : parseCursor(rawCursor);
      // One more than the page says whether there is a next one.
      const found = await store.listContacts(agentId, { limit: limit + 1, after });
      const list = found.slice(0, limit);
      const next = found.length > limit ? cursorOf(list[list.length - 1]!) : null;
      // The waiting followers come with the first page, the longest-waiting `limit` of them.
      const waiting = after === null ? (await store.listWaiting()).slice(0, limit) : [];
      const s = (ms: number) => Math.floor(ms / 1000);
      const now = deps.now();
      const lastMessage = (c: Contact) => keptLastMessage(c, deps.historyRetentionMs, now);
      return json({
        contacts: list.map((c) => ({
          contact_id: c.follower_id,
          name: c.name,
          avatar: c.avatar,
          agent_id: c.agent_id,
          status: c.status,
          last_message: lastMessage(c),
          last_message_time: s(c.last_message_at),
          last_inbound_time: s(c.last_inbound_at),
          // The allowance WeChat gives: 48 h after a message, a minute after a follow or menu tap.
          window_expires_at: s(windowClosesAt(windowStateOf(c)) ?? 0),
          unread: c.unread,
          subscribed: c.subscribed,
          replies_since_inbound: c.replies_since_inbound,
          // Of how many: 5 after a message, 3 within the minute after a follow or menu tap.
          reply_quota: replyQuotaOf(windowStateOf(c)),
          // WeChat refused a reply with 45015/45047: closed until the follower acts again.
          window_closed: Boolean(c.window_closed_by),
          messages: c.history_seq,
          labels: c.labels ?? [],
          // The follower's last reported place (LOCATION), `time` when first reported there.
          location: c.location
            ? {
              latitude: c.location.latitude,
              longitude: c.location.longitude,
              precision: c.location.precision,
              time: s(c.location.at),
            }
            : null,
        })),
        waiting: waiting.map((c) => ({
          contact_id: c.follower_id,
          name: c.name,
          since: s(c.waiting_since ?? c.last_inbound_at),
          last_message: lastMessage(c),
        })),
        next,
        // The bridge's clock, by which `window_expires_at` counts: a console on a PC whose clock
        // is off counts the window on this instead.
        now: now / 1000,
      });
    },

    async history(req: Request, url: URL): Promise<Response> {
      const agentId = await deps.agentOf(req, url);
      const contactId = url.searchParams.get("contact_id");
      if (!contactId) throw new HttpError(400, "Missing contact_id");
      const contact = await store.getContact(contactId);
      if (!contact) throw new HttpError(404, `No contact ${contactId}`);
      // As `read`: a follower nobody serves (waiting, or its conversation closed) is shown to
      // every agent in `waiting` and is any agent's to claim, so what it asked may be read
      // first; only one another agent serves is refused.
      const mine = contact.agent_id === agentId || contact.last_agent_id === agentId;
      if (!mine && contact.agent_id !== null) {
        throw new HttpError(403, `Contact ${contactId} is served by another agent`);
      }
      const limitRaw = wholeNumberOf(url.searchParams.get("limit") ?? "");
      const limit = limitRaw !== null && limitRaw > 0 ? Math.min(limitRaw, 200) : 50;
      const beforeRaw = url.searchParams.get("before");
      const before = beforeRaw === null || beforeRaw === "" ? null : Number(beforeRaw);
      if (before !== null && (!Number.isSafeInteger(before) || before < 0)) {
        throw new HttpError(400, "before must be a cursor from next_before");
      }
      const page = await store.readHistory(contactId, before, limit);
      const renew = deps.renewMsg;
      const messages = renew
        ? page.items.map((item) => ({ ...item, msg: renew(item.msg, item.direction) }))
        : page.items;
      return json({ messages, next_before: page.nextBefore });
    },
  };
}
