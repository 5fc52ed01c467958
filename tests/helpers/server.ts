// Starts the real bridge (src/server.ts, as main.ts builds it) on a free port, by default with
// STORE=memory, for tests that talk to it as WeChat and agents would. Only side effects differ.

import { loadConfig } from "../../src/config.ts";
import { createServer, type Effects, type Server } from "../../src/server.ts";
import type { Store } from "../../src/core/store.ts";
import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, type TestAgent } from "./agent.ts";

/** A running bridge. */
export interface TestBridge {
  port: number;
  base: string;
  wsBase: string;
  bridge: Server;
  store: Store;
  close(): Promise<void>;
}

/** Starts a bridge; `env` is read as the process environment would be; `hostname` is where it
 * listens ("::" takes IPv6 and IPv4 clients), 127.0.0.1 unless given. */
export async function startBridge(
  options: { env?: Record<string, string>; hostname?: string } & Effects = {},
): Promise<TestBridge> {
  const dataDir = Deno.makeTempDirSync({ prefix: "bridge-test-" });
  const config = loadConfig({
    HEARTBEAT_INTERVAL_S: "30",
    DATA_DIR: dataDir,
    // The store the configuration names, opened as main.ts opens it, on the test's clock.
    STORE: "memory",
    ...options.env,
  });
  const bridge = await createServer(config, options);
  const { port } = await bridge.listen({ port: 0, hostname: options.hostname ?? "127.0.0.1" });
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    wsBase: `ws://127.0.0.1:${port}`,
    bridge,
    store: bridge.store,
    async close() {
      await bridge.stop(1001, "server shutting down");
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}

/** Waits until the bridge routes to agent `id` (its socket is in the hub and the store knows
 * the agent), so that a webhook posted next goes to it. */
export async function waitRouted(server: TestBridge, id: string): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!server.bridge.hub.isOnline(id) || !(await server.store.isKnownAgent(id))) {
    if (Date.now() > deadline) throw new Error(`${id} never came online`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Connects agent `id` to `server` and waits until the bridge routes to it. */
export async function connectRoutedAgent(server: TestBridge, id: string): Promise<TestAgent> {
  const agent = await connectAgent(
    `${server.wsBase}/im_component/wx_official_account/msg?userid=${id}`,
  );
  await waitRouted(server, id);
  return agent;
}

/** A bridge whose replies go to a fake WeChat (tools/fake_wechat.ts) instead of the simulator. */
export interface WechatBridge {
  fake: FakeWechat;
  server: TestBridge;
  close(): Promise<void>;
}

/** Starts a fake WeChat for app `appId` and a bridge configured to send it replies; `env` adds
 * to the bridge's environment. */
export async function startWechatBridge(
  appId: string,
  options: { env?: Record<string, string> } = {},
): Promise<WechatBridge> {
  const fake = await startFakeWechat({ appId, secret: "secret" });
  const server = await startBridge({
    env: {
      WECHAT_APPID: appId,
      WECHAT_SECRET: "secret",
      WECHAT_API_BASE: fake.url,
      ...options.env,
    },
  }).catch(async (error) => {
    await fake.close();
    throw error;
  });
  return {
    fake,
    server,
    async close() {
      await server.close();
      await fake.close();
    },
  };
}
