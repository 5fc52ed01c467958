// Giving back a reply's client_id in a store shared by several instances (Store.claimClientId),
// once the reply was refused before anything was sent. The refusals that say "send it again"
// are mostly the store's own (unavailable): the release then fails too, and a claim left in
// place for its day made the same client_id, sent again as told, a 202 "sending" that nothing
// ever sent. A release the store did not take is tried again until it does, and at once before
// that client_id is claimed again.

import { getLogger } from "@logtape/logtape";
import type { Store } from "../core/store.ts";

const log = getLogger(["bridge", "replies"]);

/** The first wait before a failed release is tried again; it doubles up to RETRY_MAX_MS. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 30_000;

interface Unreleased {
  agentId: string;
  followerId: string;
  clientId: string;
  /** The release under way: resolves to its error, or null once the store took it. */
  attempt: Promise<unknown> | null;
  failures: number;
}

/** Releases of claimed client_ids, retried while the store refuses them. */
export interface ClientIdReleases {
  /** Gives back the claim `key` names (the reply service's agent/follower/client_id key). */
  release(key: string, agentId: string, followerId: string, clientId: string): void;
  /** Before `key` is claimed again: its release still owed is made now; throws the store's
   * error when it cannot be (the claim would find the client_id taken). */
  beforeClaim(key: string): Promise<void>;
  /** Stops the retries (shutdown). */
  stop(): void;
}

/** Creates the releases over `store` (one with claimClientId/releaseClientId). */
export function createClientIdReleases(store: Store): ClientIdReleases {
  const owed = new Map<string, Unreleased>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let waitMs = RETRY_FIRST_MS;
  let stopped = false;

  /** One release at a time per key: a late one must not delete the claim taken after it. */
  function attempt(key: string, u: Unreleased): Promise<unknown> {
    u.attempt ??= store.releaseClientId!(u.agentId, u.followerId, u.clientId).then(
      () => {
        owed.delete(key);
        if (u.failures > 0) {
          log.info("Released client_id {client_id} after {failures} tries", {
            client_id: u.clientId,
            failures: u.failures,
          });
        }
        return null;
      },
      (error) => {
        u.attempt = null;
        if (u.failures++ === 0) {
          log.warn("Cannot release client_id {client_id} yet, trying again: {error}", {
            client_id: u.clientId,
            error,
          });
        }
        return error ?? new Error("release refused");
      },
    );
    return u.attempt;
  }

  function schedule(): void {
    if (timer !== undefined || owed.size === 0 || stopped) return;
    timer = setTimeout(async () => {
      const errors = await Promise.all([...owed].map(([key, u]) => attempt(key, u)));
      timer = undefined;
      waitMs = errors.every((e) => e === null)
        ? RETRY_FIRST_MS
        : Math.min(waitMs * 2, RETRY_MAX_MS);
      schedule();
    }, waitMs);
    Deno.unrefTimer(timer);
  }

  return {
    release(key, agentId, followerId, clientId) {
      const u: Unreleased = owed.get(key) ??
        { agentId, followerId, clientId, attempt: null, failures: 0 };
      owed.set(key, u);
      attempt(key, u).then((error) => {
        if (error !== null) schedule();
      });
    },
    async beforeClaim(key) {
      const u = owed.get(key);
      if (!u) return;
      const error = await attempt(key, u);
      if (error !== null) throw error;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
