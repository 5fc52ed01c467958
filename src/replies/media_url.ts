// The file an agent's reply names by `media_url`: fetched from public addresses only (public_get),
// bounded in time and size while it streams, checked against what WeChat takes for the reply's
// type (upload_rules), and named by its real format for the WeChat upload; read a few at once
// for the process.

import type { ToolLimiter } from "../media/tool_limiter.ts";
import type { HostList } from "./address_policy.ts";
import { getPublic, MediaUrlError, type ResolveHost } from "./public_get.ts";
import type { MediaFile } from "./reply_service.ts";
import {
  checkUpload,
  stemOf,
  UPLOAD_RULES,
  type UploadType,
  voiceTooLong,
} from "./upload_rules.ts";

/** Redirects a `media_url` may take: enough for a CDN or a short link, not for a loop. */
const MAX_REDIRECTS = 5;

/** What fetching a `media_url` needs. */
export interface MediaUrlOptions {
  resolve: ResolveHost;
  privateHosts: HostList;
  maxBytes: number;
  timeoutMs: number;
  /** ffprobe, for a voice's length; default `ffprobe` on PATH. */
  ffprobe?: string;
  /** The bridge's one limit on ffmpeg and ffprobe runs at once. */
  limiter: ToolLimiter;
  /**
   * The process's limit on `media_url` files read into memory at once (`createMediaJobLimiter`,
   * as many as followers' media jobs, in a pool of their own): 20 downloads of 10 MB at once took
   * the bridge from 80 MB to 254 MB, and nothing bounded how many agents started.
   */
  jobs: ToolLimiter;
}

/** Creates the fetcher of agents' `media_url`s; it throws MediaUrlError with a status. */
export function createMediaUrlFetcher(
  options: MediaUrlOptions,
): (url: string, type: UploadType) => Promise<MediaFile> {
  return (url, type) => options.jobs.run(() => fetchOne(url, type));

  async function fetchOne(url: string, type: UploadType): Promise<MediaFile> {
    // No file WeChat takes for this type is larger, so no more is read. The deadline counts
    // from the download's turn, not from the wait for it.
    const maxBytes = Math.min(options.maxBytes, UPLOAD_RULES[type].maxBytes);
    const file = await getPublic(url, {
      resolve: options.resolve,
      privateHosts: options.privateHosts,
      maxBytes,
      maxRedirects: MAX_REDIRECTS,
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    const named = checkUpload(type, file.bytes, {
      declaredType: file.contentType,
      stem: stemOf(file.url) || stemOf(url),
    });
    const maxSeconds = UPLOAD_RULES[type].maxSeconds;
    if (maxSeconds !== undefined) await checkDuration(file.bytes, maxSeconds, options);
    return { bytes: file.bytes, contentType: named.contentType, filename: named.filename };
  }
}

async function checkDuration(bytes: Uint8Array, maxSeconds: number, options: MediaUrlOptions) {
  const tooLong = await voiceTooLong(bytes, maxSeconds, {
    limiter: options.limiter,
    ...(options.ffprobe ? { ffprobe: options.ffprobe } : {}),
  });
  if (tooLong !== null) {
    throw new MediaUrlError(
      415,
      `WeChat takes a voice of at most ${maxSeconds} s; the media_url file ${tooLong}`,
    );
  }
}
