// The bridge assembled from its configuration: the app with its reply target (WeChat's API
// with credentials, the demo outbox without) and the routes that depend on it. main.ts and
// the tests both build the server here, so they run the same thing.

import { BASE, createApp } from "./app.ts";
import { json, type Route } from "./router.ts";
import type { Config } from "./config.ts";
import { HttpError } from "./http_error.ts";
import { createDemoOutbox } from "./replies/demo_outbox.ts";
import { createReplyService, type MediaFile } from "./replies/reply_service.ts";
import { createAgentUpload } from "./replies/agent_upload.ts";
import type { Store } from "./store/types.ts";
import { createWechatClient, type WechatClient } from "./wechat/api_client.ts";
import { createMediaIntake } from "./media/intake.ts";
import { createMediaPipeline, type GetMedia } from "./media/pipeline.ts";
import { serveMedia } from "./media/serve.ts";
import { createUrlSigner } from "./media/signed_url.ts";
import { createDiskStorage } from "./media/storage.ts";
import { extensionOf } from "./media/serve.ts";
import { readBodyLimited } from "./limits.ts";
import { createBridgeMetrics } from "./metrics.ts";

/** What the bridge is built from besides its configuration. */
export interface BridgeDeps {
  store: Store;
  now?: () => number;
  fetch?: typeof fetch;
  /** A ready client (tests); else one is made from WECHAT_APPID and WECHAT_SECRET. */
  wechatClient?: WechatClient;
  /** Signs media URLs; must be the same across restarts and instances (see main.ts). */
  mediaSecret: string | Uint8Array;
  /** Journal media jobs under DATA_DIR so a restart resumes them (off in memory-only tests). */
  journalMedia?: boolean;
}

/** Builds the whole bridge. */
export function createBridge(config: Config, deps: BridgeDeps) {
  const doFetch = deps.fetch ?? fetch;
  const metrics = createBridgeMetrics();
  const client = deps.wechatClient ??
    (config.wechatAppId && config.wechatSecret
      ? createWechatClient({
        apiBase: config.wechatApiBase,
        appId: config.wechatAppId,
        secret: config.wechatSecret,
        fetch: doFetch,
        now: deps.now,
      })
      : null);
  const outbox = client === null ? createDemoOutbox() : null;
  const storage = createDiskStorage(`${config.dataDir}/media`);
  const signer = createUrlSigner(deps.mediaSecret);
  // Demo mode has no WeChat to fetch from: the simulator's uploads stand in for media/get.
  const demoMedia = new Map<string, { bytes: Uint8Array; contentType: string }>();
  const getMedia: GetMedia | null = client ? (id, opts) => client.getMedia(id, opts) : (id) => {
    const file = demoMedia.get(id);
    if (!file) return Promise.reject(new Error(`No demo media ${id}`));
    return Promise.resolve({ kind: "file" as const, ...file });
  };
  const upload = createAgentUpload({
    storage,
    signer,
    client,
    onDemoMedia: (mediaId, bytes, contentType) => demoMedia.set(mediaId, { bytes, contentType }),
  });
  const pipeline = createMediaPipeline({
    storage,
    signer,
    getMedia,
    fetch: doFetch,
    allowedHosts: config.mediaAllowedHosts,
    maxBytes: config.mediaMaxBytes,
    timeoutMs: config.mediaTimeoutMs,
  });

  async function fetchMedia(url: string): Promise<MediaFile> {
    if (!/^https?:\/\//.test(url)) throw new Error("media_url must be an http(s) URL");
    const res = await doFetch(url, { signal: AbortSignal.timeout(config.mediaTimeoutMs) });
    if (!res.ok) throw new Error(`Cannot fetch media_url: HTTP ${res.status}`);
    const length = Number(res.headers.get("content-length") ?? 0);
    if (length > config.mediaMaxBytes) throw new Error("media_url is too large");
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.byteLength > config.mediaMaxBytes) throw new Error("media_url is too large");
    const name = new URL(url).pathname.split("/").pop() || "media";
    return {
      bytes,
      contentType: res.headers.get("content-type") ?? "application/octet-stream",
      filename: name,
    };
  }

  const app = createApp({
    config,
    metrics,
    acceptFollowerNames: outbox !== null,
    store: deps.store,
    now: deps.now,
    createReplies: (ctx) =>
      createReplyService(
        ctx,
        client ? { kind: "wechat", client, fetchMedia } : { kind: "demo", outbox: outbox! },
      ),
    createMediaIntake: (accept) =>
      createMediaIntake({
        pipeline,
        journalDir: deps.journalMedia === false ? null : `${config.dataDir}/media-jobs`,
        accept,
      }),
    extraRoutes: (ctx) => {
      const routes: Route[] = [];
      routes.push({
        method: "GET",
        path: "/media/:key",
        handler: (req, url, params) =>
          serveMedia(req, params["key"] ?? "", url.searchParams.get("t"), {
            storage,
            signer,
          }),
      });
      for (const path of [`${BASE}/upload`, "/upload"]) {
        routes.push({
          method: "POST",
          path,
          handler: async (req, url) => {
            await ctx.agentOf(req, url);
            return await upload(req, config.publicUrl ?? url.origin);
          },
        });
      }
      routes.push({
        method: "POST",
        path: `${BASE}/demo/media`,
        handler: async (req) => {
          if (!outbox) throw new HttpError(404, "Demo mode is off: WeChat credentials are set");
          const type = req.headers.get("content-type") ?? "";
          const ext = extensionOf(type);
          if (!ext || !type.startsWith("image/")) {
            throw new HttpError(415, "Send an image (JPEG, PNG, GIF or WebP)");
          }
          const bytes = await readBodyLimited(
            req,
            Math.min(config.mediaMaxBytes, 10 * 1024 * 1024),
          );
          const key = await storage.put(bytes, ext);
          const mediaId = `demo_${key.slice(0, 32)}`;
          demoMedia.set(mediaId, { bytes, contentType: type });
          const base = config.publicUrl ?? new URL(req.url).origin;
          return json({ media_id: mediaId, pic_url: `${base}/media/${key}?t=${signer.sign(key)}` });
        },
      });
      routes.push({
        method: "GET",
        path: `${BASE}/demo/replies`,
        handler: (_req, url) => {
          if (!outbox) throw new HttpError(404, "Demo mode is off: WeChat credentials are set");
          const contactId = url.searchParams.get("contact_id");
          if (!contactId) throw new HttpError(400, "Missing contact_id");
          const since = Number(url.searchParams.get("since") ?? 0);
          return json(outbox.since(contactId, Number.isFinite(since) ? since : 0));
        },
      });
      return routes;
    },
  });
  return { ...app, demo: outbox !== null };
}

/** The assembled bridge. */
export type Bridge = ReturnType<typeof createBridge>;
