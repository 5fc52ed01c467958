// A forgotten follower's media files (user_authorization_revoke): the keys its history names are
// written to a record before the store forgets it, then deleted from the storage in the
// background once no history names them; a record a crash left is finished at the next start.

import { getLogger } from "@logtape/logtape";
import type { Store } from "../core/store.ts";
import { isMediaKey, type MediaStorage } from "./storage.ts";

const log = getLogger(["bridge", "media", "forget"]);

/** A key as the bridge's media URLs carry it (`…/media/KEY?…`), in any field of an item. */
const KEY_IN_URL = /\/media\/([0-9a-f]{64}\.[a-z0-9]{1,8})\?/g;
/** A record that could not be finished (the store or the bucket failing) is tried again. */
const RETRY_MS = 60_000;
/** An agent's upload is sent as a reply some time after: its file is kept this long. */
export const UPLOAD_HOLD_MS = 60 * 60_000;
/** Records one sweep decides with one look at every history. */
const BATCH_RECORDS = 100;

/** What the deletion needs. */
export interface ForgottenFilesDeps {
  /** The records' directory (DATA_DIR/media-forgotten). */
  dir: string;
  storage: Pick<MediaStorage, "remove">;
  /** Which of the keys some history still names (Store.mediaInHistory). */
  named(keys: readonly string[]): Promise<Set<string>>;
  /** Which of the keys an agent's upload on another instance holds (Store.mediaHeld). */
  heldElsewhere?(keys: readonly string[]): Promise<Set<string>>;
  /** Resolves once the media jobs running now are stored (MediaIntake.settled). */
  settled(): Promise<void>;
  now: () => number;
}

/** The media keys a serialized history item names. */
export function mediaKeysIn(text: string): string[] {
  return [...text.matchAll(KEY_IN_URL)].map((m) => m[1]!);
}

/** Every media key a follower's history names, read page by page (newest first). */
export async function followerMediaKeys(
  followerId: string,
  readHistory: Store["readHistory"],
): Promise<string[]> {
  const keys = new Set<string>();
  let before: number | null = null;
  do {
    const page = await readHistory(followerId, before, 500);
    for (const item of page.items) {
      for (const key of mediaKeysIn(JSON.stringify(item))) keys.add(key);
    }
    before = page.nextBefore;
  } while (before !== null);
  return [...keys];
}

/** Creates the record keeper and deleter of forgotten followers' files. */
export function createForgottenFiles(deps: ForgottenFilesDeps) {
  /** Keys a sweep is deciding on: a put of one meanwhile keeps it, or writes it again after
   * its removal. A put never waits for the decision, which waits for the jobs that put. */
  const deleting = new Map<string, { touched: boolean; removing?: Promise<void> }>();
  /** Keys of agents' uploads, by when: the reply naming one may not be written yet. */
  const uploads = new Map<string, number>();
  let sweeping: Promise<void> = Promise.resolve();
  let again = false;
  let retry: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  const held = (key: string) => (uploads.get(key) ?? -Infinity) > deps.now() - UPLOAD_HOLD_MS;

  function scheduleRetry(): void {
    if (stopped || retry !== undefined) return;
    retry = setTimeout(() => {
      retry = undefined;
      void sweep();
    }, RETRY_MS);
    Deno.unrefTimer(retry);
  }

  /** A record's keys; null when there is nothing to finish (gone, or cut and removed). */
  async function readRecord(path: string): Promise<string[] | null> {
    try {
      const parsed = JSON.parse(await Deno.readTextFile(path)) as { keys?: unknown };
      return Array.isArray(parsed.keys) ? parsed.keys.filter((k) => isMediaKey(String(k))) : [];
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return null;
      if (!(error instanceof SyntaxError)) throw error;
      // Cut by a crash before its rename cannot happen; anything else is not ours to read.
      log.warn("Cannot read forgotten media record {path}: {error}", { path, error });
      await Deno.remove(path);
      return null;
    }
  }

  /** Finishes these records with one look at the histories: deletes their unnamed keys; keeps
   * the held ones for later. */
  async function finish(records: ReadonlyArray<{ path: string; keys: string[] }>): Promise<void> {
    const keys = [...new Set(records.flatMap((r) => r.keys))];
    const marks = new Map(keys.map((key) => {
      const mark = { touched: false } as { touched: boolean; removing?: Promise<void> };
      deleting.set(key, mark);
      return [key, mark] as const;
    }));
    try {
      // A job running now may store the same bytes for another follower: its history, once
      // written, names the file.
      await deps.settled();
      const named = await deps.named(keys);
      const unnamed = keys.filter((key) => !named.has(key));
      const elsewhere = unnamed.length > 0 && deps.heldElsewhere
        ? await deps.heldElsewhere(unnamed)
        : new Set<string>();
      const kept = new Set<string>();
      for (const key of unnamed) {
        const mark = marks.get(key)!;
        // Stored again since the mark (another follower's job, just begun): its history is
        // not written yet; the next try sees it.
        if (mark.touched || held(key) || elsewhere.has(key)) kept.add(key);
        else {
          mark.removing = deps.storage.remove?.(key) ?? Promise.resolve();
          await mark.removing;
        }
      }
      for (const { path, keys: own } of records) {
        const left = own.filter((key) => kept.has(key));
        if (left.length === 0) await Deno.remove(path);
        else await writeRecord(path, left);
      }
      if (kept.size > 0) scheduleRetry();
    } finally {
      for (const [key, mark] of marks) if (deleting.get(key) === mark) deleting.delete(key);
    }
  }

  async function sweepOnce(): Promise<void> {
    let names: string[];
    try {
      names = [];
      for await (const e of Deno.readDir(deps.dir)) {
        if (e.isFile && e.name.endsWith(".json")) names.push(e.name);
      }
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    // In batches: a flood of revokes is one scan of the histories a batch, not one a follower.
    names.sort();
    for (let i = 0; i < names.length; i += BATCH_RECORDS) {
      const records: Array<{ path: string; keys: string[] }> = [];
      for (const name of names.slice(i, i + BATCH_RECORDS)) {
        const path = `${deps.dir}/${name}`;
        try {
          const keys = await readRecord(path);
          if (keys !== null) records.push({ path, keys });
        } catch (error) {
          log.warn("Cannot read forgotten media record {name} yet: {error}", { name, error });
          scheduleRetry();
        }
      }
      if (records.length === 0) continue;
      try {
        await finish(records);
      } catch (error) {
        log.warn("Cannot delete forgotten followers' media yet ({count} records): {error}", {
          count: records.length,
          error,
        });
        scheduleRetry();
      }
    }
  }

  /** Runs every record now, one sweep at a time; resolves when this call's sweep is done. */
  function sweep(): Promise<void> {
    if (stopped) return sweeping;
    again = true;
    sweeping = sweeping.then(async () => {
      if (!again || stopped) return;
      again = false;
      await sweepOnce();
    }).catch((error) => log.error("Forgotten media sweep failed: {error}", { error }));
    return sweeping;
  }

  return {
    /** Writes the record of a follower's keys, durably, before the store forgets it. */
    async remember(keys: readonly string[]): Promise<void> {
      if (keys.length === 0) return;
      await Deno.mkdir(deps.dir, { recursive: true });
      const name = `${deps.now().toString().padStart(15, "0")}-${crypto.randomUUID()}.json`;
      await writeRecord(`${deps.dir}/${name}`, [...new Set(keys)]);
    },

    sweep,

    /** The storage every put goes through: a put of a key a sweep is deciding on keeps the
     * file, or writes it again once removed. Outside a sweep it costs one Map lookup. */
    guard<S extends MediaStorage>(storage: S): S {
      return {
        ...storage,
        async put(bytes: Uint8Array, ext: string) {
          const key = await storage.put(bytes, ext);
          const mark = deleting.size === 0 ? undefined : deleting.get(key);
          if (mark === undefined) return key;
          mark.touched = true;
          if (mark.removing === undefined) return key;
          await mark.removing.catch(() => {});
          return storage.put(bytes, ext);
        },
      };
    },

    /** Notes an agent's upload: a forget keeps its file for UPLOAD_HOLD_MS. */
    uploaded(key: string): void {
      const now = deps.now();
      if (uploads.size > 10_000) {
        for (const [k, at] of uploads) if (at <= now - UPLOAD_HOLD_MS) uploads.delete(k);
      }
      uploads.set(key, now);
    },

    /** Stops retrying; resolves once a sweep under way is done. */
    stop(): Promise<void> {
      stopped = true;
      clearTimeout(retry);
      return sweeping;
    },
  };
}

/** Writes `keys` to `path` through a synced temp file: a crash leaves the old one or the new. */
async function writeRecord(path: string, keys: readonly string[]): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify({ keys }));
  const file = await Deno.open(tmp, { write: true });
  try {
    await file.syncData();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
}
