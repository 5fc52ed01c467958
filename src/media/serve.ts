// Serving stored media to agents' browsers at `/media/KEY?e=EXPIRES&t=TOKEN`: the signature and
// its lifetime are checked first, then the file is streamed whole or by byte range (audio and
// video players seek with Range). Keys name content, so the key is the ETag. A store with its own
// presigned URLs (S3 with `presign=true`) answers with a redirect to one instead.

import { getLogger } from "@logtape/logtape";
import { type ByteRange, isMediaKey, type MediaStorage } from "./storage.ts";
import { MAX_PRESIGN_S } from "./s3_client.ts";
import type { UrlSigner } from "./signed_url.ts";

const log = getLogger(["bridge", "media"]);

/** What `serveMedia` needs. */
export interface ServeMediaDeps {
  storage: MediaStorage;
  signer: UrlSigner;
  now?: () => number;
}

// Only types a browser renders as media, never as a document: a key's extension comes from
// sniffed bytes, and anything unrecognised is served as a download.
const CONTENT_TYPES: Record<string, string> = {
  jpg: "image/jpeg",
  png: "image/png",
  gif: "image/gif",
  webp: "image/webp",
  bmp: "image/bmp",
  mp3: "audio/mpeg",
  m4a: "audio/mp4",
  amr: "audio/amr",
  ogg: "audio/ogg",
  wav: "audio/wav",
  mp4: "video/mp4",
};

/** The Content-Type for a key or file name, from its extension; unknown is octet-stream. */
export function contentTypeOf(key: string): string {
  const ext = key.slice(key.lastIndexOf(".") + 1).toLowerCase();
  return CONTENT_TYPES[ext] ?? "application/octet-stream";
}

/** The file extension for a Content-Type we serve, or null. */
export function extensionOf(contentType: string): string | null {
  const type = contentType.split(";")[0]?.trim().toLowerCase() ?? "";
  if (type === "image/jpg") return "jpg";
  for (const [ext, known] of Object.entries(CONTENT_TYPES)) if (known === type) return ext;
  return null;
}

/** Answers GET or HEAD for a stored media file: 403, 404, 304, 200, 206 or 416. */
export async function serveMedia(
  req: Request,
  key: string,
  query: URLSearchParams,
  deps: ServeMediaDeps,
): Promise<Response> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    return text(405, "Method not allowed", { Allow: "GET, HEAD" });
  }
  // Token before existence, so a bad URL cannot probe which keys exist.
  const expires = query.get("e");
  const checked = deps.signer.check(key, expires, query.get("t"));
  if (checked === "bad") return text(403, "Forbidden: this media URL is not signed by the bridge");
  if (checked === "expired") {
    return text(
      403,
      "Forbidden: this media URL has expired; renew it with GET /im_component/wx_official_account/media_url?url=…",
    );
  }
  // The browser may keep it as long as the URL is valid, and no longer.
  const maxAge = Math.max(0, Math.floor(Number(expires) - (deps.now ?? Date.now)() / 1000));
  if (deps.storage.presignedUrl) {
    if (!isMediaKey(key)) return text(404, "Not found: no such media");
    // The store's URL lives as long as this one (up to S3's 7 days), so a player that seeks
    // later, straight at the store, still gets its bytes; ranges are the store's to answer.
    const lifetime = Math.min(Math.max(maxAge, 60), MAX_PRESIGN_S);
    return new Response(null, {
      status: 302,
      headers: {
        "Location": await deps.storage.presignedUrl(key, lifetime),
        "Cache-Control": `private, max-age=${Math.min(maxAge, lifetime)}`,
      },
    });
  }
  let info: { size: number } | null;
  try {
    info = await deps.storage.stat(key);
  } catch (err) {
    return storeFailed(err);
  }
  if (info === null) return text(404, "Not found: no such media");

  const etag = `"${key}"`;
  const contentType = contentTypeOf(key);
  const headers = new Headers({
    "Content-Type": contentType,
    "Cache-Control": `private, max-age=${maxAge}, immutable`,
    "ETag": etag,
    "Accept-Ranges": "bytes",
    "X-Content-Type-Options": "nosniff",
  });
  if (contentType === "application/octet-stream") {
    headers.set("Content-Disposition", "attachment");
  }
  if (etagMatches(req.headers.get("If-None-Match"), etag)) {
    headers.delete("Content-Type");
    return new Response(null, { status: 304, headers });
  }

  let range: ByteRange | undefined;
  const rangeHeader = req.headers.get("Range");
  const ifRange = req.headers.get("If-Range");
  // An If-Range naming another version (or a date; we have none) asks for the whole file.
  if (rangeHeader !== null && (ifRange === null || ifRange === etag)) {
    const parsed = parseRange(rangeHeader, info.size);
    if (parsed === "unsatisfiable") {
      return text(416, "Range not satisfiable", {
        "Content-Range": `bytes */${info.size}`,
        "Accept-Ranges": "bytes",
      });
    }
    if (parsed !== null) range = parsed;
  }

  const status = range ? 206 : 200;
  const length = range ? range.end - range.start + 1 : info.size;
  headers.set("Content-Length", String(length));
  if (range) headers.set("Content-Range", `bytes ${range.start}-${range.end}/${info.size}`);
  if (req.method === "HEAD") return new Response(null, { status, headers });

  let body: ReadableStream<Uint8Array> | null;
  try {
    body = await deps.storage.open(key, range);
  } catch (err) {
    return storeFailed(err);
  }
  if (body === null) return text(404, "Not found: no such media");
  return new Response(body, { status, headers });
}

/**
 * Reads a `Range` header against a file of `size` bytes: one range, `"unsatisfiable"` (416), or
 * null to serve the whole file (not a byte range, or several ranges, which RFC 9110 lets a
 * server ignore; players ask for one).
 */
export function parseRange(header: string, size: number): ByteRange | "unsatisfiable" | null {
  const match = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (!match) return null;
  const spec = match[1]!.trim();
  if (spec.includes(",")) return null;
  const parts = /^(\d*)-(\d*)$/.exec(spec);
  if (!parts) return "unsatisfiable";
  const [, first = "", last = ""] = parts;
  if (first === "" && last === "") return "unsatisfiable";
  if (first === "") {
    // Suffix range: the last N bytes.
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Number(last);
  if (end < start || start >= size) return "unsatisfiable";
  return { start, end: Math.min(end, size - 1) };
}

function etagMatches(header: string | null, etag: string): boolean {
  if (header === null) return false;
  return header.split(",").some((tag) => {
    const t = tag.trim();
    return t === "*" || t === etag || t === `W/${etag}`;
  });
}

/**
 * A store that failed (a bucket down, a disk error) is a 502 saying so, not an "Internal error";
 * what failed is logged, not told to the browser (it names the store's endpoint).
 */
function storeFailed(err: unknown): Response {
  log.warn("Media not served: {error}", { error: err instanceof Error ? err.message : err });
  return text(502, "Bad gateway: the media store did not give the file; try again");
}

function text(status: number, message: string, headers: HeadersInit = {}): Response {
  const h = new Headers(headers);
  h.set("Content-Type", "text/plain; charset=utf-8");
  h.set("Cache-Control", "no-store");
  return new Response(message + "\n", { status, headers: h });
}
