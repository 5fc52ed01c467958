// The entry point: reads the configuration, sets up logging, builds the server (src/server.ts,
// the same function the tests call), serves it, and stops it cleanly on SIGTERM or SIGINT.

import { getLogger } from "@logtape/logtape";
import { loadConfig } from "./src/config.ts";
import { configureLogging } from "./src/logging.ts";
import { createServer, type Server } from "./src/server.ts";

/** Past this, a stop that has not finished exits anyway. */
const SHUTDOWN_LIMIT_MS = 10_000;

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
  await configureLogging({
    format: config.logFormat,
    level: config.logLevel,
    accounts: config.accounts.length > 0,
  });
  const log = getLogger(["bridge", "main"]);
  let server: Server | undefined;
  try {
    server = await createServer(config);
    await server.listen({
      port: config.port,
      hostname: config.hostname,
      onListen: ({ hostname, port }) =>
        log.info("Bridge listening on http://{hostname}:{port} (store: {store})", {
          hostname,
          port,
          store: config.redisUrl ? "redis" : config.store,
        }),
    });
  } catch (error) {
    log.fatal("Cannot start: {message}", { message: (error as Error).message });
    // A port already taken, say: the store opened before it is closed, its last writes kept.
    await server?.stop().catch(() => {});
    Deno.exit(2);
  }
  if (!config.agentSecret) {
    log.warn("AGENT_SECRET is not set: any client can connect as any agent (open dev mode)");
  }
  if (config.accounts.length === 0 && !config.wechatToken) {
    log.warn("WECHAT_TOKEN is not set: anyone who reaches the port can post as any follower");
  }
  for (const account of config.accounts.filter((a) => !a.token)) {
    log.warn("Account {id} has no token: anyone who reaches the port can post as its followers", {
      id: account.id,
    });
  }
  // One account left without its secret answers its agents "sent" and sends nothing.
  for (const [id, unit] of server.demo ? [] : server.accounts ?? []) {
    if (!unit.demo) continue;
    log.warn(
      "Account {id} lacks its appid or secret: demo mode, its agents' replies go to the follower simulator, never to WeChat",
      { id },
    );
  }
  for (const id of await unservedAccountDirs(config.dataDir, config.accounts.map((a) => a.id))) {
    log.warn(
      "{dir} is of account {id}, which ACCOUNTS_FILE no longer lists: its followers, history and waiting queue are kept, not served",
      { dir: `${config.dataDir}/accounts/${id}`, id },
    );
  }
  if (config.accounts.length > 0) {
    log.info("Serving {count} official accounts: {ids}", {
      count: config.accounts.length,
      ids: config.accounts.map((a) => a.id).join(", "),
    });
  }
  if (server.demo) {
    log.info("No WeChat credentials: demo mode, replies go to the follower simulator");
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("{signal}: shutting down", { signal });
    const timer = setTimeout(() => {
      log.error("Shutdown took over {ms} ms; exiting", { ms: SHUTDOWN_LIMIT_MS });
      Deno.exit(1);
    }, SHUTDOWN_LIMIT_MS);
    try {
      await server!.stop();
    } finally {
      clearTimeout(timer);
    }
    log.info("Stopped cleanly");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
}

/** Accounts with a directory under DATA_DIR/accounts that the file does not list (none
 * without ACCOUNTS_FILE). */
async function unservedAccountDirs(dataDir: string, listed: string[]): Promise<string[]> {
  if (listed.length === 0) return [];
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(`${dataDir}/accounts`)) {
      if (entry.isDirectory && !listed.includes(entry.name)) found.push(entry.name);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return found.sort();
}

if (import.meta.main) await main();
