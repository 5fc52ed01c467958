// Limits that keep one client from exhausting the bridge: request bodies read with a byte cap
// (413 as soon as it is passed) and a deadline on a body that stops arriving (408), and token
// buckets for messages per second. Plain functions with the clock passed in, so the route and
// socket code stay small.

import ipaddr from "ipaddr.js";
import { MAX_MESSAGE_BYTES } from "../protocol/message_size.ts";
import { HttpError } from "./http_error.ts";

/** A body that sends nothing for this long is answered 408: a client that stalls holds a slot. */
const BODY_IDLE_TIMEOUT_MS = 10_000;
/** Bodies up to this size are read in one go, within one idle timeout. */
const ONE_READ_BYTES = 64 * 1024;

/**
 * Reads the whole body, throwing a 413 `HttpError` as soon as it is known to exceed `maxBytes`,
 * a 408 when a body of up to 64 KiB is not whole within 10 s (a larger one: no byte came for
 * that long), and a 400 when the client went away or sent a body Deno cannot parse.
 */
export function readBodyLimited(req: Request, maxBytes: number): Promise<Uint8Array> {
  // Not an async function: a webhook's body is one read, and another layer of promise on it
  // was garbage on every message. What would throw is a rejection, as from an async one.
  try {
    if (!Number.isInteger(maxBytes) || maxBytes < 0) {
      throw new RangeError(`Cannot limit body: maxBytes must be a whole number, got ${maxBytes}`);
    }
    const declared = req.headers.get("content-length");
    const length = declared !== null && /^\d+$/.test(declared.trim()) ? Number(declared) : null;
    if (length !== null && length > maxBytes) return refuseTooLarge(req, maxBytes);
    if (length !== null && length <= ONE_READ_BYTES) {
      // The server holds the body to its declared length, so one read is safe, and it costs far
      // less than pulling the stream chunk by chunk (measured: a third of the webhook's time).
      // One read, so one deadline: such a body must be whole within the idle timeout.
      // `req.body` is not touched on this path: reading that getter makes Deno build a
      // ReadableStream, and V8's young-generation collections keep it (and the request with it)
      // until a full one; at 2,000 webhooks/s that was 1.3 MB promoted every scavenge and 4-5 ms
      // pauses, the latency row's p99 (BENCHMARKS.md, "Issue 17: the request body's stream").
      return withDeadline(req.arrayBuffer(), "was not complete within", toBytes);
    }
    if (req.body === null) return Promise.resolve(new Uint8Array(0));
    const reader = req.body.getReader();
    const read = () => withDeadline(reader.read(), "sent nothing for", same);
    return readChunksLimited(reader, read, maxBytes, () => tooLarge(maxBytes));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** 413, once the client is told not to send the rest. */
async function refuseTooLarge(req: Request, maxBytes: number): Promise<never> {
  // The client may still be sending: cancelling tells the server not to read the rest.
  await req.body?.cancel().catch(() => {});
  throw tooLarge(maxBytes);
}

const toBytes = (buffer: ArrayBuffer) => new Uint8Array(buffer);
const same = <T>(value: T) => value;

/** How often bodies that may have stalled are looked at: one timer for every request. */
const SWEEP_MS = 1_000;

/** A read waiting on a body: the moment it is late, how it then fails, and its neighbours. */
interface Watched {
  at: number;
  late: () => void;
  prev: Watched | null;
  next: Watched | null;
}

/**
 * Reads waiting on a body, oldest first: every deadline is BODY_IDLE_TIMEOUT_MS from its start,
 * so the list is also in the order they fall due. An intrusive list, not a Set: a long-lived Set
 * that every request enters and leaves re-makes its table every few requests, and V8 keeps
 * those tables past young-generation collections (123 bytes a message at 2,000 webhooks/s;
 * BENCHMARKS.md, "Issue 17: garbage that outlived scavenges").
 */
let first: Watched | null = null;
let last: Watched | null = null;
let sweeper: ReturnType<typeof setInterval> | undefined;

function unwatch(entry: Watched): void {
  if (entry.prev === null) first = entry.next;
  else entry.prev.next = entry.next;
  if (entry.next === null) last = entry.prev;
  else entry.next.prev = entry.prev;
  entry.prev = entry.next = null;
}

function sweep(): void {
  const now = performance.now();
  while (first !== null && first.at <= now) {
    const entry = first;
    unwatch(entry);
    entry.late();
  }
  if (first === null) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

/**
 * `work`, or a 408 once the body idle timeout has passed (to within a second); a failed read
 * (client gone) is a 400. A timer per request cost more than reading a WeChat body: one sweep
 * serves them all. One timeout for every read keeps the list in deadline order.
 */
function withDeadline<T, U>(work: Promise<T>, what: string, map: (value: T) => U): Promise<U> {
  const ms = BODY_IDLE_TIMEOUT_MS;
  return new Promise<U>((resolve, reject) => {
    const entry: Watched = {
      at: performance.now() + ms,
      late: () => reject(new HttpError(408, `Request body stalled: it ${what} ${ms} ms`)),
      prev: last,
      next: null,
    };
    if (last === null) first = entry;
    else last.next = entry;
    last = entry;
    if (sweeper === undefined) {
      // An idle process may exit with reads still watched (they belong to closed servers).
      Deno.unrefTimer(sweeper = setInterval(sweep, SWEEP_MS));
    }
    // Settled already by the sweep (408): then it is out of the list.
    const done = () => entry === first || entry.prev !== null ? unwatch(entry) : undefined;
    work.then((value) => {
      done();
      resolve(map(value));
    }, (error) => {
      done();
      reject(error instanceof HttpError ? error : new HttpError(400, unreadable(error)));
    });
  });
}

/**
 * Why a body read failed: Deno's parser refused its framing (a chunked body's, or what the
 * connection guard put in place of framing it refused), or the client went away.
 */
function unreadable(error: unknown): string {
  return String(error).includes("invalid HTTP/1")
    ? "Cannot read request body: its framing is invalid"
    : "Cannot read request body: the client went away";
}

/** Reads a stream to its end, cancelling it and throwing `tooBig(total)` once past `maxBytes`. */
export function readStreamLimited(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
  tooBig: (total: number) => Error,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  return readChunksLimited(reader, () => reader.read(), maxBytes, tooBig);
}

async function readChunksLimited(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  read: () => Promise<ReadableStreamReadResult<Uint8Array>>,
  maxBytes: number,
  tooBig: (total: number) => Error,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooBig(total);
      }
      chunks.push(value);
    }
  } catch (error) {
    // A stalled body stays locked: cancelling releases what the server holds for it.
    reader.cancel().catch(() => {});
    throw error;
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

/** Token buckets by key (an agent, a client address): `take(key)` is 0 when allowed. */
export interface KeyedRateLimiter {
  /** 0 when `key` had a token; else the whole seconds until it has one (for Retry-After). */
  take(key: string): number;
}

/**
 * The rate-limit key of a client address: an IPv6 address by its /64, which one host (or one
 * subscriber line) gets whole, so that it cannot take a fresh bucket with every address in it;
 * an IPv4-mapped one as the IPv4 address it is; anything else as given.
 */
export function clientKeyOf(address: string): string {
  if (!ipaddr.isValid(address)) return address;
  const parsed = ipaddr.parse(address);
  if (parsed.kind() === "ipv4") return parsed.toString();
  const v6 = parsed as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
  return `${v6.parts.slice(0, 4).map((p) => p.toString(16)).join(":")}::/64`;
}

/** Past this many keys, buckets that have refilled (idle keys) are forgotten. */
const MAX_IDLE_KEYS = 10_000;

/** Creates one bucket per key, each like `createRateLimiter(ratePerSecond, burst, now)`. */
export function createKeyedRateLimiter(
  ratePerSecond: number,
  burst: number,
  now: () => number = () => performance.now(),
): KeyedRateLimiter {
  createRateLimiter(ratePerSecond, burst, now); // the same checks on the arguments
  const buckets = new Map<string, TokenBucket>();
  const perMs = ratePerSecond / 1000;
  return {
    take(key) {
      let bucket = buckets.get(key);
      if (bucket === undefined) {
        if (buckets.size >= MAX_IDLE_KEYS) {
          for (const [k, b] of buckets) if (b.isFull()) buckets.delete(k);
        }
        bucket = new TokenBucket(perMs, burst, now);
        buckets.set(key, bucket);
      }
      return bucket.take() ? 0 : Math.max(1, Math.ceil(bucket.msUntilToken() / 1000));
    },
  };
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

  /** Milliseconds until the next take() can succeed (as of the last one). */
  msUntilToken(): number {
    return this.#tokens >= 1 ? 0 : (1 - this.#tokens) / this.perMs;
  }

  /** True once the bucket has refilled: its key was idle and can be forgotten. */
  isFull(): boolean {
    return this.#tokens + (this.now() - this.#last) * this.perMs >= this.burst;
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
