// The bridge as one `Request -> Response` handler: the route table, and the wiring of store,
// hub, switchboard, WeChat webhook, agent messages and replies. `createApp(deps)` takes
// everything with a side effect from its caller, so tests build it on memory and fakes.

import { getLogger } from "@logtape/logtape";
import { createAgentMessages, type ReplyHandler } from "./agents/agent_messages.ts";
import { agentIdFrom, createAgentSocketHandler } from "./agents/agent_socket.ts";
import { type AgentAuth, createAgentAuth } from "./agents/auth.ts";
import { HEARTBEAT_FRAME } from "./agents/envelope.ts";
import { createHub } from "./agents/hub.ts";
import type { Config } from "./config.ts";
import { HttpError } from "./http_error.ts";
import { createRouteTable, errorResponse, json, type Route } from "./router.ts";
import { DEFAULT_LIMITS, readBodyLimited } from "./limits.ts";
import { type BridgeMetrics, createBridgeMetrics, PROMETHEUS_CONTENT_TYPE } from "./metrics.ts";
import type { InboundItem, InboundOutcome, Store } from "./store/types.ts";
import { createConversationRoutes } from "./agents/conversations.ts";
import type { MediaIntake } from "./media/intake.ts";
import { createStaticFiles } from "./static_files.ts";
import { createSwitchboard } from "./switchboard.ts";
import { createWechatCrypto } from "./wechat/crypto.ts";
import { createWechatWebhook } from "./wechat/webhook.ts";

const log = getLogger(["bridge", "http"]);

/** SPEC's base path; every route is also served at the root. */
export const BASE = "/im_component/wx_official_account";

/** What the app is built from. */
export interface AppDeps {
  config: Config;
  store: Store;
  /** Sends agents' replies; built by the caller (WeChat's API, or demo mode). */
  createReplies: (ctx: ReplyContext) => ReplyHandler;
  now?: () => number;
  newId?: () => string;
  metrics?: BridgeMetrics;
  auth?: AgentAuth;
  staticDir?: string;
  /** Extra routes (media, demo) mounted before the 404. */
  extraRoutes?: (ctx: ReplyContext) => Route[];
  /** Demo mode: take the follower simulator's `?name=` as the follower's display name. */
  acceptFollowerNames?: boolean;
  /** Follower media: fetched before the message is routed. */
  createMediaIntake?: (accept: (item: InboundItem) => Promise<InboundOutcome>) => MediaIntake;
}

/** What reply handlers and extra routes may use. */
export interface ReplyContext {
  store: Store;
  switchboard: ReturnType<typeof createSwitchboard>;
  hub: ReturnType<typeof createHub>;
  metrics: BridgeMetrics;
  now: () => number;
  newId: () => string;
  companyId: string;
  /** The agent calling an HTTP route (credentials, else `userid`); throws 400/401. */
  agentOf(req: Request, url: URL): Promise<string>;
}

/** Both the SPEC path and the root path for a route. */
const both = (path: string) => [`${BASE}${path}`, path];

/** Builds the handler and what main.ts needs to run and stop it. */
export function createApp(deps: AppDeps) {
  const { config, store } = deps;
  const now = deps.now ?? Date.now;
  let idCounter = 0;
  const idPrefix = now().toString(36);
  const newId = deps.newId ?? (() => `${idPrefix}-${(++idCounter).toString(36)}`);
  const metrics = deps.metrics ?? createBridgeMetrics();
  const auth = deps.auth ?? createAgentAuth({
    secret: config.agentSecret,
    allowedOrigins: config.allowedOrigins,
  });
  const hub = createHub({
    onOnline: () => metrics.agentsOnline.set(hub.agentCount),
    onOffline: () => metrics.agentsOnline.set(hub.agentCount),
  });
  const switchboard = createSwitchboard({
    store,
    hub,
    observer: {
      delivered(entry, sockets) {
        if (sockets > 0) metrics.messagesOut.inc({ msg_type: entry.envelope.data.msg_type });
      },
      routed(outcome, ms) {
        if (outcome === "delivered") metrics.deliveryLatency.observe(ms / 1000);
      },
    },
  });
  // The gauge is read synchronously at scrape time; the store answers asynchronously.
  let queueDepth = 0;
  metrics.queueDepth.setCollector(() => queueDepth);
  const depthTimer = setInterval(() => {
    store.queueDepth().then((n) => queueDepth = n, () => {});
  }, 5_000);
  Deno.unrefTimer(depthTimer);
  /** Tells agents about 48-hour windows closing or closed (SPEC: "window expiry"). */
  const sweepWindows = async (): Promise<number> =>
    store.sweepWindows ? await switchboard.apply(store.sweepWindows(now())) : 0;
  const windowTimer = setInterval(() => {
    sweepWindows().catch((error) => log.warn("Cannot sweep reply windows: {error}", { error }));
  }, 60_000);
  Deno.unrefTimer(windowTimer);
  const ctx: ReplyContext = {
    store,
    switchboard,
    hub,
    metrics,
    now,
    newId,
    companyId: config.companyId,
    agentOf: async (req, url) => (await agentOf(req, url, true))!,
  };
  const replies = deps.createReplies(ctx);
  const messages = createAgentMessages({
    store,
    switchboard,
    replies,
    companyId: config.companyId,
    now,
    newId,
  });
  // A key without an appid, or a malformed key, stops start-up rather than every message.
  const wechatCrypto = config.wechatAesKey
    ? createWechatCrypto({
      aesKey: config.wechatAesKey,
      appId: config.wechatAppId ?? "",
      previousAesKey: config.wechatAesKeyPrevious,
    })
    : undefined;
  const intake = deps.createMediaIntake?.((item) => switchboard.accept(item)) ?? null;
  const webhook = createWechatWebhook({
    token: config.wechatToken,
    crypto: wechatCrypto,
    companyId: config.companyId,
    now,
    newId,
    acceptNames: deps.acceptFollowerNames,
    accept(item, _message, url) {
      metrics.messagesIn.inc({ msg_type: item.envelope.data.msg_type });
      if (intake?.wants(item)) return intake.submit(item, config.publicUrl ?? url.origin);
      return switchboard.accept(item);
    },
  });
  const upgrade = createAgentSocketHandler({
    hub,
    switchboard,
    messages,
    auth,
    limits: DEFAULT_LIMITS,
    idleTimeoutS: Math.max(config.heartbeatIntervalS * 2, 10),
    onSocketCount: (open) => metrics.agentSocketsOpen.set(open),
    onRejected: (reason) => metrics.rejected.inc({ reason }),
  });
  const files = createStaticFiles(
    deps.staticDir ?? new URL("../static/", import.meta.url).pathname,
  );

  const decoder = new TextDecoder();

  /** WeChat's XML, by either route, answered and timed the same way. */
  async function receiveXml(body: string, url: URL, started: number): Promise<Response> {
    const res = await webhook.receive(body, url);
    metrics.webhookDuration.observe((performance.now() - started) / 1000);
    return res;
  }

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

  async function send(req: Request, url: URL): Promise<Response> {
    const started = performance.now();
    const text = decoder.decode(await readBodyLimited(req, DEFAULT_LIMITS.sendBodyBytes));
    // The seed's own test posts WeChat XML to /send.
    if (text.trimStart().startsWith("<")) return await receiveXml(text, url, started);
    const agentId = await agentOf(req, url, false);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new HttpError(400, "Cannot parse body: expected JSON (or WeChat XML)");
    }
    metrics.messagesIn.inc({ msg_type: "agent" });
    const answer = await messages.handle(agentId, body);
    return json(answer.body, answer.status);
  }

  const conversations = createConversationRoutes({
    store,
    agentOf: async (req, url) => (await agentOf(req, url, true))!,
  });

  const routes: Route[] = [];
  const add = (method: string, paths: string[], handler: Route["handler"]) => {
    for (const path of paths) routes.push({ method, path, handler });
  };
  add("GET", both("/msg"), (req, url) => upgrade(req, url));
  add("POST", both("/send"), send);
  add("GET", both("/send_xml"), (_req, url) => webhook.verify(url));
  add("POST", both("/send_xml"), async (req, url) => {
    const started = performance.now();
    const body = decoder.decode(await readBodyLimited(req, DEFAULT_LIMITS.xmlBodyBytes));
    return await receiveXml(body, url, started);
  });
  add("GET", both("/contacts"), conversations.contacts);
  add("GET", both("/history"), conversations.history);
  add("GET", ["/healthz"], () => json({ status: "ok" }));
  add("GET", ["/readyz"], async () => {
    try {
      await store.ping();
      return json({ status: "ready" });
    } catch {
      return json({ status: "store unreachable" }, 503);
    }
  });
  add(
    "GET",
    ["/metrics"],
    async () =>
      new Response(await metrics.render(), {
        headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
      }),
  );
  add(
    "GET",
    ["/"],
    (req, url) =>
      req.headers.get("upgrade")?.toLowerCase() === "websocket"
        ? upgrade(req, url)
        : files.serve(req, "index.html"),
  );
  add("GET", ["/console"], (req) => files.serve(req, "console.html"));
  add("GET", ["/console/follower"], (req) => files.serve(req, "follower.html"));
  add("GET", ["/static/:file+"], (req, _url, params) => files.serve(req, params["file"] ?? ""));
  for (const route of deps.extraRoutes?.(ctx) ?? []) routes.push(route);
  const table = createRouteTable(routes);

  async function handler(req: Request): Promise<Response> {
    const url = new URL(req.url);
    try {
      const found = table.find(req.method === "HEAD" ? "GET" : req.method, url);
      if ("handler" in found) return await found.handler(req, url, found.params);
      if (found.allowed.length > 0) {
        return errorResponse(405, `Method ${req.method} not allowed`, {
          allow: found.allowed.join(", "),
        });
      }
      return errorResponse(404, `No route for ${url.pathname}`);
    } catch (error) {
      if (error instanceof HttpError) {
        return errorResponse(error.status, error.message, error.headers);
      }
      if (error instanceof SyntaxError) return errorResponse(400, error.message);
      log.error("Request {method} {path} failed: {error}", {
        method: req.method,
        path: url.pathname,
        error,
      });
      return errorResponse(500, "Internal error");
    }
  }

  let heartbeat: ReturnType<typeof setInterval> | undefined;
  return {
    handler,
    hub,
    switchboard,
    metrics,
    auth,
    intake,
    sweepWindows,
    /** Starts the 101 heartbeat to every socket. */
    startHeartbeat(): void {
      heartbeat ??= setInterval(
        () => hub.broadcast(HEARTBEAT_FRAME),
        config.heartbeatIntervalS * 1000,
      );
    },
    /** Stops the heartbeat, closes sockets with `code`, and waits for accepted messages. */
    async shutdown(code = 1001, reason = "server shutting down"): Promise<void> {
      clearInterval(depthTimer);
      clearInterval(windowTimer);
      if (heartbeat !== undefined) clearInterval(heartbeat);
      heartbeat = undefined;
      // Media jobs still running stay journaled and resume at the next start.
      await switchboard.drain();
      hub.closeAll(code, reason);
    },
  };
}

/** The running app. */
export type App = ReturnType<typeof createApp>;
