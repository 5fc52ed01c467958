// What a team shares over HTTP, beside one agent's contacts and history: the quick replies
// (快捷回复) every agent inserts, the agents a conversation can be transferred to (presence and
// load), and search in the messages of the conversations an agent serves or served.

import { HttpError } from "../http/http_error.ts";
import { readBodyLimited } from "../http/limits.ts";
import { json } from "../http/router.ts";
import type { HistoryItem, QuickReply, Store } from "../core/store.ts";

/** Bounds on quick replies: a team's set is a short list, not a document store. */
export const QUICK_REPLY_LIMITS = { count: 500, title: 40, text: 1_000 };

/** How many history items one search request reads at most before it answers with a cursor. */
const SEARCH_SCAN = 2_000;
const SEARCH_PAGE = 20;

/** What the routes need. */
export interface TeamRouteDeps {
  store: Store;
  agentOf(req: Request, url: URL): Promise<string>;
  /** Agents with a socket anywhere (every instance, with a shared store). */
  onlineAgents(): Promise<Iterable<string>>;
  now: () => number;
  /** True for an agent who serves this account (ACCOUNTS_FILE's `agents`); unset: any agent. */
  serves?: (agentId: string) => boolean;
}

/** One search hit: the message and the conversation it is in. */
export interface SearchHit {
  contact_id: string;
  name: string;
  message: HistoryItem;
}

/** Reads `{id?, title, text}`; throws SyntaxError or 400 on anything else. */
export function parseQuickReply(raw: unknown): { id: string | null; title: string; text: string } {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new SyntaxError("Cannot parse quick reply: expected a JSON object {title, text}");
  }
  const r = raw as Record<string, unknown>;
  const title = typeof r["title"] === "string" ? r["title"].trim() : "";
  const text = typeof r["text"] === "string" ? r["text"].trim() : "";
  const id = typeof r["id"] === "string" && r["id"] !== "" ? r["id"] : null;
  const { title: tMax, text: xMax } = QUICK_REPLY_LIMITS;
  if (title === "" || title.length > tMax) {
    throw new HttpError(400, `Cannot save quick reply: title must be 1-${tMax} characters`);
  }
  if (text === "" || text.length > xMax) {
    throw new HttpError(400, `Cannot save quick reply: text must be 1-${xMax} characters`);
  }
  if (id !== null && !/^[\w-]{1,64}$/.test(id)) {
    throw new HttpError(400, "Cannot save quick reply: id must be 1-64 letters, digits, _ or -");
  }
  return { id, title, text };
}

/** Creates the quick reply, agents and search routes. */
export function createTeamRoutes(deps: TeamRouteDeps) {
  const { store } = deps;
  return {
    async listQuickReplies(req: Request, url: URL): Promise<Response> {
      await deps.agentOf(req, url);
      return json({ quick_replies: await store.listQuickReplies() });
    },

    async saveQuickReply(req: Request, url: URL): Promise<Response> {
      const agentId = await deps.agentOf(req, url);
      const body = new TextDecoder().decode(await readBodyLimited(req, 8 * 1024));
      let raw: unknown;
      try {
        raw = JSON.parse(body);
      } catch {
        throw new SyntaxError("Cannot parse quick reply: expected JSON");
      }
      const parsed = parseQuickReply(raw);
      const existing = await store.listQuickReplies();
      const replaces = parsed.id !== null && existing.some((q) => q.id === parsed.id);
      if (!replaces && existing.length >= QUICK_REPLY_LIMITS.count) {
        throw new HttpError(409, `Cannot save quick reply: the team has ${existing.length}`);
      }
      const reply: QuickReply = {
        id: parsed.id ?? crypto.randomUUID(),
        title: parsed.title,
        text: parsed.text,
        updated_at: deps.now(),
        updated_by: agentId,
      };
      await store.putQuickReply(reply);
      return json({ quick_reply: reply }, replaces ? 200 : 201);
    },

    async deleteQuickReply(
      req: Request,
      url: URL,
      params: Record<string, string | undefined>,
    ): Promise<Response> {
      await deps.agentOf(req, url);
      const id = params["id"] ?? "";
      if (!(await store.deleteQuickReply(id))) throw new HttpError(404, `No quick reply ${id}`);
      return json({ deleted: id });
    },

    async agents(req: Request, url: URL): Promise<Response> {
      await deps.agentOf(req, url);
      const online = new Set(await deps.onlineAgents());
      // One taken off the account's list is still in its store, but can no longer be handed
      // a follower.
      const records = (await store.listAgents()).filter((a) => deps.serves?.(a.agent_id) ?? true);
      return json({
        agents: records
          .map((a) => ({
            agent_id: a.agent_id,
            online: online.has(a.agent_id),
            load: a.load,
            capacity: a.capacity,
          }))
          // Online first, then the least loaded: the order an agent picks from.
          .sort((a, b) =>
            Number(b.online) - Number(a.online) || a.load - b.load ||
            (a.agent_id < b.agent_id ? -1 : 1)
          ),
      });
    },

    /** `q` in the text of the agent's conversations (or one, `contact_id`), newest first;
     * `cursor` from `next_cursor` continues. */
    async search(req: Request, url: URL): Promise<Response> {
      const agentId = await deps.agentOf(req, url);
      const q = (url.searchParams.get("q") ?? "").trim().toLowerCase();
      if (q === "" || q.length > 100) throw new HttpError(400, "q must be 1-100 characters");
      const only = url.searchParams.get("contact_id");
      // The most recent conversations: an agent with thousands searches its newest 500.
      let contacts = await store.listContacts(agentId, { limit: 500 });
      if (only) contacts = contacts.filter((c) => c.follower_id === only);
      const cursor = parseCursor(url.searchParams.get("cursor"));
      const hits: SearchHit[] = [];
      let scanned = 0;
      let next: string | null = null;
      let i = cursor.index;
      let before = cursor.before;
      outer: for (; i < contacts.length; i++, before = null) {
        const contact = contacts[i]!;
        for (;;) {
          if (scanned >= SEARCH_SCAN || hits.length >= SEARCH_PAGE) {
            next = `${i}.${before ?? ""}`;
            break outer;
          }
          const page = await store.readHistory(contact.follower_id, before, 200);
          scanned += page.items.length;
          // Pages are oldest first; hits go newest first. A page is taken whole, so the
          // cursor always points at the next one.
          for (let k = page.items.length - 1; k >= 0; k--) {
            const m = page.items[k]!;
            if (textOf(m).toLowerCase().includes(q)) {
              hits.push({ contact_id: contact.follower_id, name: contact.name, message: m });
            }
          }
          if (page.nextBefore === null) break;
          before = page.nextBefore;
        }
      }
      return json({ results: hits, next_cursor: next });
    },
  };
}

function parseCursor(raw: string | null): { index: number; before: number | null } {
  if (raw === null || raw === "") return { index: 0, before: null };
  const m = /^(\d{1,9})\.(\d{0,15})$/.exec(raw);
  if (!m) throw new HttpError(400, "cursor must be a next_cursor from a search");
  return { index: Number(m[1]), before: m[2] === "" ? null : Number(m[2]) };
}

/** The searchable text of a message: its content, or a link's or file's title. */
function textOf(m: HistoryItem): string {
  const msg = m.msg;
  for (const field of ["content", "title", "description", "label", "recognition"]) {
    if (typeof msg[field] === "string") return msg[field] as string;
  }
  return "";
}
