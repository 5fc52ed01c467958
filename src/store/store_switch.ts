// A restart that changes STORE on one DATA_DIR: SQLite keeps `bridge.sqlite` and its journal,
// Deno KV `bridge.kv`, and each opened its own file only, so what one took was hidden from the
// other without a word (a follower's message answered `success` under STORE=kv never reached an
// agent back on SQLite). A start refuses when the other store's file holds data written after
// its own, and says at warn that an older one is not read. The first start on SQLite of a KV
// DATA_DIR is the migration's (kv_migration.ts), not this.

import { DatabaseSync } from "node:sqlite";
import { getLogger } from "@logtape/logtape";
import { contactsPrefix, logPrefix, queuePrefix } from "./kv_keys.ts";
import { journalDirOf } from "./sqlite_journal_file.ts";

const log = getLogger(["bridge", "store"]);

/**
 * Throws when starting `store` on `dataDir` would hide data the other store wrote after this
 * one's last write; logs at warn when the other's data is older (it is not read either).
 * Reads the files only: neither store's file is opened for writing, nor its time changed.
 */
export async function checkStoreSwitch(dataDir: string, store: "sqlite" | "kv"): Promise<void> {
  const sqlite = `${dataDir}/bridge.sqlite`;
  const kv = `${dataDir}/bridge.kv`;
  const sqliteAt = await lastWrite([sqlite, `${sqlite}-wal`], journalDirOf(sqlite));
  const kvAt = await lastWrite([kv, `${kv}-wal`]);
  if (store === "kv") {
    if (sqliteAt === null || !sqliteHasData(sqlite)) return;
    if (kvAt !== null && kvAt >= sqliteAt) {
      log.warn(
        "{sqlite} holds the SQLite store's data, older than {kv}: STORE=kv does not read it",
        { sqlite, kv },
      );
      return;
    }
    throw new Error(
      `Cannot start with STORE=kv: ${sqlite} holds the SQLite store's contacts, waiting ` +
        `messages and history, written ${
          kvAt === null ? "and no bridge.kv is there" : `after ${kv}`
        }, ` +
        "and the KV store would not see them. Start without STORE=kv (SQLite, the default), or " +
        "move bridge.sqlite (with bridge.sqlite-wal and bridge.sqlite-shm) and bridge.journal out of " +
        "DATA_DIR to run on Deno KV without them",
    );
  }
  // No SQLite file yet, or one the migration has not marked: the migration moves bridge.kv.
  if (kvAt === null || sqliteAt === null || !sqliteStarted(sqlite)) return;
  if (!(await kvHasData(kv))) return;
  if (kvAt <= sqliteAt) {
    log.warn(
      "{kv} holds Deno KV data older than {sqlite}: the SQLite store does not read it " +
        "(STORE=kv does); move it out of DATA_DIR once it is not needed",
      { kv, sqlite },
    );
    return;
  }
  throw new Error(
    `Cannot start on SQLite: ${kv} holds data a run with STORE=kv took after ${sqlite} was ` +
      "last written, which the SQLite store does not have (its followers' messages would never " +
      "reach an agent). Start with STORE=kv to serve it, or move bridge.kv (with bridge.kv-wal " +
      "and bridge.kv-shm) out of DATA_DIR to start on SQLite without it",
  );
}

/** The latest modification time (ms) of `files` and of the `.log` segments in `dir`; null
 * when none of them is there. */
async function lastWrite(files: string[], dir?: string): Promise<number | null> {
  const paths = [...files];
  if (dir !== undefined) {
    try {
      for await (const entry of Deno.readDir(dir)) {
        if (entry.isFile && entry.name.endsWith(".log")) paths.push(`${dir}/${entry.name}`);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  let latest: number | null = null;
  for (const path of paths) {
    try {
      const { mtime, size } = await Deno.stat(path);
      // An empty WAL holds no write: a read-only look creates one (and a checkpoint empties it).
      if (path.endsWith("-wal") && size === 0) continue;
      latest = Math.max(latest ?? 0, mtime?.getTime() ?? 0);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  return latest;
}

/** Whether the SQLite store at `path` holds anything a start on KV would hide: a contact, a
 * log entry or a waiting message in its tables, or a journal segment not yet let go. */
function sqliteHasData(path: string): boolean {
  try {
    for (const entry of Deno.readDirSync(journalDirOf(path))) {
      if (
        entry.name.endsWith(".log") && Deno.statSync(`${journalDirOf(path)}/${entry.name}`).size
      ) {
        return true;
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return readOnly(
    path,
    (db) =>
      ["contacts", "log", "queue"].some((table) =>
        db.prepare(`SELECT 1 FROM ${table} LIMIT 1`).get() !== undefined
      ),
    true,
  );
}

/** Whether a start has marked the SQLite file (the migration's `origin`). */
function sqliteStarted(path: string): boolean {
  return readOnly(
    path,
    (db) => db.prepare("SELECT value FROM meta WHERE key = 'origin'").get() !== undefined,
    false,
  );
}

/** `read` on a read-only connection to `path`; `otherwise` when the file cannot be read so
 * (no such table: a file from before them). */
function readOnly<T>(path: string, read: (db: DatabaseSync) => T, otherwise: T): T {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(path, { readOnly: true });
    return read(db);
  } catch {
    return otherwise;
  } finally {
    db?.close();
  }
}

/** Whether the KV store at `path` holds a contact, a log entry or a waiting message that has not
 * expired. Read as the SQLite file it is, read-only: opened as a Deno KV store, KV sweeps its
 * expired entries (the signed callbacks' bodies) and so writes the file, which then looks newer
 * than bridge.sqlite to the next start. */
async function kvHasData(path: string): Promise<boolean> {
  const now = Date.now();
  const found = readOnly<boolean | null>(path, (db) => {
    const query = db.prepare(
      "SELECT 1 FROM kv WHERE k >= ? AND k < ? AND (expiration_ms < 0 OR expiration_ms > ?) " +
        "LIMIT 1",
    );
    return [contactsPrefix(), logPrefix(), queuePrefix()].some((prefix) => {
      const low = kvKeyPrefixBytes(prefix);
      const high = new Uint8Array([...low, 0xff]);
      return query.get(low, high, now) !== undefined;
    });
  }, null);
  if (found !== null) return found;
  // A file this build cannot read so: as KV reads it, then its time put back.
  if (typeof Deno.openKv !== "function") return true;
  const { atime, mtime } = await Deno.stat(path);
  const kv = await Deno.openKv(path);
  try {
    for (const prefix of [contactsPrefix(), logPrefix(), queuePrefix()]) {
      for await (const _ of kv.list({ prefix }, { limit: 1 })) return true;
    }
    return false;
  } finally {
    kv.close();
    if (mtime !== null) await Deno.utime(path, atime ?? mtime, mtime);
  }
}

/** The bytes Deno KV's tuple encoding gives a key of strings (each `0x02`, its UTF-8 with `0x00`
 * escaped as `0x00 0xff`, then `0x00`), which every longer key under it starts with. */
function kvKeyPrefixBytes(key: Deno.KvKey): Uint8Array {
  const out: number[] = [];
  for (const part of key) {
    if (typeof part !== "string") throw new TypeError("Only string key parts are encoded here");
    out.push(0x02);
    for (const byte of new TextEncoder().encode(part)) {
      out.push(byte);
      if (byte === 0x00) out.push(0xff);
    }
    out.push(0x00);
  }
  return new Uint8Array(out);
}
