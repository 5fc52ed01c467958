// The entry point: reads the configuration, sets up logging, opens the store, serves the
// bridge, and shuts it down cleanly on SIGTERM or SIGINT. Nothing else has side effects.

import { getLogger } from "@logtape/logtape";
import { createBridge } from "./src/bridge.ts";
import { loadConfig } from "./src/config.ts";
import { configureLogging } from "./src/logging.ts";
import { openStore } from "./src/store/open_store.ts";
import { loadMediaSecret } from "./src/media/url_secret.ts";

const SHUTDOWN_LIMIT_MS = 10_000;
/** How long requests already in flight at SIGTERM may take before sockets close anyway. */
const IN_FLIGHT_LIMIT_MS = 5_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(Deno.env.toObject());
  } catch (error) {
    // Logging is not configured yet: this is the one message that goes straight to stderr.
    // deno-lint-ignore no-console
    console.error((error as Error).message);
    Deno.exit(2);
  }
  await configureLogging({ format: config.logFormat, level: config.logLevel });
  const log = getLogger(["bridge", "main"]);
  let bridge;
  let store;
  try {
    store = await openStore(config);
    const mediaSecret = await loadMediaSecret(config.dataDir, config.agentSecret);
    bridge = createBridge(config, { store, mediaSecret });
    const resumed = await bridge.intake?.recover();
    if (resumed) {
      log.info("Resuming {count} media messages from before the restart", { count: resumed });
    }
  } catch (error) {
    log.fatal("Cannot start: {message}", { message: (error as Error).message });
    await store?.close();
    Deno.exit(2);
  }
  if (!config.agentSecret) {
    log.warn("AGENT_SECRET is not set: any client can connect as any agent (open dev mode)");
  }
  if (!config.wechatToken) {
    log.warn("WECHAT_TOKEN is not set: anyone who reaches the port can post as any follower");
  }
  if (bridge.demo) {
    log.info("No WeChat credentials: demo mode, replies go to the follower simulator");
  }

  // While stopping, new requests are turned away (WeChat retries, a balancer moves on), and the
  // ones in flight finish before the sockets close: whatever was answered `success` is delivered.
  let stopping = false;
  let inFlight = 0;
  const handler = async (req: Request): Promise<Response> => {
    if (stopping) {
      const message = "Server shutting down: retry";
      return new Response(JSON.stringify({ error: message, result: { code: -1, message } }), {
        status: 503,
        headers: { "content-type": "application/json; charset=utf-8", "retry-after": "1" },
      });
    }
    inFlight++;
    try {
      return await bridge.handler(req);
    } finally {
      inFlight--;
    }
  };
  const server = Deno.serve({
    port: config.port,
    hostname: config.hostname,
    onListen: ({ hostname, port }) =>
      log.info("Bridge listening on http://{hostname}:{port} (store: {store})", {
        hostname,
        port,
        store: config.redisUrl ? "redis" : config.store,
      }),
  }, handler);
  bridge.startHeartbeat();

  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("{signal}: shutting down", { signal });
    const timer = setTimeout(() => {
      log.error("Shutdown took over {ms} ms; exiting", { ms: SHUTDOWN_LIMIT_MS });
      Deno.exit(1);
    }, SHUTDOWN_LIMIT_MS);
    try {
      const patience = performance.now() + IN_FLIGHT_LIMIT_MS;
      while (inFlight > 0 && performance.now() < patience) {
        await new Promise((r) => setTimeout(r, 5));
      }
      await bridge.shutdown(1012, "server restarting: reconnect with since=");
      await server.shutdown();
      await store.close();
    } finally {
      clearTimeout(timer);
    }
    log.info("Stopped cleanly");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
}

if (import.meta.main) await main();
