// Signed media URLs: a token is HMAC-SHA256(secret, key) in base64url, so an agent's browser can
// open `/media/KEY?t=TOKEN` without credentials while nobody can guess or alter a URL. Tokens do
// not expire: media URLs live in conversation history and are cached as immutable.

import { createHmac, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";

/** Signs and checks media keys; both synchronous so routes stay simple. */
export interface UrlSigner {
  /** The token for a key (43 base64url characters). */
  sign(key: string): string;
  /** True when the token is the one `sign(key)` gives; constant time in the token. */
  verify(key: string, token: string): boolean;
}

// Domain separation: the same secret may sign other things (agent JWTs) elsewhere.
const CONTEXT = "bridge-media-v1\n";
const TOKEN_LENGTH = 43;

/** Creates a signer; the secret must be at least 16 bytes so tokens are not brute-forceable. */
export function createUrlSigner(secret: Uint8Array | string): UrlSigner {
  const secretBytes = typeof secret === "string"
    ? Buffer.from(secret, "utf8")
    : Buffer.from(secret);
  if (secretBytes.length < 16) {
    throw new RangeError(
      `Cannot create media URL signer: secret is ${secretBytes.length} bytes, need at least 16`,
    );
  }
  const mac = (key: string): Buffer =>
    createHmac("sha256", secretBytes).update(CONTEXT).update(key, "utf8").digest();

  return {
    sign(key) {
      return mac(key).toString("base64url");
    },
    verify(key, token) {
      if (typeof token !== "string" || token.length !== TOKEN_LENGTH) return false;
      // Compare the text, not decoded bytes: base64url's 43rd character carries two unused
      // bits, so decoding would accept four spellings of one token.
      const given = Buffer.from(token, "utf8");
      const expected = Buffer.from(mac(key).toString("base64url"), "utf8");
      return given.length === expected.length && timingSafeEqual(given, expected);
    },
  };
}
