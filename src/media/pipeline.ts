// The follower-media pipeline: fetch an image, voice or video by MediaId (image PicUrl as the
// fallback), store the original, add a browser-playable copy (voice to MP3) and a video
// thumbnail, and hand back signed URLs. It never throws: a failure becomes `error` on the result.

import { readStreamLimited } from "../http/limits.ts";
import { getLogger } from "@logtape/logtape";
import type { MediaStorage } from "./storage.ts";
import { mediaUrlOf, type UrlSigner } from "./signed_url.ts";
import { contentTypeOf, extensionOf } from "./serve.ts";
import { sniffDemuxer, transcodeVoice, videoThumbnail } from "./transcode.ts";
import { createToolLimiter, type ToolLimiter } from "./tool_limiter.ts";

/** What WeChat's `cgi-bin/media/get` gives: the file, or (for video) a URL to download it from. */
export type GetMediaResult =
  | { kind: "file"; bytes: Uint8Array; contentType: string; filename?: string }
  | { kind: "video_url"; url: string };

/** The WeChat client's `getMedia`; throws an error with `errcode`/`errmsg` on WeChat errors. */
export type GetMedia = (
  mediaId: string,
  opts?: { maxBytes?: number; signal?: AbortSignal },
) => Promise<GetMediaResult>;

/** A follower's media message, as parsed from WeChat's XML. */
export interface MediaInput {
  msgType: "image" | "voice" | "video" | "shortvideo";
  mediaId?: string;
  thumbMediaId?: string;
  picUrl?: string;
  format?: string;
}

/** URLs and facts for the agent's `msg`; `media_path` is "" when nothing could be fetched. */
export interface MediaResult {
  media_path: string;
  original_path?: string;
  thumb_path?: string;
  content_type?: string;
  size?: number;
  error?: string;
}

/** What the pipeline needs; `getMedia` is null when no WeChat credentials are configured. */
export interface MediaPipelineDeps {
  storage: MediaStorage;
  signer: UrlSigner;
  getMedia: GetMedia | null;
  fetch?: typeof fetch;
  /** Hosts the bridge may download from (PicUrl, video_url); `*.x` matches subdomains of x. */
  allowedHosts?: string[];
  /** Largest file accepted, in bytes. */
  maxBytes: number;
  /** Deadline for each fetch, from the first request to the last byte. */
  timeoutMs: number;
  ffmpeg?: string;
  /** The ffprobe binary; default `ffprobe` on PATH. */
  ffprobe?: string;
  /** Deadline for each ffmpeg run; default 30 s. */
  transcodeTimeoutMs?: number;
  /** The bridge's one limit on ffmpeg runs at once, so a burst of voices cannot starve it. */
  limiter: ToolLimiter;
  /**
   * The bridge's one limit on media jobs at once (`createMediaJobLimiter`): each holds its whole
   * file in memory, and a burst of followers' pictures ran every one of them at the same time.
   */
  jobs?: ToolLimiter;
}

/**
 * Followers' media jobs run at once, for the process (every account): each holds up to
 * MEDIA_MAX_BYTES, a few times over while it is stored and converted. 60 pictures of 10 MB at
 * once took 860 MB; the jobs waiting are journaled already, and a download takes well under a
 * second, so a few slots keep up with a burst.
 */
export const MEDIA_JOBS_AT_ONCE = 6;

/** The limiter of media jobs a process shares between its accounts' pipelines. */
export function createMediaJobLimiter(max: number = MEDIA_JOBS_AT_ONCE): ToolLimiter {
  return createToolLimiter(max);
}

/** The media pipeline. */
export interface MediaPipeline {
  /** Fetches, stores and converts one message's media; never throws. */
  process(input: MediaInput, publicBase: string): Promise<MediaResult>;
}

/**
 * WeChat's media hosts: the API, image CDNs (PicUrl is `mmbiz.qpic.cn`), and the video CDNs
 * `media/get` points `video_url` at.
 */
export const DEFAULT_ALLOWED_HOSTS: readonly string[] = [
  "api.weixin.qq.com",
  "*.weixin.qq.com",
  "mmbiz.qpic.cn",
  "mmbiz.qlogo.cn",
  "*.qpic.cn",
  "*.qlogo.cn",
  "*.tc.qq.com",
];

const MAX_REDIRECTS = 3;
const log = getLogger(["bridge", "media"]);

/**
 * True when the URL is http(s), without credentials, on an allowed host. Entries are `host`,
 * `host:port` or `*.domain` (subdomains only). This is the guard that stops a forged PicUrl from
 * making the bridge fetch from inside its own network.
 */
export function isAllowedUrl(url: string, allowedHosts: readonly string[]): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return false;
  if (parsed.username !== "" || parsed.password !== "") return false;
  const host = parsed.hostname.toLowerCase().replace(/\.$/, "");
  const port = parsed.port || (parsed.protocol === "https:" ? "443" : "80");
  return allowedHosts.some((raw) => {
    const entry = raw.trim().toLowerCase();
    const portMatch = /^(.*):(\d+)$/.exec(entry);
    const name = portMatch && !entry.endsWith("]") ? portMatch[1]! : entry;
    if (portMatch && !entry.endsWith("]") && portMatch[2] !== port) return false;
    if (name.startsWith("*.")) return host.endsWith(name.slice(1)) && host.length > name.length - 1;
    return host === name;
  });
}

/** Creates the pipeline. */
export function createMediaPipeline(deps: MediaPipelineDeps): MediaPipeline {
  const allowedHosts = deps.allowedHosts ?? DEFAULT_ALLOWED_HOSTS;
  const jobs = deps.jobs ?? createMediaJobLimiter();
  const doFetch = deps.fetch ?? fetch;
  const ffmpegOptions = () => ({
    timeoutMs: deps.transcodeTimeoutMs ?? 30_000,
    limiter: deps.limiter,
    ...(deps.ffmpeg ? { ffmpeg: deps.ffmpeg } : {}),
    ...(deps.ffprobe ? { ffprobe: deps.ffprobe } : {}),
  });

  const tooBig = (size: number) =>
    `the file is ${size} bytes, over the limit of ${deps.maxBytes} bytes`;

  /** Downloads from an allowed host, following redirects only to allowed hosts. */
  const download = async (url: string, signal: AbortSignal): Promise<Fetched> => {
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      if (!isAllowedUrl(current, allowedHosts)) {
        throw new Error(
          `host of ${describeUrl(current)} is not on the allowed list of media hosts`,
        );
      }
      const res = await doFetch(current, { signal, redirect: "manual" });
      const location = res.headers.get("Location");
      if (res.status >= 300 && res.status < 400 && location !== null) {
        await res.body?.cancel();
        current = new URL(location, current).href;
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`${describeUrl(current)} answered HTTP ${res.status}`);
      }
      const declared = Number(res.headers.get("Content-Length") ?? NaN);
      if (declared > deps.maxBytes) {
        await res.body?.cancel();
        throw new Error(tooBig(declared));
      }
      const bytes = await readLimited(res.body, deps.maxBytes, tooBig);
      if (bytes.length === 0) throw new Error(`${describeUrl(current)} sent an empty file`);
      return { bytes, contentType: res.headers.get("Content-Type") ?? "" };
    }
    throw new Error(`${describeUrl(url)} redirected more than ${MAX_REDIRECTS} times`);
  };

  /** `media/get`, then `video_url` when WeChat answers with one, all inside one deadline. */
  const fetchById = (getMedia: GetMedia, mediaId: string): Promise<Fetched> =>
    withDeadline(deps.timeoutMs, async (signal) => {
      const got = await getMedia(mediaId, { maxBytes: deps.maxBytes, signal });
      if (got.kind === "video_url") return await download(got.url, signal);
      if (got.bytes.length > deps.maxBytes) throw new Error(tooBig(got.bytes.length));
      // Stored, an empty file would reach the agent as a broken picture with no error.
      if (got.bytes.length === 0) throw new Error("WeChat sent an empty file");
      return { bytes: got.bytes, contentType: got.contentType };
    });

  const fetchOriginal = async (input: MediaInput): Promise<Fetched> => {
    const what = input.msgType + (input.mediaId ? ` (media_id ${input.mediaId})` : "");
    const picUrl = input.msgType === "image" ? input.picUrl?.trim() || undefined : undefined;
    const viaPicUrl = (url: string) =>
      withDeadline(deps.timeoutMs, (signal) => download(url, signal));
    let firstError: string;
    if (!input.mediaId) {
      firstError = "the message has no MediaId";
    } else if (deps.getMedia === null) {
      firstError = "WeChat API credentials (WECHAT_APPID, WECHAT_SECRET) are not configured";
    } else {
      try {
        return await fetchById(deps.getMedia, input.mediaId);
      } catch (err) {
        firstError = describeError(err);
      }
    }
    if (picUrl === undefined) throw new Error(`Cannot fetch ${what}: ${firstError}`);
    try {
      return await viaPicUrl(picUrl);
    } catch (err) {
      throw new Error(
        `Cannot fetch ${what}: ${firstError}; PicUrl fallback failed: ${describeError(err)}`,
      );
    }
  };

  return {
    async process(input, publicBase) {
      try {
        return await jobs.run(() => processMedia(input, publicBase));
      } catch (err) {
        // Only a bug gets here; the agent must still get the message.
        const error = `Cannot process ${input.msgType}: ${describeError(err)}`;
        log.error("Media pipeline failed: {error}", { error });
        return { media_path: "", error };
      }
    },
  };

  async function processMedia(input: MediaInput, publicBase: string): Promise<MediaResult> {
    const base = publicBase.replace(/\/+$/, "");
    const urlOf = (key: string) => mediaUrlOf(deps.signer, base, key);

    let original: Fetched;
    try {
      original = await fetchOriginal(input);
    } catch (err) {
      const error = describeError(err);
      log.warn("Media not fetched: {error}", { error, msg_type: input.msgType });
      // No PicUrl as media_path: mmbiz answers browsers from other sites with a "not
      // allowed" placeholder, and a forged one would point agents' browsers at any host.
      return { media_path: "", error };
    }

    let originalKey: string;
    try {
      originalKey = await deps.storage.put(original.bytes, extensionFor(original, input));
    } catch (err) {
      const error = `Cannot store ${input.msgType}: ${describeError(err)}`;
      log.error("Media not stored: {error}", { error });
      return { media_path: "", error };
    }
    const result: MediaResult = {
      media_path: urlOf(originalKey),
      original_path: urlOf(originalKey),
      content_type: contentTypeOf(originalKey),
      size: original.bytes.length,
    };

    if (input.msgType === "voice" && sniffDemuxer(original.bytes) !== "mp3") {
      try {
        const mp3 = await transcodeVoice(original.bytes, ffmpegOptions());
        const key = await deps.storage.put(mp3, "mp3");
        Object.assign(result, {
          media_path: urlOf(key),
          content_type: contentTypeOf(key),
          size: mp3.length,
        });
      } catch (err) {
        // The original stays reachable as media_path: an agent can still download it.
        result.error = describeError(err);
        log.warn("Voice not transcoded: {error}", { error: result.error });
      }
    }

    if (input.msgType === "video" || input.msgType === "shortvideo") {
      const thumbKey = await thumbnail(input, original.bytes);
      if (thumbKey !== null) result.thumb_path = urlOf(thumbKey);
    }
    return result;
  }

  /** WeChat's thumb when it gives one, else a frame from the video; null when neither works. */
  async function thumbnail(input: MediaInput, video: Uint8Array): Promise<string | null> {
    if (input.thumbMediaId && deps.getMedia) {
      try {
        const thumb = await fetchById(deps.getMedia, input.thumbMediaId);
        return await deps.storage.put(thumb.bytes, extensionFor(thumb, input));
      } catch (err) {
        log.warn("Video thumb {thumb_media_id} not fetched: {error}", {
          thumb_media_id: input.thumbMediaId,
          error: describeError(err),
        });
      }
    }
    if (sniffDemuxer(video) !== "mov") return null;
    try {
      const jpeg = await videoThumbnail(video, ffmpegOptions());
      return await deps.storage.put(jpeg, "jpg");
    } catch (err) {
      log.warn("Video thumbnail not made: {error}", { error: describeError(err) });
      return null;
    }
  }
}

interface Fetched {
  bytes: Uint8Array;
  contentType: string;
}

/** The stored extension: from the bytes' magic numbers, else the Content-Type, else `bin`. */
function extensionFor(file: Fetched, input: MediaInput): string {
  const sniffed = sniffExtension(file.bytes);
  if (sniffed) return sniffed;
  const fromType = extensionOf(file.contentType);
  if (fromType) return fromType;
  if (input.msgType === "voice" && input.format?.toLowerCase() === "amr") return "amr";
  return "bin";
}

function sniffExtension(bytes: Uint8Array): string | null {
  const at = (offset: number, ...values: number[]) =>
    values.every((v, i) => bytes[offset + i] === v);
  const ascii = (offset: number, text: string) =>
    at(offset, ...[...text].map((c) => c.charCodeAt(0)));
  if (at(0, 0xff, 0xd8, 0xff)) return "jpg";
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "png";
  if (ascii(0, "GIF8")) return "gif";
  if (ascii(0, "RIFF") && ascii(8, "WEBP")) return "webp";
  if (ascii(0, "BM") && bytes.length > 14) return "bmp";
  if (ascii(4, "ftyp")) return ascii(8, "M4A ") ? "m4a" : "mp4";
  switch (sniffDemuxer(bytes)) {
    case "amr":
      return "amr";
    case "ogg":
      return "ogg";
    case "mp3":
      return "mp3";
    case "wav":
      return "wav";
  }
  return null;
}

/** Reads a body up to `maxBytes`, cancelling the stream as soon as it goes over. */
function readLimited(
  body: ReadableStream<Uint8Array> | null,
  maxBytes: number,
  tooBig: (size: number) => string,
): Promise<Uint8Array> {
  if (body === null) return Promise.resolve(new Uint8Array(0));
  return readStreamLimited(
    body,
    maxBytes,
    (total) => new Error(tooBig(total) + " (stopped reading)"),
  );
}

/**
 * Runs `fn` with a signal that aborts at the deadline, and stops waiting then even if `fn`
 * ignores the signal, so a stalled WeChat cannot hold a message past `ms`.
 */
async function withDeadline<T>(ms: number, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`no complete answer within ${ms} ms`);
      controller.abort(err);
      reject(err);
    }, ms);
  });
  const work = fn(controller.signal);
  work.catch(() => {}); // after the deadline its rejection is expected and unobserved
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return "an unparsable URL";
  }
}

/** A readable sentence for any error, WeChat's `errcode`/`errmsg` included. */
function describeError(err: unknown): string {
  if (err !== null && typeof err === "object" && "errcode" in err) {
    const { errcode, errmsg } = err as { errcode: unknown; errmsg?: unknown };
    return `WeChat answered errcode ${errcode}${errmsg ? ` (${errmsg})` : ""}`;
  }
  return err instanceof Error ? err.message : String(err);
}
