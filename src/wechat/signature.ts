// WeChat callback signatures: `signature` (URL check and every plain request) and
// `msg_signature` (safe and compatible mode). SHA-1 over the sorted parts; compared in
// constant time so a forger learns nothing from response timing.

import { createHash, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";

/**
 * SHA-1 hex of the parts sorted and concatenated, as WeChat computes it. Parts are sorted by
 * their UTF-8 bytes (the order of the official PHP and Python samples); for the ASCII that
 * WeChat sends this is plain lexicographic order.
 */
export function computeSignature(...parts: string[]): string {
  const encoded = parts.map((part) => Buffer.from(part, "utf8"));
  encoded.sort(Buffer.compare);
  const hash = createHash("sha1");
  for (const part of encoded) hash.update(part);
  return hash.digest("hex");
}

/** Constant-time comparison; false when `given` is missing or of another length. */
export function isSameSignature(expected: string, given: string | null | undefined): boolean {
  if (typeof given !== "string" || given.length === 0) return false;
  const a = Buffer.from(expected, "utf8");
  const b = Buffer.from(given, "utf8");
  // The length of a SHA-1 hex digest is public, so returning early here leaks nothing.
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

/**
 * Checks `signature` over token, timestamp and nonce (URL check, plain and compatible mode).
 * An empty token, or a missing timestamp or nonce, never verifies: anyone could sign that.
 */
export function verifyRequestSignature(token: string, params: URLSearchParams): boolean {
  const timestamp = params.get("timestamp");
  const nonce = params.get("nonce");
  if (!token || timestamp === null || nonce === null) return false;
  return isSameSignature(computeSignature(token, timestamp, nonce), params.get("signature"));
}

/**
 * Checks `msg_signature` over token, timestamp, nonce and the `Encrypt` text (safe and
 * compatible mode). The plain `signature` does not cover the ciphertext and is not accepted here.
 */
export function verifyMessageSignature(
  token: string,
  params: URLSearchParams,
  encrypt: string,
): boolean {
  const timestamp = params.get("timestamp");
  const nonce = params.get("nonce");
  if (!token || timestamp === null || nonce === null || !encrypt) return false;
  return isSameSignature(
    computeSignature(token, timestamp, nonce, encrypt),
    params.get("msg_signature"),
  );
}
