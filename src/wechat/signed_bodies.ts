// One body per signed URL. In plain mode WeChat's `signature` covers token, timestamp and nonce,
// not the body, so a captured callback URL could carry any body until WECHAT_MAX_AGE_S. WeChat
// retries a callback with the same query and the same bytes, so the first body seen under a
// signature is the only one it may carry; a byte-identical retry goes on to the dedup path.

import { createHash } from "node:crypto";
import { Buffer } from "node:buffer";

/** Where the body first seen under each signature is kept: here, or in a shared store. */
export interface SignedBodies {
  /**
   * The hash first seen with `signature`; `hash` itself when none was, which is kept from now
   * until `expiresAtMs` (past it the signature is stale and refused anyway).
   */
  first(signature: string, hash: string, expiresAtMs: number): Promise<string>;
  /** Resolves once what first() took is where a restart finds it (absent: memory only); the
   * callback is answered after it, so no signature it answered opens again after a crash. */
  settle?(): Promise<void>;
}

/** What a store that outlives the process gives createSignedBodies() and takes from it. */
export interface SignedBodiesOptions {
  /** Signatures an earlier run kept: [signature, hash, expiresAtMs]; expired ones are skipped. */
  kept?: Iterable<readonly [string, string, number]>;
  /** Told of each signature first seen here, for the store to keep. */
  onFirst?(signature: string, hash: string, expiresAtMs: number): void;
}

/** The hash a body is remembered by: 96 bits of its SHA-256, as base64. */
export function bodyHash(body: string): string {
  // Encoded from the 12 bytes, not sliced from the whole digest's base64: a slice would keep
  // its 44-character parent alive in the table.
  return Buffer.from(createHash("sha256").update(body).digest().subarray(0, 12))
    .toString("base64");
}

/**
 * Signatures in this process, each until its expiry: at 2,000 callbacks a second and a 300 s
 * WECHAT_MAX_AGE_S that is 600,000 entries, about 130 bytes each (a signature held as its 20
 * bytes, the hash as 16 characters). Expired ones go a second at a time, as time passes.
 */
export function createSignedBodies(
  now: () => number,
  options: SignedBodiesOptions = {},
): SignedBodies {
  const hashes = new Map<string, string>();
  // Each second's signatures, by the second they expire in.
  const bySecond = new Map<number, string[]>();
  let sweptUpTo = Math.floor(now() / 1000);

  function sweep(nowS: number): void {
    // The first call long after the last (a quiet day, a clock set forward): a walk over the
    // seconds that hold signatures, not every second since, and none of them skipped.
    if (nowS - sweptUpTo > bySecond.size) {
      for (const [second, keys] of bySecond) {
        if (second >= nowS) continue;
        for (const key of keys) hashes.delete(key);
        bySecond.delete(second);
      }
      sweptUpTo = nowS;
    }
    for (; sweptUpTo < nowS; sweptUpTo++) {
      for (const key of bySecond.get(sweptUpTo) ?? []) hashes.delete(key);
      bySecond.delete(sweptUpTo);
    }
  }

  /** The hash kept for `signature`, `hash` if it was none (then kept until `expiresAtMs`). */
  function keep(signature: string, hash: string, expiresAtMs: number): [string, boolean] {
    const key = Buffer.from(signature, "hex").toString("latin1");
    const seen = hashes.get(key);
    if (seen !== undefined) return [seen, false];
    hashes.set(key, hash);
    const second = Math.max(Math.ceil(expiresAtMs / 1000), sweptUpTo);
    const list = bySecond.get(second);
    if (list === undefined) bySecond.set(second, [key]);
    else list.push(key);
    return [hash, true];
  }

  const startMs = now();
  for (const [signature, hash, expiresAtMs] of options.kept ?? []) {
    if (expiresAtMs > startMs) keep(signature, hash, expiresAtMs);
  }

  return {
    first(signature, hash, expiresAtMs) {
      sweep(Math.floor(now() / 1000));
      const [kept, isNew] = keep(signature, hash, expiresAtMs);
      if (isNew) options.onFirst?.(signature, hash, expiresAtMs);
      return Promise.resolve(kept);
    },
  };
}
