// Follower messages that wait for their media: journaled to disk before WeChat is answered,
// then fetched and converted in the background and handed to the switchboard with their URLs.
// A follower's later messages queue behind its media so it is read in the order it was sent;
// a restart picks the journal up where it stopped.

import { getLogger } from "@logtape/logtape";
import type { InboundItem, InboundOutcome } from "../core/store.ts";
import type { MediaInput, MediaPipeline } from "./pipeline.ts";

const log = getLogger(["bridge", "media"]);

const MEDIA_TYPES = new Set(["image", "voice", "video", "shortvideo"]);

/** A journaled item and where its media URLs should point. */
export interface Job {
  item: InboundItem;
  publicBase: string;
}

/** What the intake needs. */
export interface MediaIntakeDeps {
  pipeline: MediaPipeline;
  /** Where pending jobs are journaled; null keeps them in memory only (tests, STORE=memory). */
  journalDir: string | null;
  accept(item: InboundItem): Promise<InboundOutcome>;
  /** A job dropped by a forget after its media was stored: no history names those files, and
   * the forget, which listed its follower's files before, does not know them. */
  discarded?(item: InboundItem): void;
}

/** Whether a message carries media that must be fetched first. */
export function hasMedia(item: InboundItem): boolean {
  return MEDIA_TYPES.has(item.envelope.data.msg_type) &&
    item.envelope.data.msg["media_id"] !== undefined;
}

/** The jobs journaled in `dir` (file names, oldest first); one that cannot be read is left. */
export async function readJournal(dir: string): Promise<Array<{ name: string; job: Job }>> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(".json") && !entry.name.startsWith(".")) {
        names.push(entry.name);
      }
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  names.sort();
  const found: Array<{ name: string; job: Job }> = [];
  for (const name of names) {
    try {
      found.push({ name, job: JSON.parse(await Deno.readTextFile(`${dir}/${name}`)) as Job });
    } catch (error) {
      log.error("Cannot read journaled media job {name}: {error}", { name, error });
    }
  }
  return found;
}

/** Fetches and converts the item's media, if it has any, and puts its URLs in its `msg`. */
export async function addMedia(
  pipeline: MediaPipeline,
  item: InboundItem,
  publicBase: string,
): Promise<void> {
  if (!hasMedia(item)) return;
  const msg = item.envelope.data.msg;
  const input: MediaInput = {
    msgType: item.envelope.data.msg_type as MediaInput["msgType"],
    mediaId: (msg["media_id"] as string) || undefined,
    thumbMediaId: (msg["thumb_media_id"] as string) || undefined,
    picUrl: (msg["pic_url"] as string) || undefined,
    format: (msg["format"] as string) || undefined,
  };
  // What the pipeline reports is its own: a tag of the same name in the follower's XML
  // (<ThumbPath>, <OriginalPath>, <MediaUrl>) must not stand in for a file it could not give.
  for (const field of PIPELINE_FIELDS) delete msg[field];
  Object.assign(msg, await pipeline.process(input, publicBase));
}

/** The `msg` fields only the pipeline writes (MediaResult's), and `media_url`, the console's. */
const PIPELINE_FIELDS = [
  "media_path",
  "original_path",
  "thumb_path",
  "content_type",
  "size",
  "error",
  "media_url",
] as const;

/** A job's journal file, and whether a forget dropped it. */
interface Ticket {
  name: string | null;
  dropped: boolean;
  /** What its journal file holds, to write it again (its directory deleted). */
  job: Job;
  /** Its journal file's first write: a forget deletes the file only once it is there. */
  written: Promise<void>;
}

/** How often the journal's directory is looked at while jobs are pending (as the store's file). */
const LOOK_MS = 1000;

/** The directory's `dev:ino`; "" when it is not there. */
async function identity(path: string): Promise<string> {
  try {
    const info = await Deno.stat(path);
    return `${info.dev}:${info.ino}`;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  }
}

/** A directory held open, and its `dev:ino`. */
interface HeldDir {
  handle: Deno.FsFile;
  id: string;
}

/** Opens the directory at `path` and keeps it open (its inode stays its own). */
async function holdDir(path: string): Promise<HeldDir> {
  const handle = await Deno.open(path, { read: true });
  try {
    const info = await handle.stat();
    return { handle, id: `${info.dev}:${info.ino}` };
  } catch (error) {
    handle.close();
    throw error;
  }
}

/** Creates the intake. */
export function createMediaIntake(deps: MediaIntakeDeps): MediaIntake {
  const chains = new Map<string, Promise<void>>();
  let counter = 0;
  const inFlight = new Set<Promise<void>>();
  /** Each follower's jobs not done yet: a forget drops them and deletes their journal files. */
  const pending = new Map<string, Set<Ticket>>();
  /** The store call of the job being stored now, per follower: a forget waits for it. */
  const storing = new Map<string, Promise<unknown>>();
  /** Each follower's forget under way: one after it (WeChat's retry of the revoke) waits. */
  const forgetting = new Map<string, Promise<void>>();

  const fileOf = (name: string) => `${deps.journalDir}/${name}`;
  /**
   * The journal directory the pending jobs' files are in (null before it is known), held open:
   * one made again at its path then cannot reuse its inode number. Compared by number only, a
   * directory removed and made again at once was often given the same one (ext4), and the jobs
   * pending were never journaled in it again.
   */
  let held: HeldDir | null = null;
  let looking: ReturnType<typeof setInterval> | undefined;
  let look: Promise<void> = Promise.resolve();
  let stopped = false;

  /**
   * Writes every pending job's file again if their directory is not the one they were written
   * in (DATA_DIR removed whole: made again, or not yet): each was answered `success` once
   * journaled, and a restart finds them only there.
   */
  async function journalAgain(): Promise<void> {
    if (deps.journalDir === null) return;
    const found = await identity(deps.journalDir);
    if (held === null) {
      if (found !== "") held = await holdDir(deps.journalDir);
      return;
    }
    if (found === held.id) return;
    log.error(
      "{dir} was deleted while the bridge ran: the media jobs pending are journaled again",
      {
        dir: deps.journalDir,
      },
    );
    await Deno.mkdir(deps.journalDir, { recursive: true });
    const made = await holdDir(deps.journalDir);
    try {
      for (const tickets of [...pending.values()]) {
        for (const ticket of [...tickets]) {
          // Still being written the first time (or that failed): not this look's to write.
          await ticket.written.catch(() => {});
          if (ticket.name === null || ticket.dropped || !tickets.has(ticket)) continue;
          await write(ticket.name, ticket.job);
          // Done while it was written: its file went before this one came.
          if (!tickets.has(ticket) || ticket.dropped) {
            await Deno.remove(fileOf(ticket.name)).catch(() => {});
          }
        }
      }
    } catch (error) {
      // Taken as done, a write that failed (no room) left the rest in no file for good: the
      // next look writes them all again.
      made.handle.close();
      throw error;
    }
    held.handle.close();
    held = made;
  }

  /** journalAgain(), one at a time, each second while jobs are pending. */
  function lookAgain(): Promise<void> {
    look = look.then(journalAgain).catch((error) => {
      log.warn("Cannot journal the media jobs again: {error}", { error });
    });
    return look;
  }

  function watch(): void {
    if (looking !== undefined || stopped || deps.journalDir === null) return;
    looking = setInterval(() => {
      if (pending.size > 0) return void lookAgain();
      clearInterval(looking);
      looking = undefined;
    }, LOOK_MS);
    Deno.unrefTimer(looking);
  }

  /** Writes a job's file whole (a temporary file renamed). */
  async function write(name: string, job: Job): Promise<void> {
    const tmp = fileOf(`.${name}.tmp`);
    const text = JSON.stringify(job);
    try {
      await Deno.writeTextFile(tmp, text);
    } catch (error) {
      // Deleted with DATA_DIR while the bridge ran: every media message would fail until a
      // restart made it again (the jobs pending are written there again by the next look).
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      await Deno.mkdir(deps.journalDir!, { recursive: true });
      await Deno.writeTextFile(tmp, text);
    }
    await Deno.rename(tmp, fileOf(name));
  }

  /** A new job's journal file name (null: no journal). */
  function nameFor(job: Job): string | null {
    if (deps.journalDir === null) return null;
    return `${job.item.receivedAt.toString().padStart(15, "0")}-${
      (++counter).toString().padStart(8, "0")
    }-${crypto.randomUUID().slice(0, 8)}.json`;
  }

  /** Counts the job among the follower's pending ones, for a forget to drop from now on. */
  function enlist(job: Job, name: string | null, written: Promise<void>): Ticket {
    const followerId = job.item.followerId;
    const ticket: Ticket = { name, dropped: false, job, written };
    let tickets = pending.get(followerId);
    if (!tickets) pending.set(followerId, tickets = new Set());
    tickets.add(ticket);
    return ticket;
  }

  /** Takes the ticket out of the follower's pending ones (done, or never journaled). */
  function unlist(followerId: string, ticket: Ticket): boolean {
    const left = pending.get(followerId);
    const was = left?.delete(ticket) ?? false;
    if (left?.size === 0) pending.delete(followerId);
    return was;
  }

  async function run(job: Job, ticket: Ticket): Promise<void> {
    await addMedia(deps.pipeline, job.item, job.publicBase);
    // Forgotten while its media was fetched: its data must not come back, its files neither.
    if (ticket.dropped) return deps.discarded?.(job.item);
    const followerId = job.item.followerId;
    const stored = deps.accept(job.item);
    storing.set(followerId, stored);
    try {
      await stored;
    } finally {
      if (storing.get(followerId) === stored) storing.delete(followerId);
    }
  }

  /** Makes `next` the follower's last step: what it is given next waits for it. */
  function chain(followerId: string, next: Promise<void>): void {
    chains.set(followerId, next);
    inFlight.add(next);
    next.finally(() => {
      inFlight.delete(next);
      if (chains.get(followerId) === next) chains.delete(followerId);
    });
  }

  /** Runs a job after the follower's earlier ones; retries a failed store briefly. */
  function schedule(ticket: Ticket): Promise<void> {
    const { job, name } = ticket;
    const followerId = job.item.followerId;
    const previous = chains.get(followerId) ?? Promise.resolve();
    watch();
    const next = previous.then(async () => {
      for (let attempt = 0; !ticket.dropped; attempt++) {
        try {
          await run(job, ticket);
          break;
        } catch (error) {
          if (attempt >= 5) {
            log.error(
              "Cannot store a media message from {follower_id}; it stays journaled: {error}",
              {
                follower_id: followerId,
                error,
              },
            );
            return;
          }
          await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
        }
      }
      unlist(followerId, ticket);
      if (name !== null) await Deno.remove(fileOf(name)).catch(() => {});
    });
    chain(followerId, next);
    return next;
  }

  return {
    /** Whether this item must go through the intake (media, or a follower with media pending). */
    wants(item: InboundItem): boolean {
      return hasMedia(item) || chains.has(item.followerId);
    },

    /** Journals the item and schedules it; resolves once it is safe to answer WeChat. */
    async submit(item: InboundItem, publicBase: string): Promise<void> {
      const job = { item, publicBase };
      const name = nameFor(job);
      // Pending before its file is written: a revoke that comes meanwhile is after it, and drops
      // it (scheduled only once written, it would be stored after the forget).
      const written = name === null ? Promise.resolve() : write(name, job);
      const ticket = enlist(job, name, written);
      try {
        await written;
      } catch (error) {
        // Not journaled: WeChat is not answered `success` and sends it again.
        unlist(item.followerId, ticket);
        throw error;
      }
      // Forgotten while it was written: the forget deletes its file once written, and it is
      // never fetched.
      if (!ticket.dropped) schedule(ticket);
    },

    /** Re-runs jobs a previous process journaled but did not finish, oldest first. */
    async recover(): Promise<number> {
      if (deps.journalDir === null) return 0;
      await Deno.mkdir(deps.journalDir, { recursive: true });
      held?.handle.close();
      held = await holdDir(deps.journalDir);
      const found = await readJournal(deps.journalDir);
      for (const { name, job } of found) schedule(enlist(job, name, Promise.resolve()));
      return found.length;
    },

    /**
     * The follower is being forgotten (user_authorization_revoke): its pending jobs are dropped
     * and their journal files deleted, then `forgetStored` (the store's forget) runs once none
     * can be stored any more (one being stored now has been, so it is deleted too). The
     * follower's messages that come meanwhile wait for it: they are after the forget, and kept.
     */
    forget(followerId: string, forgetStored: () => Promise<void>): Promise<void> {
      // A job that gave up (its store kept failing) is still journaled: its file goes too.
      if (!chains.has(followerId) && !pending.has(followerId)) return forgetStored();
      log.info("{follower_id} is forgotten: its media messages still pending are dropped", {
        follower_id: followerId,
      });
      // Taken out first: a message journaled from now on is after the forget.
      const dropped = pending.get(followerId) ?? new Set<Ticket>();
      pending.delete(followerId);
      for (const ticket of dropped) ticket.dropped = true;
      const before = forgetting.get(followerId);
      const forgotten = (async () => {
        // Or the first one's store call could come after a message that the second let by.
        await before;
        for (const { name, written } of dropped) {
          // A file still being written would be left after the forget returned.
          await written.catch(() => {});
          if (name !== null) await Deno.remove(fileOf(name)).catch(() => {});
        }
        await storing.get(followerId)?.catch(() => {});
        await forgetStored();
      })();
      // The dropped jobs hold nothing back; a forget that failed (WeChat retries it) neither.
      const done = forgotten.catch(() => {});
      forgetting.set(followerId, done);
      done.then(() => {
        if (forgetting.get(followerId) === done) forgetting.delete(followerId);
      });
      chain(followerId, done);
      return forgotten;
    },

    /** Jobs under way stay journaled for the next start: their files are looked at once more
     * (drain waits for that too). */
    stop(): Promise<void> {
      clearInterval(looking);
      looking = undefined;
      stopped = true;
      const last = pending.size > 0 ? lookAgain() : look;
      return last.then(() => {
        held?.handle.close();
        held = null;
      });
    },

    /** Waits for every job in flight (shutdown, tests), after the last look at their files. */
    async drain(): Promise<void> {
      await look;
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
    },

    async settled(): Promise<void> {
      await Promise.allSettled([...inFlight]);
    },
  };
}

/** A media intake: this one, or the shared one (shared_intake.ts) when instances share Redis. */
export interface MediaIntake {
  wants(item: InboundItem): boolean;
  submit(item: InboundItem, publicBase: string): Promise<void>;
  recover(): Promise<number>;
  /** Drops the follower's pending media and runs `forgetStored` (the store's forget) before
   * any of the follower's later messages is stored. */
  forget(followerId: string, forgetStored: () => Promise<void>): Promise<void>;
  /** Stops looking for work; resolves once what is pending is where a restart finds it. */
  stop(): Promise<void>;
  drain(): Promise<void>;
  /** Resolves once the jobs running now are stored (or failed): their history names their
   * files, which a forget's deletion must then see. */
  settled(): Promise<void>;
}
