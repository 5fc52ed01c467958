// Starts the real bridge on a free port with in-memory storage, for tests that talk to it as
// WeChat and agents would.

import { type BridgeDeps, createBridge } from "../../src/bridge.ts";
import { loadConfig } from "../../src/config.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import type { Store } from "../../src/store/types.ts";

/** A running bridge. */
export interface TestBridge {
  port: number;
  base: string;
  wsBase: string;
  bridge: ReturnType<typeof createBridge>;
  store: Store;
  close(): Promise<void>;
}

/** Starts a bridge; `env` is read as the process environment would be. */
export function startBridge(
  options: { env?: Record<string, string>; store?: Store } & Partial<BridgeDeps> = {},
): Promise<TestBridge> {
  const dataDir = Deno.makeTempDirSync({ prefix: "bridge-test-" });
  const config = loadConfig({ HEARTBEAT_INTERVAL_S: "30", DATA_DIR: dataDir, ...options.env });
  const now = options.now ?? Date.now;
  const store = options.store ??
    createMemoryStore({
      companyId: config.companyId,
      now,
      newId: () => crypto.randomUUID(),
      dedupTtlMs: 3600_000,
    });
  const bridge = createBridge(config, {
    mediaSecret: "test media url secret, 32 bytes or more",
    journalMedia: false,
    ...options,
    store,
    now,
  });
  const controller = new AbortController();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: controller.signal, onListen: () => {} },
    bridge.handler,
  );
  bridge.startHeartbeat();
  const port = server.addr.port;
  return Promise.resolve({
    port,
    base: `http://127.0.0.1:${port}`,
    wsBase: `ws://127.0.0.1:${port}`,
    bridge,
    store,
    async close() {
      await bridge.shutdown();
      controller.abort();
      await server.finished;
      await bridge.intake?.drain();
      await store.close();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  });
}
