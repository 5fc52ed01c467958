// The Deno KV store's memory of plain WeChat signatures (src/wechat/signed_bodies.ts): decided
// in memory, as for one process, and each signature first seen written to KV (with its
// expiry) before the callback is answered: in the atomic of the store's next commit (its
// message's, nearly always), else on its own. A restart within WECHAT_MAX_AGE_S so still
// refuses a captured URL with another body. Nothing is read or written without it.

import { createSignedBodies } from "../wechat/signed_bodies.ts";
import { signedBodiesPrefix, signedBodyKey } from "./kv_keys.ts";

/** Signatures written per atomic of their own, well inside KV's 1,000 mutations and 800 KB. */
const PER_ATOMIC = 500;

/** A signature's first body: signature, hash, expiry (ms). */
export type SignedBody = [string, string, number];

/** The store's side of the signatures (Store's firstBody, and what its commits carry). */
export interface KvSignedBodies {
  firstBody(signature: string, hash: string, ttlMs: number): Promise<string>;
  /** The signatures no write has taken yet, for the commit being made to carry. */
  take(): SignedBody[];
  /** The commit that took `taken` is over; not `ok`: they go with the next one. */
  settled(taken: SignedBody[], ok: boolean): void;
  /** True when every signature taken is written: nothing to wait for. */
  readonly idle: boolean;
  /** Writes what no commit took. Run in the store's order, after the commits before it. */
  writeLeft(): Promise<void>;
}

/** The key and value a signature is kept by in KV, and for how long. */
export function signedBodyWrite(
  [signature, hash, expiry]: SignedBody,
  nowMs: number,
): { key: Deno.KvKey; value: [string, number]; expireIn: number } {
  return {
    key: signedBodyKey(signature),
    value: [hash, expiry],
    expireIn: Math.max(1, expiry - nowMs),
  };
}

/** The signatures KV keeps past `now`. */
export async function loadKvSignedBodies(kv: Deno.Kv, now: number): Promise<SignedBody[]> {
  const kept: SignedBody[] = [];
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
  kept: Iterable<SignedBody>,
  now: () => number,
): KvSignedBodies {
  let unwritten: SignedBody[] = [];
  /** Commits under way that carry signatures. */
  let carrying = 0;
  const bodies = createSignedBodies(now, {
    kept,
    onFirst: (signature, hash, expiry) => unwritten.push([signature, hash, expiry]),
  });

  return {
    firstBody(signature, hash, ttlMs) {
      return bodies.first(signature, hash, now() + ttlMs);
    },
    take() {
      const taken = unwritten;
      if (taken.length === 0) return taken;
      unwritten = [];
      carrying++;
      return taken;
    },
    settled(taken, ok) {
      if (taken.length === 0) return;
      carrying--;
      if (!ok) unwritten = [...taken, ...unwritten];
    },
    get idle() {
      return unwritten.length === 0 && carrying === 0;
    },
    async writeLeft() {
      const taken = this.take();
      let ok = false;
      try {
        for (let i = 0; i < taken.length; i += PER_ATOMIC) {
          const op = kv.atomic();
          for (const body of taken.slice(i, i + PER_ATOMIC)) {
            const { key, value, expireIn } = signedBodyWrite(body, now());
            op.set(key, value, { expireIn });
          }
          if (!(await op.commit()).ok) throw new Error("Cannot write signatures to Deno KV");
        }
        ok = true;
      } finally {
        this.settled(taken, ok);
      }
    },
  };
}
