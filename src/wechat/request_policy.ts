// Optional hardening of WeChat's callbacks, off by default as in WeChat's own samples and SDKs
// (they check the signature only): a signed request older than WECHAT_MAX_AGE_S is refused (a
// plaintext body is not covered by the signature, so a captured query could otherwise be
// replayed with any body), and with WECHAT_REQUIRE_ENCRYPTION plaintext bodies are refused.

import { HttpError } from "../http/http_error.ts";

/**
 * How long WeChat's retries are recognised. WeChat gives up after three retries 5 s apart, so an
 * hour is far past the last; every key is held in memory for that long (a day's were ~1 GB at
 * 100 messages a second, and in Redis too).
 */
export const DEDUP_TTL_MS = 3600_000;

/** The largest WECHAT_MAX_AGE_S: a callback whose timestamp is that far ahead when it first
 * comes, replayed byte for byte until it is that far behind, must still find its retry key
 * (kept DEDUP_TTL_MS); past it a replay was delivered again as a new message. */
export const MAX_SIGNED_AGE_S = DEDUP_TTL_MS / 2 / 1000;

/** What the operator turned on. */
export interface WechatRequestPolicy {
  /** Seconds a signed request's `timestamp` may be from now, either way; unset: no check. */
  maxAgeS?: number;
  /** With a safe-mode key: only encrypted bodies are accepted. */
  requireEncryption?: boolean;
}

/** Throws 401 when `timestamp` is missing or further than `maxAgeS` from `nowMs`. */
export function checkSignedAge(
  params: URLSearchParams,
  nowMs: number,
  policy: WechatRequestPolicy,
): void {
  if (policy.maxAgeS === undefined) return;
  const raw = params.get("timestamp") ?? "";
  const timestamp = /^\d{1,12}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isFinite(timestamp)) throw new HttpError(401, "Missing or bad timestamp");
  const age = Math.round(nowMs / 1000 - timestamp);
  if (Math.abs(age) > policy.maxAgeS) {
    throw new HttpError(
      401,
      `Stale signature: timestamp is ${age} s from now, WECHAT_MAX_AGE_S is ${policy.maxAgeS}`,
    );
  }
}

/** Throws 401 for a plaintext body when encryption is required and a key is configured. */
export function checkPlaintextAllowed(policy: WechatRequestPolicy, hasKey: boolean): void {
  if (policy.requireEncryption && hasKey) {
    throw new HttpError(
      401,
      "Plaintext message refused: WECHAT_REQUIRE_ENCRYPTION accepts safe-mode messages only",
    );
  }
}
