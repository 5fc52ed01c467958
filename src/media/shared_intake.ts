// Follower messages that wait for their media when instances share a store (Redis): the media
// message joins the follower's queue in the store before WeChat is answered, and the store
// queues the follower's later messages behind it, whichever instance WeChat posted them to. One
// instance at a time works a queue under a lease; every instance sweeps for queues nobody holds,
// so a queue outlives the instance that started it.

import { getLogger } from "@logtape/logtape";
import type { InboundItem, InboundOutcome, MediaQueue } from "../core/store.ts";
import { addMedia, hasMedia, readJournal } from "./intake.ts";
import type { MediaPipeline } from "./pipeline.ts";

const log = getLogger(["bridge", "media"]);

/** How long a queue stays with an instance that stopped renewing (it died, or hangs). */
const LEASE_MS = 5_000;
/** How often every instance looks for queues nobody holds. */
const SWEEP_MS = 2_000;
/** Tries at one head, failing for a reason other than an unreachable store, before it is set
 * aside: a sweep every 2 s makes that about 20 s. */
const MAX_HEAD_FAILURES = 10;

/** What the shared intake needs. */
export interface SharedMediaIntakeDeps {
  pipeline: MediaPipeline;
  queue: MediaQueue;
  accept(item: InboundItem): Promise<InboundOutcome>;
  /** A head whose media was stored but that was not (its follower forgotten meanwhile, or an
   * instance that took the queue over stored it): its files may be named by no history. */
  discarded?(item: InboundItem): void;
  /** Where a bridge without Redis journaled its jobs: those left there join the queues. */
  journalDir?: string;
  /** Whether an error means the store cannot be reached now (then a head is never set aside). */
  unreachable?(error: unknown): boolean;
  leaseMs?: number;
  sweepMs?: number;
}

/** Creates the intake whose queues live in the shared store. */
export function createSharedMediaIntake(deps: SharedMediaIntakeDeps) {
  const { queue } = deps;
  const leaseMs = deps.leaseMs ?? LEASE_MS;
  const sweepMs = deps.sweepMs ?? SWEEP_MS;
  const working = new Map<string, Promise<void>>();
  // Followers pushed to while this instance was finishing their queue: the last pop may have
  // ended it just before, so it is tried again at once rather than at the next sweep.
  const again = new Set<string>();
  /** Failed tries at the head of each follower's queue, in this instance. */
  const failures = new Map<string, number>();
  let sweepTimer: ReturnType<typeof setInterval> | undefined;
  let stopping = false;

  /** Stores the follower's queue in order while this instance holds its lease. */
  async function workQueue(followerId: string): Promise<void> {
    if (!await queue.lease(followerId, leaseMs)) return;
    let held = true;
    const renewal = setInterval(() => {
      queue.renew(followerId, leaseMs).then((ok) => held &&= ok, () => {});
    }, leaseMs / 3);
    try {
      while (held && !stopping) {
        // null: the queue has ended, or another instance took it over.
        const head = await queue.head(followerId);
        if (head === null) return;
        if (head.stored) {
          // A WeChat retry queued behind the first copy: its dedup key is taken, nothing to
          // fetch or store. 0: that was the last and the queue has ended; -1: taken over.
          failures.delete(followerId);
          if (await queue.pop(followerId, head) <= 0) return;
          continue;
        }
        if (head.publicBase !== null) await addMedia(deps.pipeline, head.item, head.publicBase);
        // Stored and popped in one step, if it is still the head.
        const outcome = await deps.accept({ ...head.item, fromQueue: head.raw });
        if (outcome === "duplicate" && head.publicBase !== null) deps.discarded?.(head.item);
        failures.delete(followerId);
      }
      if (held) await queue.release(followerId);
    } catch (error) {
      // Redis away: the queue waits, in order, however long it takes. Anything else failing
      // again and again at one head (an entry no instance can read or store) would hold the
      // follower's later messages back for ever: that head is set aside, and said so.
      const tries = deps.unreachable?.(error) ? 0 : (failures.get(followerId) ?? 0) + 1;
      if (tries >= MAX_HEAD_FAILURES) {
        failures.delete(followerId);
        log.error(
          "Set aside the head of {follower_id}'s media queue after {tries} failed tries, in " +
            "mediaq_aside:{follower_id}: {error}",
          { follower_id: followerId, tries, error },
        );
        await queue.setAside(followerId).catch(() => {});
      } else {
        if (tries > 0) failures.set(followerId, tries);
        log.warn("Cannot store the media queue of {follower_id} yet; it stays queued: {error}", {
          follower_id: followerId,
          error,
        });
      }
      await queue.release(followerId).catch(() => {});
    } finally {
      clearInterval(renewal);
    }
  }

  function work(followerId: string): void {
    if (stopping) return;
    if (working.has(followerId)) {
      again.add(followerId);
      return;
    }
    const run = workQueue(followerId).catch((error) => {
      log.warn("Cannot take the media queue of {follower_id}: {error}", {
        follower_id: followerId,
        error,
      });
    }).finally(() => {
      working.delete(followerId);
      if (again.delete(followerId)) work(followerId);
    });
    working.set(followerId, run);
  }

  async function sweep(): Promise<number> {
    const followers = await queue.followers();
    for (const followerId of followers) {
      if (!working.has(followerId)) work(followerId);
    }
    return followers.length;
  }

  return {
    /** Whether this item must go through the intake: the store queues the rest itself. */
    wants(item: InboundItem): boolean {
      return hasMedia(item);
    },

    /** Queues the item in the store; resolves once it is safe to answer WeChat. */
    async submit(item: InboundItem, publicBase: string): Promise<void> {
      await queue.push(item, publicBase);
      work(item.followerId);
    },

    /**
     * Queues what a bridge without Redis left journaled on this DATA_DIR (scaled out from one
     * instance), then takes up the queues nobody holds and sweeps from now on.
     */
    async recover(): Promise<number> {
      if (deps.journalDir !== undefined) {
        for (const { name, job } of await readJournal(deps.journalDir)) {
          await queue.push(job.item, job.publicBase);
          await Deno.remove(`${deps.journalDir}/${name}`);
        }
      }
      sweepTimer ??= setInterval(() => {
        sweep().catch((error) => log.warn("Cannot sweep the media queues: {error}", { error }));
      }, sweepMs);
      try {
        return await sweep();
      } catch (error) {
        log.warn("Cannot sweep the media queues yet: {error}", { error });
        return 0;
      }
    },

    /** Only the store's forget: it deletes the follower's queue in the same script, and a head
     * being fetched then is not stored. */
    forget(_followerId: string, forgetStored: () => Promise<void>): Promise<void> {
      return forgetStored();
    },

    /** Stops taking queues; the ones under way stop after their current message. */
    stop(): Promise<void> {
      stopping = true;
      clearInterval(sweepTimer);
      again.clear();
      return Promise.resolve();
    },

    /** Waits for every queue this instance is working (shutdown, tests). */
    async drain(): Promise<void> {
      while (working.size > 0) await Promise.allSettled([...working.values()]);
    },

    /** The queues this instance works now, to their end (another instance's are not seen). */
    async settled(): Promise<void> {
      await Promise.allSettled([...working.values()]);
    },
  };
}
