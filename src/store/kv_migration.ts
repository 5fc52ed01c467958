// Moves a DATA_DIR kept by the Deno KV store (the default before SQLite) into the SQLite
// store, once, on the first start that finds a KV file and no SQLite one: contacts, agents and
// their seqs, logs, history, the waiting queue and WeChat retry keys, in one transaction.

import { getLogger } from "@logtape/logtape";
import {
  agentsPrefix,
  contactsPrefix,
  dedupPrefix,
  historyPrefix,
  logPrefix,
  queuePrefix,
} from "./kv_keys.ts";
import { contactRow, openSqliteDatabase } from "./sqlite_store.ts";
import type { AgentRecord, Contact } from "../core/store.ts";

const log = getLogger(["bridge", "store"]);
const MIN_LOG_RETENTION_MS = 48 * 3600_000;
const LIST_BATCH = 500;

/** What a migration moved, for the log line and the tests. */
export interface MigrationSummary {
  contacts: number;
  agents: number;
  log: number;
  history: number;
  queued: number;
  dedupKeys: number;
}

/** Options of a migration: when rows expire, counted from now. */
export interface MigrationOptions {
  retentionMs: number;
  now: () => number;
}

const asJson = (value: unknown): string =>
  typeof value === "string" ? value : JSON.stringify(value);

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Migrates `kvPath` into the SQLite file at `sqlitePath` when that file has never been
 * started (no `origin` in its meta table) and `kvPath` exists; then renames the KV files to
 * `….migrated`, kept as a backup. Returns what moved, or null when nothing was to do.
 */
export async function migrateKvStore(
  kvPath: string,
  sqlitePath: string,
  options: MigrationOptions,
): Promise<MigrationSummary | null> {
  const db = openSqliteDatabase(sqlitePath);
  try {
    const origin = db.prepare("SELECT value FROM meta WHERE key = 'origin'").get();
    if (origin !== undefined) return null;
    const setOrigin = db.prepare("INSERT INTO meta (key, value) VALUES ('origin', ?)");
    if (!await exists(kvPath)) {
      setOrigin.run(`new ${new Date(options.now()).toISOString()}`);
      return null;
    }
    if (typeof Deno.openKv !== "function") {
      throw new Error(
        `Cannot migrate ${kvPath} to SQLite: Deno KV needs --unstable-kv (deno.json sets it)`,
      );
    }
    const kv = await Deno.openKv(kvPath);
    let summary: MigrationSummary;
    try {
      summary = await copy(kv, db, options);
    } finally {
      kv.close();
    }
    try {
      // The copy and the mark commit together: a crash before here migrates again.
      setOrigin.run(`kv ${kvPath} ${new Date(options.now()).toISOString()}`);
      db.exec("COMMIT");
    } catch (error) {
      if (db.isTransaction) db.exec("ROLLBACK");
      throw error;
    }
    for (const suffix of ["", "-wal", "-shm"]) {
      if (await exists(kvPath + suffix)) {
        await Deno.rename(kvPath + suffix, `${kvPath}.migrated${suffix}`);
      }
    }
    log.info(
      "Moved the Deno KV store {kvPath} to SQLite {sqlitePath}: {contacts} contacts, {agents} agents, {log} log entries, {history} history items, {queued} waiting messages; the KV file is kept as {kvPath}.migrated",
      { kvPath, sqlitePath, ...summary },
    );
    return summary;
  } finally {
    db.close();
  }
}

/** Reads every record of the KV store and writes it to the SQLite tables, in a transaction
 * that the caller commits with the `origin` mark. */
async function copy(
  kv: Deno.Kv,
  db: ReturnType<typeof openSqliteDatabase>,
  options: MigrationOptions,
): Promise<MigrationSummary> {
  const batch = { batchSize: LIST_BATCH };
  const now = options.now();
  const logExpiry = now + Math.max(options.retentionMs, MIN_LOG_RETENTION_MS);
  const historyExpiry = now + options.retentionMs;
  const summary = { contacts: 0, agents: 0, log: 0, history: 0, queued: 0, dedupKeys: 0 };
  const contact = db.prepare(
    `INSERT OR REPLACE INTO contacts (follower_id, json, agent_key, at, closes_at)
     VALUES (?, ?, ?, ?, ?)`,
  );
  const agent = db.prepare("INSERT OR REPLACE INTO agents (agent_id, json) VALUES (?, ?)");
  const logRow = db.prepare(
    "INSERT OR REPLACE INTO log (agent_id, seq, frame, expires_at) VALUES (?, ?, ?, ?)",
  );
  const historyRow = db.prepare(
    "INSERT OR REPLACE INTO history (follower_id, n, item, expires_at) VALUES (?, ?, ?, ?)",
  );
  const queued = db.prepare(
    "INSERT OR REPLACE INTO queue (follower_id, n, stamp, envelope) VALUES (?, ?, ?, ?)",
  );
  const dedup = db.prepare("INSERT INTO dedup (keys, expires_at) VALUES (?, ?)");

  db.exec("BEGIN IMMEDIATE");
  try {
    for await (const e of kv.list({ prefix: contactsPrefix() }, batch)) {
      const c = (typeof e.value === "string" ? JSON.parse(e.value) : e.value) as Contact;
      contact.run(...contactRow(c, JSON.stringify(c)));
      summary.contacts++;
    }
    const agents = new Map<string, AgentRecord>();
    for await (const e of kv.list<AgentRecord>({ prefix: agentsPrefix() }, batch)) {
      agents.set(e.value.agent_id, e.value);
    }
    // The KV store recovered a seq from its log's last key: the log holds it, not the record.
    for await (const e of kv.list({ prefix: logPrefix() }, batch)) {
      const agentId = e.key[1] as string;
      const seq = e.key[2] as number;
      logRow.run(agentId, seq, asJson(e.value), logExpiry);
      let record = agents.get(agentId);
      if (!record) {
        record = { agent_id: agentId, seq: 0, cursor: 0, capacity: null, load: 0 };
        agents.set(agentId, record);
      }
      record.seq = Math.max(record.seq, seq);
      summary.log++;
    }
    for (const record of agents.values()) {
      agent.run(record.agent_id, JSON.stringify(record));
      summary.agents++;
    }
    for await (const e of kv.list({ prefix: historyPrefix() }, batch)) {
      historyRow.run(e.key[1] as string, e.key[2] as number, asJson(e.value), historyExpiry);
      summary.history++;
    }
    for await (
      const e of kv.list<{ envelope: unknown; stamp: number }>({ prefix: queuePrefix() }, batch)
    ) {
      queued.run(
        e.key[1] as string,
        e.key[2] as number,
        e.value.stamp,
        JSON.stringify(e.value.envelope),
      );
      summary.queued++;
    }
    for await (const e of kv.list<Array<[string, number]>>({ prefix: dedupPrefix() }, batch)) {
      const live = e.value.filter(([, expiry]) => expiry > now);
      if (live.length === 0) continue;
      dedup.run(JSON.stringify(live), Math.max(...live.map(([, expiry]) => expiry)));
      summary.dedupKeys += live.length;
    }
  } catch (error) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw error;
  }
  return summary;
}
