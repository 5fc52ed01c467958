// The WeChat access token: one token shared by every API call, kept in a cache that several
// bridge instances can share, refreshed before it expires and, when WeChat rejects it, refreshed
// once by a single caller (single-flight) while the others wait for the same result.

import type { TokenCache } from "../core/store.ts";

export type { TokenCache };

/** A fresh token as WeChat returns it: `expiresInS` seconds from now. */
export interface FetchedToken {
  token: string;
  expiresInS: number;
}

/** Hands out the shared token and refreshes it. */
export interface AccessTokenManager {
  /** The current token, fetching one when there is none or it is about to expire. */
  get(): Promise<string>;
  /** Reports that WeChat rejected `token`; resolves to a newer one, refreshing only once. */
  invalidate(token: string): Promise<string>;
}

export interface AccessTokenManagerOptions {
  /** Asks WeChat for a token; `forceRefresh` is set when the ordinary answer was the bad token. */
  fetchToken: (forceRefresh: boolean) => Promise<FetchedToken>;
  cache?: TokenCache;
  now?: () => number;
  /** How long before expiry to fetch a new token (WeChat hands out a new one 5 min before). */
  refreshMarginMs?: number;
  /** Lower bound between two expiry-driven refreshes, so a short-lived answer cannot loop. */
  minRefreshIntervalMs?: number;
}

export const DEFAULT_REFRESH_MARGIN_MS = 5 * 60_000;

/** An in-process token cache, the default when no shared store is configured. */
export function createMemoryTokenCache(): TokenCache {
  let entry: { token: string; expiresAt: number } | null = null;
  return {
    get: () => Promise.resolve(entry),
    set: (next) => {
      entry = { token: next.token, expiresAt: next.expiresAt };
      return Promise.resolve();
    },
  };
}

/** Creates the single-flight token manager over `options.cache`. */
export function createAccessTokenManager(options: AccessTokenManagerOptions): AccessTokenManager {
  const cache = options.cache ?? createMemoryTokenCache();
  const now = options.now ?? Date.now;
  const margin = options.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS;
  const minInterval = options.minRefreshIntervalMs ?? 30_000;
  let inflight: Promise<string> | null = null;
  let lastRefreshAt = Number.NEGATIVE_INFINITY;

  function isFresh(entry: { expiresAt: number }, at: number): boolean {
    return at < entry.expiresAt - margin;
  }

  // `rejected` is the token WeChat refused (null for an expiry refresh): a cached token other
  // than it that is still usable means someone else already refreshed, so no call is made.
  function refresh(rejected: string | null): Promise<string> {
    if (inflight) return inflight;
    inflight = (async () => {
      try {
        const cached = await cache.get();
        if (cached && cached.token !== rejected && isFresh(cached, now())) return cached.token;
        let fetched = await options.fetchToken(false);
        // The ordinary call answers the same token while WeChat still deems it valid; only a
        // forced refresh (20 a day) replaces one WeChat has already refused.
        if (rejected !== null && fetched.token === rejected) {
          fetched = await options.fetchToken(true);
        }
        const at = now();
        lastRefreshAt = at;
        await cache.set({ token: fetched.token, expiresAt: at + fetched.expiresInS * 1000 });
        return fetched.token;
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }

  return {
    async get() {
      if (inflight) return await inflight;
      const cached = await cache.get();
      const at = now();
      if (cached && isFresh(cached, at)) return cached.token;
      if (cached && at < cached.expiresAt && at - lastRefreshAt < minInterval) return cached.token;
      return await refresh(null);
    },
    async invalidate(token) {
      // A refresh already under way may have been started for expiry, not for this token.
      if (inflight) {
        const current = await inflight.catch(() => null);
        if (current !== null && current !== token) return current;
      }
      return await refresh(token);
    },
  };
}
