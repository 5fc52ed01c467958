// Signed media URLs with a lifetime: `/media/KEY?e=EXPIRES&t=TOKEN`, where TOKEN is
// HMAC-SHA256(secret, key and expiry) in base64url, so an agent's browser can open a URL without
// credentials while nobody can guess, alter or extend one. An expired URL (or one signed before
// URLs had a lifetime, `?t=` alone) is renewed by an agent (GET B/media_url) or by reading history.

import { createHmac, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";

/** What `check` says of a URL's query. */
export type UrlCheck = "ok" | "expired" | "bad";

/** Signs and checks media keys; all synchronous so routes stay simple. */
export interface UrlSigner {
  /** The query (`e=…&t=…`, no `?`) that opens `key` until the lifetime runs out. */
  query(key: string): string;
  /** `ok` for a signature of ours that has not expired; `expired` for one that has. */
  check(key: string, expires: string | null, token: string | null): UrlCheck;
  /** True when the bridge signed this (expired or not, old form without `e` included). */
  issued(key: string, expires: string | null, token: string | null): boolean;
}

/** The signer's lifetime and clock. */
export interface UrlSignerOptions {
  /** Seconds a URL stays valid (MEDIA_URL_TTL_S); default one day. */
  ttlS?: number;
  now?: () => number;
}

// Domain separation: the same secret may sign other things (agent JWTs) elsewhere. v1 tokens
// (no expiry) are still recognised as ours, so history written before can be renewed.
const CONTEXT_V1 = "bridge-media-v1\n";
const CONTEXT_V2 = "bridge-media-v2\n";
const TOKEN_LENGTH = 43;
/** Expiries are rounded up to the hour, so one file's URL stays the same (and cached) a while. */
const ROUND_S = 3600;

/** Creates a signer; the secret must be at least 16 bytes so tokens are not brute-forceable. */
export function createUrlSigner(
  secret: Uint8Array | string,
  options: UrlSignerOptions = {},
): UrlSigner {
  const secretBytes = typeof secret === "string"
    ? Buffer.from(secret, "utf8")
    : Buffer.from(secret);
  if (secretBytes.length < 16) {
    throw new RangeError(
      `Cannot create media URL signer: secret is ${secretBytes.length} bytes, need at least 16`,
    );
  }
  const ttlS = options.ttlS ?? 24 * 3600;
  const now = options.now ?? Date.now;
  const mac = (context: string, key: string, expires?: string): string => {
    const h = createHmac("sha256", secretBytes).update(context).update(key, "utf8");
    if (expires !== undefined) h.update(`\n${expires}`);
    return h.digest().toString("base64url");
  };
  // Compare the text, not decoded bytes: base64url's 43rd character carries two unused bits,
  // so decoding would accept four spellings of one token.
  const same = (given: string | null, expected: string): boolean => {
    if (typeof given !== "string" || given.length !== TOKEN_LENGTH) return false;
    return timingSafeEqual(Buffer.from(given, "utf8"), Buffer.from(expected, "utf8"));
  };
  const validExpiry = (expires: string | null): expires is string =>
    expires !== null && /^\d{1,12}$/.test(expires);

  function issued(key: string, expires: string | null, token: string | null): boolean {
    if (expires === null) return same(token, mac(CONTEXT_V1, key));
    return validExpiry(expires) && same(token, mac(CONTEXT_V2, key, expires));
  }

  return {
    query(key) {
      const at = Math.ceil((now() / 1000 + ttlS) / ROUND_S) * ROUND_S;
      const expires = String(at);
      return `e=${expires}&t=${mac(CONTEXT_V2, key, expires)}`;
    },
    check(key, expires, token) {
      if (!issued(key, expires, token)) return "bad";
      // A URL signed before URLs had a lifetime is ours, and expired.
      if (expires === null || Number(expires) * 1000 <= now()) return "expired";
      return "ok";
    },
    issued,
  };
}

/** The media URL for `key` under `base` (PUBLIC_URL or the request's origin). */
export function mediaUrlOf(signer: UrlSigner, base: string, key: string): string {
  return `${base.replace(/\/+$/, "")}/media/${key}?${signer.query(key)}`;
}

// A media URL as the bridge writes it: `…/media/KEY?e=…&t=…` or the old `…/media/KEY?t=…`.
const MEDIA_URL =
  /^(.*\/media\/)([0-9a-f]{64}\.[a-z0-9]{1,8})\?(?:e=(\d{1,12})&)?t=([A-Za-z0-9_-]{43})$/;

/**
 * True for a URL shaped like the bridge's media URLs (`…/media/KEY?…t=…`) whose signature is
 * not this key's. History signs a stored reply's `media_url` anew whichever key signed it, so a
 * reply may only store one of that shape that the bridge itself signed: else an agent names any
 * file by its key and history gives it a URL that opens it.
 */
export function unsignedMediaUrl(signer: UrlSigner, url: string): boolean {
  const match = MEDIA_URL.exec(url);
  if (!match) return false;
  const [, , key = "", expires, token = ""] = match;
  return !signer.issued(key, expires ?? null, token);
}

/**
 * The same URL with a fresh lifetime, when it is a media URL the bridge signed (its origin is
 * kept); null for anything else, so foreign URLs are never signed. `signedBefore`: a URL the
 * bridge stored itself, whose signature may be another key's, and which moves to `base` (see
 * `renewMediaUrls`).
 */
export function renewMediaUrl(
  signer: UrlSigner,
  url: string,
  { signedBefore = false, base }: { signedBefore?: boolean; base?: string } = {},
): string | null {
  const match = MEDIA_URL.exec(url);
  if (!match) return null;
  const [, prefix = "", key = "", expires, token = ""] = match;
  if (!signedBefore && !signer.issued(key, expires ?? null, token)) return null;
  const start = signedBefore && base !== undefined ? `${base.replace(/\/+$/, "")}/media/` : prefix;
  return `${start}${key}?${signer.query(key)}`;
}

/**
 * The fields of a stored message that hold the URL of a file the bridge stored: a follower's
 * media as the pipeline wrote them, and an agent's reply by `media_url` (the upload's URL).
 */
const STORED_MEDIA_FIELDS: Record<string, readonly string[]> = {
  in: ["media_path", "original_path", "thumb_path"],
  out: ["media_url"],
};

/**
 * A history item's `msg` with every media URL of ours renewed (other fields as they were).
 * With `direction`, the fields the bridge wrote are renewed whichever key signed them: the key
 * changes with AGENT_SECRET (changed to revoke every token, or set for the first time), and a
 * history whose URLs only the old key opened lost every picture, voice and video for good. A
 * URL names its file by its SHA-256, so signing one anew opens nothing its reader did not have.
 * With `base` (PUBLIC_URL) they start with it: a bridge once run without it behind a proxy
 * stored `http://` URLs an `https://` console never loads.
 */
export function renewMediaUrls(
  signer: UrlSigner,
  msg: Record<string, unknown>,
  direction?: string,
  base?: string,
): Record<string, unknown> {
  const stored = direction === undefined ? [] : STORED_MEDIA_FIELDS[direction] ?? [];
  let out: Record<string, unknown> | null = null;
  for (const [field, value] of Object.entries(msg)) {
    if (typeof value !== "string" || !value.includes("/media/")) continue;
    const renewed = renewMediaUrl(signer, value, { signedBefore: stored.includes(field), base });
    if (renewed === null || renewed === value) continue;
    out ??= { ...msg };
    out[field] = renewed;
  }
  return out ?? msg;
}
