// The file an agent's reply names by `media_url`: fetched once, bounded in time and size, and
// handed to the WeChat upload as bytes with their type and a file name.

import type { MediaFile } from "./reply_service.ts";

/** What fetching a `media_url` needs. */
export interface MediaUrlOptions {
  fetch: typeof fetch;
  maxBytes: number;
  timeoutMs: number;
}

/** Creates the fetcher of agents' `media_url`s. */
export function createMediaUrlFetcher(
  options: MediaUrlOptions,
): (url: string) => Promise<MediaFile> {
  return async function fetchMedia(url: string): Promise<MediaFile> {
    if (!/^https?:\/\//.test(url)) throw new Error("media_url must be an http(s) URL");
    const res = await options.fetch(url, { signal: AbortSignal.timeout(options.timeoutMs) });
    if (!res.ok) throw new Error(`Cannot fetch media_url: HTTP ${res.status}`);
    const length = Number(res.headers.get("content-length") ?? 0);
    if (length > options.maxBytes) throw new Error("media_url is too large");
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.byteLength > options.maxBytes) throw new Error("media_url is too large");
    const name = new URL(url).pathname.split("/").pop() || "media";
    return {
      bytes,
      contentType: res.headers.get("content-type") ?? "application/octet-stream",
      filename: name,
    };
  };
}
