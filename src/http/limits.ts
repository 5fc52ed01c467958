// Limits that keep one client from exhausting the bridge: request bodies read with a byte cap
// (413 as soon as it is passed), and a token bucket for messages per second per agent socket.
// Both are plain functions with the clock passed in, so the route and socket code stay small.

import { MAX_MESSAGE_BYTES } from "../protocol/message_size.ts";
import { HttpError } from "./http_error.ts";

/** Reads the whole body, throwing a 413 `HttpError` as soon as it is known to exceed `maxBytes`. */
export async function readBodyLimited(req: Request, maxBytes: number): Promise<Uint8Array> {
  if (!Number.isInteger(maxBytes) || maxBytes < 0) {
    throw new RangeError(`Cannot limit body: maxBytes must be a whole number, got ${maxBytes}`);
  }
  const declared = req.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared) > maxBytes) {
    // The client may still be sending: cancelling tells the server not to read the rest.
    await req.body?.cancel().catch(() => {});
    throw tooLarge(maxBytes);
  }
  if (req.body === null) return new Uint8Array(0);
  if (declared !== null && /^\d+$/.test(declared.trim())) {
    // The server holds the body to its declared length, so one read is safe, and it costs far
    // less than pulling the stream chunk by chunk (measured: a third of the webhook's time).
    return new Uint8Array(await req.arrayBuffer());
  }
  return await readStreamLimited(req.body, maxBytes, () => tooLarge(maxBytes));
}

/** Reads a stream to its end, cancelling it and throwing `tooBig(total)` once past `maxBytes`. */
export async function readStreamLimited(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
  tooBig: (total: number) => Error,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooBig(total);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  const body = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

function tooLarge(maxBytes: number): HttpError {
  return new HttpError(413, `Request body is larger than ${maxBytes} bytes`);
}

/** A token bucket: `take()` spends one token and says whether there was one. */
export interface RateLimiter {
  take(): boolean;
}

/** Creates a bucket that refills `ratePerSecond` tokens a second, up to `burst`, starting full. */
export function createRateLimiter(
  ratePerSecond: number,
  burst: number,
  now: () => number = () => performance.now(),
): RateLimiter {
  if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) {
    throw new RangeError(`Cannot create rate limiter: rate must be positive, got ${ratePerSecond}`);
  }
  if (!(burst >= 1) || !Number.isFinite(burst)) {
    throw new RangeError(`Cannot create rate limiter: burst must be at least 1, got ${burst}`);
  }
  return new TokenBucket(ratePerSecond / 1000, burst, now);
}

// Refilling lazily on each take() needs no timer, and a class keeps its state in four fields
// rather than a closure's context: thousands of idle sockets each hold one.
class TokenBucket implements RateLimiter {
  #tokens: number;
  #last: number;

  constructor(readonly perMs: number, readonly burst: number, readonly now: () => number) {
    this.#tokens = burst;
    this.#last = now();
  }

  take(): boolean {
    const t = this.now();
    // A clock that steps back (a fake, or a wall clock) must not drain the bucket.
    if (t > this.#last) {
      this.#tokens = Math.min(this.burst, this.#tokens + (t - this.#last) * this.perMs);
      this.#last = t;
    }
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

// The store takes any message up to this size (src/protocol/message_size.ts says how).
const MESSAGE_BYTES = MAX_MESSAGE_BYTES;
// What WeChat posts for a message of MESSAGE_BYTES of XML: in safe mode the XML, with 20 bytes
// of header, the appid and up to 32 of padding, base64-encoded (4/3), inside an outer <xml>;
// in compatible mode the plaintext fields besides. A long text (~6,000 Chinese characters,
// 18 KiB) is 25 KiB of ciphertext: the cap on the wire is sized from the cap after decryption.
const WECHAT_BODY_BYTES = MESSAGE_BYTES + Math.ceil((MESSAGE_BYTES + 20 + 32 + 32) / 3) * 4 +
  1024;

/** Defaults the bridge starts with; the production guide documents them. */
export const DEFAULT_LIMITS = {
  /** `POST send`: one JSON message from an agent. */
  sendBodyBytes: MESSAGE_BYTES,
  /** `POST send_xml`: WeChat's XML as posted, encrypted or in compatible mode. */
  xmlBodyBytes: WECHAT_BODY_BYTES,
  /** WeChat's XML after decryption: one message the bridge stores. */
  wechatXmlBytes: MESSAGE_BYTES,
  /** One WebSocket frame from an agent. */
  frameBytes: MESSAGE_BYTES,
  /** Messages per second per agent socket, and the burst allowed above it. */
  messagesPerSecond: 10,
  messageBurst: 20,
  /** Open sockets per agent (tabs and devices). */
  socketsPerAgent: 8,
} as const;
