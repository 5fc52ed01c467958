// Several official accounts behind one port: each account is a whole bridge of its own (its
// store, WeChat client, token, windows, hub), and this front sends each request to the account
// it belongs to. Agents reach only the accounts the file lets them serve, so one account's
// agents never see another's followers.

import type { ConnectionInfo } from "./http/connections.ts";
import type { AccountConfig } from "./accounts.ts";
import { accountsOf } from "./accounts.ts";
import { agentIdFrom } from "./agents/agent_socket.ts";
import type { AgentAuth } from "./agents/auth.ts";
import { HttpError } from "./http/http_error.ts";
import { DEFAULT_LIMITS, readBodyLimited } from "./http/limits.ts";
import type { BridgeMetrics } from "./http/metrics.ts";
import { errorResponse, json } from "./http/router.ts";
import { withAccount } from "./logging.ts";
import { createRefusedCallbacks } from "./wechat/refused_callbacks.ts";

/** What the front needs of one account's bridge. */
export interface AccountUnit {
  handler(req: Request, info?: ConnectionInfo): Promise<Response>;
  metrics: BridgeMetrics;
}

/** What `createAccountFront` needs. */
export interface AccountFrontOptions {
  /** The accounts in the file's order; the first takes what names no account. */
  accounts: Array<{ config: AccountConfig; unit: AccountUnit }>;
  auth: AgentAuth;
  /** SPEC's base path, `/im_component/wx_official_account`. */
  base: string;
}

/** The front: one handler for every account, and `/metrics` with an `account` label. */
export function createAccountFront(options: AccountFrontOptions) {
  const { accounts, auth, base } = options;
  const byId = new Map(accounts.map((a) => [a.config.id, a]));
  const byOriginal = new Map(
    accounts.filter((a) => a.config.originalId).map((a) => [a.config.originalId!, a]),
  );
  const first = accounts[0]!;
  for (const { config, unit } of accounts) {
    unit.metrics.registry.setDefaultLabels({ account: config.id });
  }
  const callback = new RegExp(`^(?:${escape(base)})?/send_xml/([^/]+)$`);
  const plainXml = new Set([`${base}/send_xml`, "/send_xml", `${base}/send`, "/send"]);
  // The agent socket's routes (the root upgrades too), the only ones whose URL may carry a token.
  const socketRoutes = new Set([`${base}/msg`, "/msg", "/"]);
  const decoder = new TextDecoder();
  // Counted with the first account's refusals: a callback that names no account is none's.
  const refusedCallbacks = createRefusedCallbacks({
    count: (status) => first.unit.metrics.rejected.inc({ reason: `webhook_${status}` }),
  });

  /** One account's bridge answers; what it logs meanwhile names the account. */
  function serve(
    account: { config: AccountConfig; unit: AccountUnit },
    req: Request,
    info?: ConnectionInfo,
  ): Promise<Response> {
    return withAccount(account.config.id, () => account.unit.handler(req, info));
  }

  /**
   * Who the request is from: with tokens required, the token's subject (401 for a missing claim's
   * token, a forged one or someone else's), null without one; in open mode the claimed userid.
   * Which accounts an agent serves is told only to that agent: a stranger guessing userids got
   * 400/403 naming them.
   */
  async function agentOf(req: Request, url: URL): Promise<string | null> {
    const claimed = agentIdFrom(url);
    if (!auth.required) return claimed;
    // Only a Bearer header is an agent's: a proxy's password (`Basic`) passes on every request,
    // the console's page and files too, which answered 401.
    const hasToken = /^Bearer[ \t]/i.test(req.headers.get("authorization") ?? "") ||
      url.searchParams.has("token");
    return hasToken
      ? await auth.authenticate(req, url, claimed, socketRoutes.has(url.pathname))
      : null;
  }

  /** The account an agent's request goes to: `account=`, else the only one it serves. */
  function accountForAgent(agent: string, named: string | null) {
    const serves = accountsOf(accounts.map((a) => a.config), agent);
    if (named !== null) {
      const account = byId.get(named);
      if (!account) throw new HttpError(404, `No account ${named}`);
      if (!serves.includes(account.config)) {
        throw new HttpError(403, `Agent ${agent} does not serve account ${named}`);
      }
      return account;
    }
    if (serves.length === 1) return byId.get(serves[0]!.id)!;
    if (serves.length === 0) throw new HttpError(403, `Agent ${agent} serves no account`);
    throw new HttpError(
      400,
      `Agent ${agent} serves accounts ${serves.map((a) => a.id).join(", ")}: add account=ID`,
    );
  }

  async function route(req: Request, info?: ConnectionInfo): Promise<Response> {
    const url = new URL(req.url);
    const path = url.pathname;
    // WeChat's callback for one account: B/send_xml/<account>, answered as B/send_xml.
    const named = callback.exec(path)?.[1];
    if (named !== undefined) {
      const account = byId.get(decodeSegment(named) ?? "");
      if (!account) return errorResponse(404, `No account ${named}`);
      url.pathname = path.slice(0, path.lastIndexOf("/"));
      const body = req.method === "POST" ? await readBody(req) : null;
      return await serve(account, copyOf(req, url, body), info);
    }
    if (path.startsWith("/media/")) return await firstThatHas(req);
    if (path === "/metrics") return await metrics();
    if (path === "/readyz") return await ready(req);
    if (path === "/healthz") return json({ status: "ok" });
    const agent = await agentOf(req, url);
    if (agent !== null) {
      return await serve(accountForAgent(agent, url.searchParams.get("account")), req, info);
    }
    // WeChat XML on a plain route goes to the account it names (ToUserName), else the first.
    if (req.method === "POST" && plainXml.has(path)) {
      const bytes = await readBody(req);
      const to = /<ToUserName>\s*(?:<!\[CDATA\[)?\s*([^<\]\s]+)/.exec(decoder.decode(bytes))?.[1];
      const account = (to && byOriginal.get(to)) || unlisted(to);
      if (!account) {
        // An original_id mistyped in the file: WeChat drops each such message after three tries.
        const refused = new HttpError(404, `No account has original_id ${to}`);
        refusedCallbacks.note(refused);
        return errorResponse(refused.status, refused.message);
      }
      return await serve(account, copyOf(req, url, bytes), info);
    }
    const account = url.searchParams.get("account");
    if (account !== null) {
      const found = byId.get(account);
      // Without a token the account answers as one account does (401 on an agent's route, the
      // page on the console's): an id no account has is not told apart from one that is.
      if (found) return await serve(found, req, info);
      if (!auth.required) return errorResponse(404, `No account ${account}`);
    }
    return await serve(first, req, info);
  }

  /**
   * The account for a ToUserName no account lists: the first, unless it is an original id
   * (`gh_…`), which only an account without one of its own may be. An account removed from the
   * file, whose token another still shares, had its followers shown to the first's agents.
   */
  function unlisted(to: string | undefined) {
    if (to === undefined || !to.startsWith("gh_")) return first;
    return accounts.find((a) => a.config.originalId === undefined) ?? null;
  }

  /** A media URL is signed by one account's key and stored in its storage: ask each in turn. */
  async function firstThatHas(req: Request): Promise<Response> {
    let last: Response | undefined;
    for (const account of accounts) {
      const res = await serve(account, copyOf(req, new URL(req.url), null));
      if (res.status !== 403 && res.status !== 404) return res;
      await last?.body?.cancel();
      last = res;
    }
    return last!;
  }

  /** Ready when every account's bridge is; else 503 with what each one says. */
  async function ready(req: Request): Promise<Response> {
    const answers = await Promise.all(accounts.map(async (account) => {
      const { config } = account;
      const res = await serve(account, copyOf(req, new URL(req.url), null));
      const body = await res.json().catch(() => ({})) as { status?: string };
      return { id: config.id, ok: res.ok, status: body.status ?? `HTTP ${res.status}` };
    }));
    const down = answers.filter((a) => !a.ok);
    if (down.length === 0) return json({ status: "ready" });
    return json({
      status: down.map((a) => `${a.id}: ${a.status}`).join("; "),
      accounts: Object.fromEntries(answers.map((a) => [a.id, a.status])),
    }, 503);
  }

  async function metrics(): Promise<Response> {
    const texts = await Promise.all(accounts.map(({ unit }) => unit.metrics.render()));
    return new Response(mergeExpositions(texts), {
      headers: { "content-type": first.unit.metrics.registry.contentType },
    });
  }

  return {
    async handler(req: Request, info?: ConnectionInfo): Promise<Response> {
      try {
        return await route(req, info);
      } catch (error) {
        if (error instanceof HttpError) {
          return errorResponse(error.status, error.message, error.headers);
        }
        if (error instanceof SyntaxError) return errorResponse(400, error.message);
        throw error;
      }
    },
  };
}

/**
 * Prometheus texts of several registries as one: each family's HELP and TYPE once, then every
 * registry's samples (told apart by their `account` label). The process's own metrics are the
 * same objects in every registry: kept from the first only, without an `account` label.
 */
export function mergeExpositions(texts: string[]): string {
  const families = new Map<string, { head: string[]; samples: string[]; shared: boolean }>();
  texts.forEach((text, index) => {
    let current: { head: string[]; samples: string[]; shared: boolean } | undefined;
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        const name = meta[2]!;
        let family = families.get(name);
        if (!family) {
          family = { head: [], samples: [], shared: !name.startsWith("bridge_") };
          families.set(name, family);
        }
        if (index === 0) family.head.push(line);
        current = index === 0 || !family.shared ? family : undefined;
        continue;
      }
      // The process's metrics belong to no account: the first registry's label is dropped.
      current?.samples.push(
        current.shared ? line.replace(/account="[^"]*",?/, "").replace("{}", "") : line,
      );
    }
  });
  const out: string[] = [];
  for (const family of families.values()) out.push(...family.head, ...family.samples);
  return out.join("\n") + "\n";
}

/** A body read as the account's routes would (their own limits apply again there). */
function readBody(req: Request): Promise<Uint8Array> {
  return readBodyLimited(req, Math.max(DEFAULT_LIMITS.sendBodyBytes, DEFAULT_LIMITS.xmlBodyBytes));
}

/** The request again, at `url` with `body` (already read), for an account's handler. */
function copyOf(req: Request, url: URL, body: Uint8Array | null): Request {
  return new Request(url, {
    method: req.method,
    headers: req.headers,
    body: body as Uint8Array<ArrayBuffer> | null,
  });
}

/** A percent-encoded path segment decoded; null when it is not valid UTF-8 (`%E0%A4%A`). */
function decodeSegment(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
