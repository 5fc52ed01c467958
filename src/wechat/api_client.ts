// The client for the parts of WeChat's server API the bridge calls: customer-service sends,
// the typing indicator, media upload and download. WeChat answers errors as HTTP 200 with
// {errcode, errmsg}, so every answer is read for its errcode, never judged by its status alone.
// A customer-service send has no idempotency key: it is tried again only when it surely did not
// reach WeChat, never after a failure that may have come after WeChat took it.

import { readStreamLimited } from "../http/limits.ts";
import {
  type AccessTokenManager,
  createAccessTokenManager,
  type FetchedToken,
  type TokenCache,
} from "./access_token.ts";

/** A non-zero errcode from WeChat, or errcode -1 when WeChat could not be reached or read. */
export class WechatApiError extends Error {
  readonly errcode: number;
  readonly errmsg: string;

  constructor(errcode: number, errmsg: string) {
    super(`WeChat API error ${errcode}: ${errmsg}`);
    this.name = "WechatApiError";
    this.errcode = errcode;
    this.errmsg = errmsg;
  }
}

/** A media file from `media/get`: the bytes, or for videos the URL WeChat hands out instead. */
export type WechatMedia =
  | { kind: "file"; bytes: Uint8Array; contentType: string; filename?: string }
  | { kind: "video_url"; url: string };

export type UploadMediaType = "image" | "voice" | "video" | "thumb";

export interface WechatClient {
  /** Sends one `message/custom/send` payload; throws WechatApiError on a non-zero errcode. */
  sendCustomMessage(payload: Record<string, unknown>): Promise<void>;
  /** Shows or hides "typing…" to the follower, throttled to what WeChat accepts. */
  typing(openId: string, typing: boolean): Promise<void>;
  /** Uploads a temporary media file and resolves to its media_id. */
  uploadMedia(
    type: UploadMediaType,
    bytes: Uint8Array,
    filename: string,
    contentType: string,
  ): Promise<string>;
  /** Downloads a follower's media; throws RangeError past `maxBytes`. */
  getMedia(
    mediaId: string,
    options?: { maxBytes?: number; signal?: AbortSignal },
  ): Promise<WechatMedia>;
}

export interface WechatClientOptions {
  apiBase: string;
  appId: string;
  secret: string;
  fetch?: typeof fetch;
  now?: () => number;
  tokenCache?: TokenCache;
  /** Retries after a network error, a timeout, a 5xx or errcode -1 (default 3); a send, only
   * after a failure that never reached WeChat. */
  retries?: number;
  sleep?: (ms: number) => Promise<void>;
  /** Called once per HTTP attempt with the API path and its errcode (0 ok, -1 transport). */
  onCall?: (api: string, errcode: number) => void;
  /** Per-attempt time limit for JSON calls (default 15 s). */
  timeoutMs?: number;
  /** Per-attempt time limit for media upload and download (default 60 s). */
  mediaTimeoutMs?: number;
  /** Least time between two Typing relays for one follower (default 5 s). */
  typingMinIntervalMs?: number;
}

/** Errcodes that mean the access token itself was refused. */
export const TOKEN_ERRCODES: ReadonlySet<number> = new Set([40001, 40014, 42001]);

// WeChat shows "typing…" for 15 s and answers 45081 to a second Typing within that time.
const TYPING_SHOWN_MS = 15_000;
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 5_000;

/** Something worth trying again: a network error, a timeout, a 5xx, WeChat's "system busy". */
class TransientError extends Error {
  readonly final: WechatApiError;
  /** WeChat surely did nothing: the connection never opened, or WeChat answered "busy". */
  readonly unsent: boolean;

  constructor(final: WechatApiError, unsent = false) {
    super(final.message);
    this.final = final;
    this.unsent = unsent;
  }
}

interface CallOptions {
  retries: number;
  timeoutMs: number;
  signal?: AbortSignal;
  /**
   * The call does what a follower sees and WeChat cannot tell a second copy from a new one:
   * after a timeout, a reset or a 5xx WeChat may have done it, and doing it again is a
   * duplicate, so only a failure that surely never reached WeChat is tried again.
   */
  once?: boolean;
}

/** Creates a client that shares one access token across all calls. */
export function createWechatClient(options: WechatClientOptions): WechatClient {
  const fetchFn = options.fetch ?? fetch;
  const now = options.now ?? Date.now;
  const sleep = options.sleep ??
    ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const retries = options.retries ?? 3;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const mediaTimeoutMs = options.mediaTimeoutMs ?? 60_000;
  const typingMinInterval = options.typingMinIntervalMs ?? 5_000;
  const base = options.apiBase.endsWith("/") ? options.apiBase : `${options.apiBase}/`;
  const typingState = new Map<string, { at: number; shown: boolean }>();

  function apiUrl(path: string, query: Record<string, string> = {}): string {
    const url = new URL(path, base);
    for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
    return url.href;
  }

  function report(api: string, errcode: number): void {
    try {
      options.onCall?.(api, errcode);
    } catch {
      // A broken metrics hook must not fail a send.
    }
  }

  async function attempt<T>(
    run: (signal: AbortSignal) => Promise<T>,
    limitMs: number,
    callerSignal?: AbortSignal,
  ): Promise<T> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, limitMs);
    const onAbort = () => controller.abort(callerSignal?.reason);
    callerSignal?.addEventListener("abort", onAbort, { once: true });
    try {
      return await run(controller.signal);
    } catch (err) {
      if (timedOut) {
        throw new TransientError(
          new WechatApiError(-1, `Cannot reach WeChat: no answer within ${limitMs} ms`),
        );
      }
      throw err;
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener("abort", onAbort);
    }
  }

  // Kept by hand rather than p-retry (judged for issue 13): of these 20 lines p-retry would
  // replace only the counter and the backoff formula. What is ours stays either way: which
  // failures are transient (every fetch TypeError, a timeout, a 5xx, errcode -1) and which of
  // them surely never reached WeChat (the only ones a `once` call is tried again after), reporting
  // every attempt's errcode to onCall, and throwing the WechatApiError inside the last
  // transient one. p-retry sleeps on its own setTimeout, where `sleep` is injected here so
  // tests read the backoff ([250, 500]) without a fake clock; and it rethrows at once any
  // TypeError whose message is not on its list of browsers' and Node's network errors, so each
  // error would need wrapping first. A dependency for a loop this size buys nothing.
  async function withRetry<T>(
    api: string,
    run: (signal: AbortSignal) => Promise<T>,
    call: CallOptions,
  ): Promise<T> {
    for (let n = 0;; n++) {
      call.signal?.throwIfAborted();
      try {
        const result = await attempt(run, call.timeoutMs, call.signal);
        report(api, 0);
        return result;
      } catch (err) {
        if (call.signal?.aborted) throw call.signal.reason;
        const transient = asTransient(err);
        if (!transient) {
          report(api, err instanceof WechatApiError ? err.errcode : -1);
          throw err;
        }
        report(api, transient.final.errcode);
        if (n >= call.retries || (call.once && !transient.unsent)) throw transient.final;
        await sleep(Math.min(BACKOFF_BASE_MS * 2 ** n, BACKOFF_MAX_MS));
      }
    }
  }

  // Set once stable_token answered 404: a gateway or test double that only knows the classic
  // endpoint. Real WeChat has both; stable_token is preferred because it does not revoke the
  // token other clients of the same account hold.
  let classicToken = false;

  async function fetchToken(forceRefresh: boolean): Promise<FetchedToken> {
    if (!classicToken) {
      const body = await withRetry("stable_token", async (signal) => {
        const res = await fetchFn(apiUrl("cgi-bin/stable_token"), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            grant_type: "client_credential",
            appid: options.appId,
            secret: options.secret,
            ...(forceRefresh ? { force_refresh: true } : {}),
          }),
          signal,
        });
        if (res.status === 404) {
          await res.body?.cancel();
          return null;
        }
        return await readJson(res);
      }, { retries, timeoutMs });
      if (body !== null) return tokenFrom(body, "stable_token");
      classicToken = true;
    }
    const body = await withRetry("token", async (signal) => {
      const url = apiUrl("cgi-bin/token", {
        grant_type: "client_credential",
        appid: options.appId,
        secret: options.secret,
      });
      return await readJson(await fetchFn(url, { signal }));
    }, { retries, timeoutMs });
    return tokenFrom(body, "token");
  }

  const tokens: AccessTokenManager = createAccessTokenManager({
    fetchToken,
    cache: options.tokenCache,
    now,
  });

  // One retry with a new token when WeChat refuses the one used (it refused the call with it,
  // so even a `once` call did nothing); other errors pass through.
  async function withToken<T>(
    api: string,
    run: (token: string, signal: AbortSignal) => Promise<T>,
    call: CallOptions,
  ): Promise<T> {
    const token = await tokens.get();
    try {
      return await withRetry(api, (signal) => run(token, signal), call);
    } catch (err) {
      if (!(err instanceof WechatApiError) || !TOKEN_ERRCODES.has(err.errcode)) throw err;
      const fresh = await tokens.invalidate(token);
      return await withRetry(api, (signal) => run(fresh, signal), call);
    }
  }

  // Deno's fetch sends a request again, unseen, when the keep-alive connection it reused closes
  // before the answer, even a POST the server read whole (tests/wechat/
  // send_reused_connection_test.ts): a send goes on a connection of its own, never pooled, so
  // that close fails it as unconfirmed. (An injected fetch is the caller's to pool.)
  let sendClient: Deno.HttpClient | undefined;
  function unpooled(): { client?: Deno.HttpClient } {
    if (fetchFn !== globalThis.fetch) return {};
    sendClient ??= Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    return { client: sendClient };
  }

  function postJson(path: string, payload: unknown, once = false) {
    return (token: string, signal: AbortSignal) =>
      fetchFn(apiUrl(path, { access_token: token }), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(payload),
        signal,
        ...(once ? unpooled() : {}),
      }).then(readJson);
  }

  function pruneTyping(at: number): void {
    if (typingState.size < 1000) return;
    for (const [openId, state] of typingState) {
      if (at - state.at >= TYPING_SHOWN_MS) typingState.delete(openId);
    }
  }

  return {
    async sendCustomMessage(payload) {
      await withToken(
        "message/custom/send",
        postJson("cgi-bin/message/custom/send", payload, true),
        {
          retries,
          timeoutMs,
          once: true,
        },
      );
      // WeChat hides the typing indicator when a message arrives.
      const touser = payload.touser;
      if (typeof touser === "string") {
        const state = typingState.get(touser);
        if (state) state.shown = false;
      }
    },

    async typing(openId, typing) {
      const at = now();
      const state = typingState.get(openId);
      const shown = state !== undefined && state.shown && at - state.at < TYPING_SHOWN_MS;
      if (typing) {
        if (shown || (state !== undefined && at - state.at < typingMinInterval)) return;
        pruneTyping(at);
        typingState.set(openId, { at, shown: true });
      } else {
        if (!shown) return;
        typingState.set(openId, { at: state.at, shown: false });
      }
      const command = typing ? "Typing" : "CancelTyping";
      try {
        // A late typing indicator is worse than none: no backoff retries.
        await withToken(
          "message/custom/typing",
          postJson("cgi-bin/message/custom/typing", { touser: openId, command }),
          { retries: 0, timeoutMs },
        );
      } catch (err) {
        if (typing) typingState.delete(openId);
        throw err;
      }
    },

    async uploadMedia(type, bytes, filename, contentType) {
      // Tried again like a read: a second upload of a temporary file is only an unused
      // media_id, which WeChat expires in 3 days; no follower sees it.
      const body = await withToken("media/upload", async (token, signal) => {
        const form = new FormData();
        // Blob takes only ArrayBuffer-backed views, which a copy guarantees.
        const file = new Blob([new Uint8Array(bytes)], { type: contentType });
        form.append("media", file, filename);
        const res = await fetchFn(apiUrl("cgi-bin/media/upload", { access_token: token, type }), {
          method: "POST",
          body: form,
          signal,
        });
        return await readJson(res);
      }, { retries, timeoutMs: mediaTimeoutMs });
      // WeChat names the id thumb_media_id for thumbnails.
      const mediaId = body.media_id ?? body.thumb_media_id;
      if (typeof mediaId !== "string" || mediaId === "") {
        throw new WechatApiError(-1, "Cannot parse media/upload answer: no media_id");
      }
      return mediaId;
    },

    getMedia(mediaId, getOptions = {}) {
      const maxBytes = getOptions.maxBytes ?? Number.POSITIVE_INFINITY;
      return withToken("media/get", async (token, signal) => {
        const res = await fetchFn(
          apiUrl("cgi-bin/media/get", { access_token: token, media_id: mediaId }),
          { signal },
        );
        await checkStatus(res);
        const contentType = res.headers.get("content-type") ?? "application/octet-stream";
        const file = (bytes: Uint8Array) => {
          const filename = filenameOf(res.headers.get("content-disposition"));
          return {
            kind: "file" as const,
            bytes,
            contentType,
            ...(filename === undefined ? {} : { filename }),
          };
        };
        if (/json|^text\/plain/i.test(contentType)) {
          const bytes = await readLimited(res, maxBytes);
          const text = textOf(bytes);
          // Bytes that are not text are the file under a wrong type (a proxy's), not an error:
          // read as JSON, the follower's picture was lost and its bytes shown as the error.
          if (text === null) return file(bytes);
          // WeChat's errors are JSON, even as text/plain: other text is a gateway's page.
          if (!isJson(text)) throw gatewayAnswer(`not JSON (${text.slice(0, 80)})`);
          const body = parseWechatJson(text);
          if (typeof body.video_url === "string" && body.video_url !== "") {
            return { kind: "video_url" as const, url: body.video_url };
          }
          throw new WechatApiError(-1, "Cannot parse media/get answer: neither file nor video_url");
        }
        // WeChat answers a file or JSON, never a page: HTML with HTTP 200 is a gateway in front
        // of it, and stored it would stand in for the follower's picture without an error.
        if (/^(?:text\/html|application\/xhtml\+xml)/i.test(contentType)) {
          await res.body?.cancel();
          throw gatewayAnswer("an HTML page, not the file");
        }
        const bytes = await readLimited(res, maxBytes);
        // The same page under a file's type (or none), or no bytes at all: no follower's file
        // is empty or starts like a web page.
        if (bytes.length === 0) throw gatewayAnswer("an empty answer, not the file");
        if (looksLikeHtml(bytes)) throw gatewayAnswer("an HTML page, not the file");
        return file(bytes);
      }, { retries, timeoutMs: mediaTimeoutMs, signal: getOptions.signal });
    },
  };
}

/** media/get answered by something in front of WeChat: asked again like a 5xx, then reported. */
function gatewayAnswer(what: string): TransientError {
  return new TransientError(new WechatApiError(-1, `Cannot parse media/get answer: ${what}`));
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

const HTML_START = /^(?:\uFEFF)?\s*<(?:!doctype\s+html|html[\s>])/i;

/** Whether a body begins as an HTML document does (after a BOM and blanks). */
function looksLikeHtml(bytes: Uint8Array): boolean {
  // Media begins with binary magic numbers: a page's first 64 bytes tell it apart.
  return HTML_START.test(new TextDecoder().decode(bytes.subarray(0, 64)));
}

function asTransient(err: unknown): TransientError | null {
  if (err instanceof TransientError) return err;
  // fetch reports refused connections, resets and broken bodies as TypeError.
  if (err instanceof TypeError) {
    return new TransientError(
      new WechatApiError(-1, `Cannot reach WeChat: ${redact(describe(err))}`),
      neverConnected(err),
    );
  }
  return null;
}

// Deno (hyper) names the stage that failed: "client error (Connect)" is before a byte of the
// request was written (DNS, TCP, TLS); "(SendRequest)" and a broken body are after, when
// WeChat may have read the whole request.
const CONNECT_FAILURE = /client error \(Connect\)|\bdns error\b|\btcp connect error\b/i;

/** Whether a fetch error happened before the connection carrying the request was open. */
function neverConnected(err: Error): boolean {
  return CONNECT_FAILURE.test(describe(err));
}

// Deno 2 says only "fetch failed" and puts what failed in `cause`.
function describe(err: Error): string {
  const parts = [err.message];
  for (let cause = err.cause, depth = 0; cause instanceof Error && depth < 4; depth++) {
    parts.push(cause.message);
    cause = cause.cause;
  }
  return parts.join(": ");
}

// Deno's network errors quote the URL, and the URL carries the access token (cgi-bin/token's,
// the AppSecret).
function redact(message: string): string {
  return message.replace(/\b(access_token|secret)=[^&\s)"']+/g, "$1=***");
}

async function checkStatus(res: Response): Promise<void> {
  if (res.ok) return;
  await res.body?.cancel();
  const error = new WechatApiError(-1, `WeChat answered HTTP ${res.status}`);
  if (res.status >= 500) throw new TransientError(error);
  throw error;
}

/** The token and its lifetime from a token endpoint's answer. */
function tokenFrom(body: Record<string, unknown>, api: string): FetchedToken {
  const token = body.access_token;
  const expiresIn = body.expires_in;
  if (typeof token !== "string" || token === "" || typeof expiresIn !== "number") {
    throw new WechatApiError(-1, `Cannot parse ${api} answer: no access_token`);
  }
  return { token, expiresInS: expiresIn };
}

async function readJson(res: Response): Promise<Record<string, unknown>> {
  await checkStatus(res);
  return parseWechatJson(await res.text());
}

function parseWechatJson(text: string): Record<string, unknown> {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new WechatApiError(-1, `Cannot parse WeChat answer: not JSON (${text.slice(0, 80)})`);
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new WechatApiError(-1, "Cannot parse WeChat answer: not a JSON object");
  }
  const record = body as Record<string, unknown>;
  const errcode = record.errcode;
  if (typeof errcode === "number" && errcode !== 0) {
    const error = new WechatApiError(errcode, String(record.errmsg ?? ""));
    // -1 is WeChat's "system busy, try again later" (系统繁忙，此时请开发者稍候再试): it did
    // nothing, so even a send is asked again.
    if (errcode === -1) throw new TransientError(error, true);
    throw error;
  }
  return record;
}

async function readLimited(res: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel();
    throw new RangeError(`Cannot download media: ${declared} bytes is over ${maxBytes}`);
  }
  if (!res.body) return new Uint8Array();
  return await readStreamLimited(
    res.body,
    maxBytes,
    () => new RangeError(`Cannot download media: more than ${maxBytes} bytes`),
  );
}

/** The bytes as UTF-8 text, or null when they are not text (invalid UTF-8, or a NUL). */
function textOf(bytes: Uint8Array): string | null {
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return text.includes("\0") ? null : text;
  } catch {
    return null;
  }
}

/** The file name in a Content-Disposition header, without any directory part. */
export function filenameOf(header: string | null): string | undefined {
  if (!header) return undefined;
  let name: string | undefined;
  const extended = /filename\*\s*=\s*[^']*'[^']*'([^;]+)/i.exec(header);
  if (extended?.[1]) {
    try {
      name = decodeURIComponent(extended[1].trim());
    } catch {
      name = undefined;
    }
  }
  if (name === undefined) {
    const plain = /filename\s*=\s*(?:"([^"]*)"|([^;]+))/i.exec(header);
    name = (plain?.[1] ?? plain?.[2])?.trim();
  }
  const base = name?.split(/[\\/]/).pop();
  return base ? base : undefined;
}
