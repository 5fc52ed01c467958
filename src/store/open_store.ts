// Picks the store the configuration asks for: SQLite under DATA_DIR (the default, migrating
// a Deno KV store found there), Deno KV (`STORE=kv`), memory (`STORE=memory`, nothing
// survives a restart), or Redis (`REDIS_URL`, several instances).

import { openKvStore } from "./kv_store.ts";
import { migrateKvStore } from "./kv_migration.ts";
import { createMemoryStore } from "./memory_store.ts";
import { checkStoreSwitch } from "./store_switch.ts";
import { openSqliteStore } from "./sqlite_store.ts";
import type { Store } from "../core/store.ts";
import { DEDUP_TTL_MS } from "../wechat/request_policy.ts";

const DAY_MS = 24 * 3600_000;

/** HISTORY_RETENTION_DAYS in ms: how long after its last message a conversation is kept. */
export function historyRetentionMsOf(config: Pick<StoreConfig, "historyRetentionDays">): number {
  return config.historyRetentionDays * DAY_MS;
}

/** The settings that choose and size the store (a part of Config). */
export interface StoreConfig {
  dataDir: string;
  companyId: string;
  redisUrl?: string;
  store: "sqlite" | "kv" | "memory";
  storeFsync: boolean;
  heartbeatIntervalS: number;
  historyRetentionDays: number;
}

/** Opens the configured store; `now` is the server's clock (tests swap it). */
export async function openStore(config: StoreConfig, now: () => number = Date.now): Promise<Store> {
  const options = {
    companyId: config.companyId,
    now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: DEDUP_TTL_MS,
  };
  if (config.redisUrl) {
    // Several instances share it; presence is renewed every heartbeat and lapses after two.
    // Loaded only when asked for, so a single machine never loads the Redis client.
    const { createRedisStore } = await import("./redis_store.ts");
    return await createRedisStore({
      ...options,
      url: config.redisUrl,
      heartbeatMs: config.heartbeatIntervalS * 1000,
      historyRetentionMs: historyRetentionMsOf(config),
    });
  }
  if (config.store === "memory") return createMemoryStore(options);
  await Deno.mkdir(config.dataDir, { recursive: true });
  // History as configured; agents' logs the same, but at least 48 hours (the stores' rule).
  const retentionMs = historyRetentionMsOf(config);
  const kvPath = `${config.dataDir}/bridge.kv`;
  // Before either file is opened: opening one changes its time, which the check compares.
  await checkStoreSwitch(config.dataDir, config.store);
  if (config.store === "kv") return await openKvStore(kvPath, { ...options, retentionMs });
  const sqlitePath = `${config.dataDir}/bridge.sqlite`;
  await migrateKvStore(kvPath, sqlitePath, { retentionMs, now: options.now });
  return await openSqliteStore(sqlitePath, { ...options, retentionMs, fsync: config.storeFsync });
}
