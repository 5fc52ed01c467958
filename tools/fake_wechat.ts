// A local stand-in for WeChat's server API (api.weixin.qq.com): access tokens, customer-service
// sends, typing, media upload and download, answering like WeChat (HTTP 200, {errcode, errmsg})
// with scriptable errors and delays. Tests start it on port 0; `deno task fake-wechat` runs it.

/** One request the fake received, in arrival order. */
export interface FakeCall {
  path: string;
  query: Record<string, string>;
  body: unknown;
}

/** The multipart part `media/upload` received, as recorded in `calls`. */
export interface FakeUpload {
  media: { filename: string; contentType: string; bytes: Uint8Array } | null;
}

export interface FakeWechatOptions {
  port?: number;
  hostname?: string;
  appId?: string;
  secret?: string;
  tokenTtlS?: number;
  /** Receives one line per call, for running by hand. */
  log?: (line: string) => void;
}

export interface FakeWechat {
  /** Base URL, to use as WECHAT_API_BASE. */
  url: string;
  calls: FakeCall[];
  /** Accepted `message/custom/send` payloads, in order. */
  sent: Record<string, unknown>[];
  /** Access tokens handed out so far. */
  readonly tokensIssued: number;
  /** The next `times` calls to `path` answer `errcode`. */
  failNext(path: string, errcode: number, errmsg?: string, times?: number): void;
  /** The next `times` calls to `path` answer HTTP `status` with an HTML body. */
  failHttpNext(path: string, status: number, times?: number): void;
  /** The next `times` calls to `path` break the connection in the middle of the answer. */
  dropNext(path: string, times?: number): void;
  /** Every later call to `path` waits `ms` before answering (0 removes the delay). */
  delay(path: string, ms: number): void;
  /** Every token issued so far is refused with 40001 from now on. */
  revokeTokens(): void;
  addMedia(mediaId: string, bytes: Uint8Array, contentType: string, filename?: string): void;
  /**
   * A video: `media/get` answers {video_url} pointing at the fake, which serves the bytes, or at
   * `videoUrl` (WeChat's CDN, `*.tc.qq.com`) for a test whose fetch answers for that host.
   */
  addVideo(mediaId: string, bytes: Uint8Array, videoUrl?: string): void;
  close(): Promise<void>;
}

type Failure =
  | { kind: "errcode"; errcode: number; errmsg: string }
  | { kind: "http"; status: number }
  | { kind: "drop" };

interface StoredMedia {
  bytes: Uint8Array;
  contentType: string;
  filename?: string;
  video: boolean;
  videoUrl?: string;
}

// WeChat's size limits for temporary media, by upload type.
const UPLOAD_LIMITS: Record<string, { bytes: number; errcode: number }> = {
  image: { bytes: 10 * 1024 * 1024, errcode: 40009 },
  voice: { bytes: 2 * 1024 * 1024, errcode: 40010 },
  video: { bytes: 10 * 1024 * 1024, errcode: 40011 },
  thumb: { bytes: 64 * 1024, errcode: 40012 },
};

// WeChat reads an upload's format from its file name's extension: no extension, or one the type
// does not take, is errcode 40005 ("invalid file type").
const UPLOAD_EXTENSIONS: Record<string, string[]> = {
  image: ["jpg", "jpeg", "png", "gif", "bmp"],
  voice: ["amr", "mp3"],
  video: ["mp4"],
  thumb: ["jpg", "jpeg"],
};

const MESSAGE_TYPES = new Set([
  "text",
  "image",
  "voice",
  "video",
  "music",
  "news",
  "mpnews",
  "mpnewsarticle",
  "msgmenu",
  "wxcard",
  "miniprogrampage",
]);

const EXTENSIONS: Record<string, string> = {
  "image/jpeg": ".jpg",
  "image/png": ".png",
  "image/gif": ".gif",
  "audio/amr": ".amr",
  "audio/mpeg": ".mp3",
  "video/mp4": ".mp4",
};

/** Starts the fake on `options.port` (0 picks a free one) and resolves once it listens. */
export function startFakeWechat(options: FakeWechatOptions = {}): Promise<FakeWechat> {
  const appId = options.appId ?? "wxfake0000000000";
  const secret = options.secret ?? "fake-secret";
  const ttlMs = (options.tokenTtlS ?? 7200) * 1000;
  const calls: FakeCall[] = [];
  const sent: Record<string, unknown>[] = [];
  const failures = new Map<string, Failure[]>();
  const delays = new Map<string, number>();
  const tokens = new Map<string, { expiresAt: number; revoked: boolean }>();
  const media = new Map<string, StoredMedia>();
  const closing = new AbortController();
  let current: string | null = null;
  let issued = 0;
  let mediaCounter = 0;
  let url = "";

  function issueToken(): { access_token: string; expires_in: number } {
    issued++;
    const token = `fake-token-${issued}-${crypto.randomUUID().replaceAll("-", "")}`;
    tokens.set(token, { expiresAt: Date.now() + ttlMs, revoked: false });
    current = token;
    return { access_token: token, expires_in: Math.round(ttlMs / 1000) };
  }

  // Like stable_token's ordinary mode: the same token while it has more than 5 minutes left.
  function stableToken(force: boolean): { access_token: string; expires_in: number } {
    const entry = current === null ? undefined : tokens.get(current);
    if (force && entry) entry.revoked = true;
    const left = entry ? entry.expiresAt - Date.now() : 0;
    if (!force && current !== null && entry && !entry.revoked && left > 5 * 60_000) {
      return { access_token: current, expires_in: Math.floor(left / 1000) };
    }
    return issueToken();
  }

  function tokenError(query: Record<string, string>): Response | null {
    const token = query.access_token;
    if (!token) return wechatError(41001, "access_token missing");
    const entry = tokens.get(token);
    if (!entry || entry.revoked) {
      return wechatError(40001, "invalid credential, access_token is invalid or not latest");
    }
    if (Date.now() >= entry.expiresAt) return wechatError(42001, "access_token expired");
    return null;
  }

  function credentialError(body: Record<string, unknown>): Response | null {
    if (body.grant_type !== "client_credential") return wechatError(40002, "invalid grant_type");
    if (body.appid !== appId) return wechatError(40013, "invalid appid");
    if (body.secret !== secret) return wechatError(40125, "invalid appsecret");
    return null;
  }

  function isKnownMedia(id: unknown): boolean {
    return typeof id === "string" && media.has(id);
  }

  function checkMessage(payload: Record<string, unknown>): Response | null {
    if (typeof payload.touser !== "string" || payload.touser === "") {
      return wechatError(40003, "invalid openid");
    }
    const msgtype = payload.msgtype;
    if (typeof msgtype !== "string" || !MESSAGE_TYPES.has(msgtype)) {
      return wechatError(40008, "invalid message type");
    }
    const part = payload[msgtype];
    if (typeof part !== "object" || part === null) return wechatError(47001, "data format error");
    const fields = part as Record<string, unknown>;
    switch (msgtype) {
      case "text":
        if (typeof fields.content !== "string" || fields.content === "") {
          return wechatError(44004, "empty content");
        }
        return null;
      case "image":
      case "voice":
        return isKnownMedia(fields.media_id) ? null : wechatError(40007, "invalid media_id");
      case "video":
        if (!isKnownMedia(fields.media_id)) return wechatError(40007, "invalid media_id");
        if (fields.thumb_media_id !== undefined && !isKnownMedia(fields.thumb_media_id)) {
          return wechatError(40007, "invalid media_id");
        }
        return null;
      case "news": {
        const articles = fields.articles;
        if (!Array.isArray(articles) || articles.length === 0) {
          return wechatError(44003, "empty news data");
        }
        if (articles.length > 1) return wechatError(45008, "article size out of limit");
        return null;
      }
      case "miniprogrampage":
        if (typeof fields.appid !== "string" || typeof fields.pagepath !== "string") {
          return wechatError(47001, "data format error");
        }
        return isKnownMedia(fields.thumb_media_id) ? null : wechatError(40007, "invalid media_id");
      default:
        return null;
    }
  }

  async function handleUpload(req: Request, query: Record<string, string>, call: FakeCall) {
    const type = query.type ?? "";
    const limit = UPLOAD_LIMITS[type];
    let file: File | null = null;
    try {
      const value = (await req.formData()).get("media");
      if (value instanceof File) file = value;
    } catch {
      file = null;
    }
    const bytes = file ? new Uint8Array(await file.arrayBuffer()) : null;
    const upload: FakeUpload = {
      media: file && bytes ? { filename: file.name, contentType: file.type, bytes } : null,
    };
    call.body = upload;
    const refused = tokenError(query);
    if (refused) return refused;
    if (!limit) return wechatError(40004, "invalid media type");
    if (!upload.media || upload.media.bytes.byteLength === 0) {
      return wechatError(41005, "media data missing");
    }
    const ext = /\.([A-Za-z0-9]+)$/.exec(upload.media.filename)?.[1]?.toLowerCase() ?? "";
    if (!(UPLOAD_EXTENSIONS[type] ?? []).includes(ext)) {
      return wechatError(40005, "invalid file type");
    }
    if (upload.media.bytes.byteLength > limit.bytes) {
      return wechatError(limit.errcode, `invalid ${type} size`);
    }
    mediaCounter++;
    const mediaId = `fake-${type}-${mediaCounter}-${crypto.randomUUID().slice(0, 8)}`;
    media.set(mediaId, {
      bytes: upload.media.bytes,
      contentType: upload.media.contentType || "application/octet-stream",
      filename: upload.media.filename,
      video: type === "video",
    });
    const created_at = Math.floor(Date.now() / 1000);
    return json(
      type === "thumb"
        ? { type, thumb_media_id: mediaId, created_at }
        : { type, media_id: mediaId, created_at },
    );
  }

  function handleMediaGet(query: Record<string, string>): Response {
    const refused = tokenError(query);
    if (refused) return refused;
    const id = query.media_id ?? "";
    const item = media.get(id);
    if (!item) return wechatError(40007, "invalid media_id");
    if (item.video) {
      return json({ video_url: item.videoUrl ?? `${url}/fake-video/${encodeURIComponent(id)}` });
    }
    const name = item.filename ?? `${id}${EXTENSIONS[item.contentType] ?? ""}`;
    return new Response(item.bytes.slice(), {
      headers: { "content-type": item.contentType, "content-disposition": disposition(name) },
    });
  }

  async function handleApi(req: Request, path: string, query: Record<string, string>) {
    const call: FakeCall = { path, query, body: null };
    calls.push(call);
    const isUpload = path === "cgi-bin/media/upload";
    let body: Record<string, unknown> | null = null;
    if (req.method === "POST" && !isUpload) {
      const text = await req.text();
      try {
        const parsed: unknown = JSON.parse(text);
        call.body = parsed;
        if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
          body = parsed as Record<string, unknown>;
        }
      } catch {
        call.body = text;
      }
    }
    options.log?.(`${req.method} /${path}`);
    const wait = delays.get(path) ?? 0;
    if (wait > 0) await pause(wait, closing.signal);
    const failure = failures.get(path)?.shift();
    if (failure?.kind === "errcode") return wechatError(failure.errcode, failure.errmsg);
    if (failure?.kind === "http") {
      return new Response("<html><body>Service Unavailable</body></html>", {
        status: failure.status,
        headers: { "content-type": "text/html" },
      });
    }
    if (failure?.kind === "drop") return brokenResponse();

    switch (path) {
      case "cgi-bin/stable_token": {
        if (!body) return wechatError(47001, "data format error");
        return credentialError(body) ?? json(stableToken(body.force_refresh === true));
      }
      case "cgi-bin/token":
        return credentialError(query) ?? json(issueToken());
      case "cgi-bin/message/custom/send": {
        const refused = tokenError(query);
        if (refused) return refused;
        if (!body) return wechatError(47001, "data format error");
        const invalid = checkMessage(body);
        if (invalid) return invalid;
        sent.push(body);
        return wechatError(0, "ok");
      }
      case "cgi-bin/message/custom/typing": {
        const refused = tokenError(query);
        if (refused) return refused;
        if (typeof body?.touser !== "string" || body.touser === "") {
          return wechatError(40003, "invalid openid");
        }
        if (body.command !== "Typing" && body.command !== "CancelTyping") {
          return wechatError(45072, "invalid command");
        }
        return wechatError(0, "ok");
      }
      case "cgi-bin/media/upload":
        return await handleUpload(req, query, call);
      case "cgi-bin/media/get":
        return handleMediaGet(query);
      default:
        return wechatError(48001, "api unauthorized");
    }
  }

  // Lets a person or another process script the fake over HTTP.
  async function handleAdmin(req: Request, path: string): Promise<Response> {
    if (path === "__fake/fail" && req.method === "POST") {
      const body = await req.json().catch(() => null) as Record<string, unknown> | null;
      if (typeof body?.path !== "string" || typeof body.errcode !== "number") {
        return new Response("expected {path, errcode, errmsg?, times?}\n", { status: 400 });
      }
      fake.failNext(
        body.path,
        body.errcode,
        typeof body.errmsg === "string" ? body.errmsg : undefined,
        typeof body.times === "number" ? body.times : 1,
      );
      return json({ ok: true });
    }
    if (path === "__fake/revoke" && req.method === "POST") {
      fake.revokeTokens();
      return json({ ok: true });
    }
    if (path === "__fake/state" && req.method === "GET") {
      return json({ tokens_issued: issued, calls: calls.length, sent });
    }
    return new Response("not found\n", { status: 404 });
  }

  function handle(req: Request): Promise<Response> | Response {
    const { pathname, searchParams } = new URL(req.url);
    const path = normalize(pathname);
    if (path.startsWith("fake-video/")) {
      const item = media.get(decodeURIComponent(path.slice("fake-video/".length)));
      if (!item?.video) return new Response("not found\n", { status: 404 });
      return new Response(item.bytes.slice(), { headers: { "content-type": item.contentType } });
    }
    if (path.startsWith("__fake/")) return handleAdmin(req, path);
    return handleApi(req, path, Object.fromEntries(searchParams));
  }

  function enqueue(path: string, failure: Failure, times: number): void {
    const key = normalize(path);
    const queue = failures.get(key) ?? [];
    for (let i = 0; i < times; i++) queue.push(failure);
    failures.set(key, queue);
  }

  const fake: FakeWechat = {
    url: "",
    calls,
    sent,
    get tokensIssued() {
      return issued;
    },
    failNext(path, errcode, errmsg = `fake error ${errcode}`, times = 1) {
      enqueue(path, { kind: "errcode", errcode, errmsg }, times);
    },
    failHttpNext(path, status, times = 1) {
      enqueue(path, { kind: "http", status }, times);
    },
    dropNext(path, times = 1) {
      enqueue(path, { kind: "drop" }, times);
    },
    delay(path, ms) {
      if (ms > 0) delays.set(normalize(path), ms);
      else delays.delete(normalize(path));
    },
    revokeTokens() {
      for (const entry of tokens.values()) entry.revoked = true;
    },
    addMedia(mediaId, bytes, contentType, filename) {
      media.set(mediaId, {
        bytes: bytes.slice(),
        contentType,
        video: false,
        ...(filename === undefined ? {} : { filename }),
      });
    },
    addVideo(mediaId, bytes, videoUrl) {
      media.set(mediaId, {
        bytes: bytes.slice(),
        contentType: "video/mp4",
        video: true,
        ...(videoUrl === undefined ? {} : { videoUrl }),
      });
    },
    async close() {
      closing.abort();
      await server.shutdown();
    },
  };

  let server!: Deno.HttpServer<Deno.NetAddr>;
  return new Promise((resolve) => {
    server = Deno.serve({
      port: options.port ?? 0,
      hostname: options.hostname ?? "127.0.0.1",
      onListen(addr) {
        url = `http://${addr.hostname}:${addr.port}`;
        fake.url = url;
        resolve(fake);
      },
    }, handle);
  });
}

function normalize(path: string): string {
  return path.replace(/^\/+/, "");
}

function json(body: unknown): Response {
  return new Response(JSON.stringify(body), {
    headers: { "content-type": "application/json; encoding=utf-8" },
  });
}

function wechatError(errcode: number, errmsg: string): Response {
  return json({ errcode, errmsg });
}

function disposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  if (ascii === name) return `attachment; filename="${name}"`;
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

// The answer promises more bytes than it sends, so the client sees the connection break
// in the middle of the body, after a 200 status.
function brokenResponse(): Response {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"errc'));
      controller.close();
    },
  });
  return new Response(body, {
    headers: { "content-type": "application/json", "content-length": "100" },
  });
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

if (import.meta.main) {
  const port = Number(Deno.env.get("PORT") ?? "9999");
  const appId = Deno.env.get("WECHAT_APPID") ?? "wxfake0000000000";
  const secret = Deno.env.get("WECHAT_SECRET") ?? "fake-secret";
  // deno-lint-ignore no-console
  const print = (line: string) => console.log(line);
  const fake = await startFakeWechat({ port, appId, secret, log: print });
  const base = fake.url;
  print(`Fake WeChat API listening on ${base}`);
  print(`  WECHAT_API_BASE=${base} WECHAT_APPID=${appId} WECHAT_SECRET=${secret}`);
  print(`  script it: POST ${base}/__fake/fail {"path","errcode","errmsg","times"},`);
  print(`             POST ${base}/__fake/revoke, GET ${base}/__fake/state`);
}
