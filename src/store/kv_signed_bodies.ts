// The Deno KV store's memory of plain WeChat signatures (src/wechat/signed_bodies.ts): decided
// in memory, as for one process, and each signature first seen written to KV (with its
// expiry) before the callback is answered, so a restart within WECHAT_MAX_AGE_S still refuses
// a captured URL with another body. Nothing is read or written without WECHAT_MAX_AGE_S.

import { createSignedBodies } from "../wechat/signed_bodies.ts";
import { signedBodiesPrefix, signedBodyKey } from "./kv_keys.ts";

/** Signatures written per atomic, well inside KV's 1,000 mutations and 800 KB. */
const PER_ATOMIC = 500;

/** What the store offers for the signatures (Store's firstBody and bodiesKept). */
export interface KvSignedBodies {
  firstBody(signature: string, hash: string, ttlMs: number): Promise<string>;
  bodiesKept(): Promise<void>;
}

/** The signatures KV keeps past `now`: [signature, hash, expiry]. */
export async function loadKvSignedBodies(
  kv: Deno.Kv,
  now: number,
): Promise<Array<[string, string, number]>> {
  const kept: Array<[string, string, number]> = [];
  // KV deletes an expired key some time after its expiry: the expiry in the value decides.
  for await (const e of kv.list<[string, number]>({ prefix: signedBodiesPrefix() })) {
    const [hash, expiry] = e.value;
    if (expiry > now) kept.push([e.key[1] as string, hash, expiry]);
  }
  return kept;
}

/** The signatures' first bodies on `kv`, starting from what an earlier run `kept`. */
export function createKvSignedBodies(
  kv: Deno.Kv,
  kept: Iterable<[string, string, number]>,
  now: () => number,
): KvSignedBodies {
  let unwritten: Array<[string, string, number]> = [];
  // Writes in order, each after the last: a callback whose signature went out with another's
  // write waits for that one (it is the last, or before it).
  let lastWrite: Promise<void> = Promise.resolve();
  const bodies = createSignedBodies(now, {
    kept,
    onFirst: (signature, hash, expiry) => unwritten.push([signature, hash, expiry]),
  });

  async function write(batch: Array<[string, string, number]>): Promise<void> {
    try {
      for (let i = 0; i < batch.length; i += PER_ATOMIC) {
        const op = kv.atomic();
        for (const [signature, hash, expiry] of batch.slice(i, i + PER_ATOMIC)) {
          op.set(signedBodyKey(signature), [hash, expiry], {
            expireIn: Math.max(1, expiry - now()),
          });
        }
        if (!(await op.commit()).ok) throw new Error("Cannot write signatures to Deno KV");
      }
    } catch (error) {
      // Not kept: the next callback's write takes them.
      unwritten = [...batch, ...unwritten];
      throw error;
    }
  }

  return {
    firstBody(signature, hash, ttlMs) {
      return bodies.first(signature, hash, now() + ttlMs);
    },
    bodiesKept() {
      if (unwritten.length > 0) {
        const batch = unwritten;
        unwritten = [];
        lastWrite = lastWrite.catch(() => {}).then(() => write(batch));
      }
      return lastWrite;
    },
  };
}
