// Where the Redis tests find their Redis (REDIS_TEST_URL, else port 6391), whether to skip
// without one (never under CI=true: there a missing Redis fails the tests), cleanup of each
// test's own key prefix, and a redis-server of a test's own, for tests that stop it.

import { Redis } from "redis";
import { createRedisStore, type RedisStore } from "../../src/store/redis_store.ts";

/** The test Redis's URL, or null (reason printed) to skip outside CI. */
export async function findTestRedis(): Promise<string | null> {
  const url = Deno.env.get("REDIS_TEST_URL") ?? "redis://127.0.0.1:6391";
  if (Deno.env.get("CI") === "true") return url;
  const problem = await probe(url);
  if (problem === null) return url;
  // deno-lint-ignore no-console
  console.log(
    `Skipping Redis tests: ${problem}. Start one with ` +
      `\`redis-server --port 6391 --save "" --daemonize yes\` or set REDIS_TEST_URL.`,
  );
  return null;
}

async function probe(url: string): Promise<string | null> {
  const { hostname, port } = new URL(url);
  let conn: Deno.TcpConn | undefined;
  try {
    conn = await Deno.connect({ hostname, port: Number(port || 6379) });
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    const answer = new TextDecoder().decode(buf.subarray(0, n ?? 0));
    // +PONG, or -NOAUTH from a Redis with a password (the URL carries it): both are Redis.
    return answer.startsWith("+PONG") || answer.startsWith("-NOAUTH")
      ? null
      : `${url} answered ${JSON.stringify(answer)} to PING`;
  } catch (error) {
    return `no Redis at ${url} (${(error as Error).message})`;
  } finally {
    conn?.close();
  }
}

/** A key prefix no other test uses. */
export function uniquePrefix(name: string): string {
  return `test:${name}:${crypto.randomUUID().slice(0, 8)}:`;
}

/** A plain client for looking at keys directly; quit it after. */
export function rawClient(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1 });
}

/** Deletes every key under `prefix`. */
export async function flushPrefix(url: string, prefix: string): Promise<void> {
  const redis = rawClient(url);
  try {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500);
      if (keys.length > 0) await redis.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    await redis.quit();
  }
}

/** Resolves once `check` returns a value other than undefined; rejects after `timeoutMs`. */
export async function waitUntil<T>(
  check: () => T | undefined | Promise<T | undefined>,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether redis-server can be started here (always under CI=true: there it must be). */
export async function canRunRedisServer(): Promise<boolean> {
  if (Deno.env.get("CI") === "true") return true;
  try {
    const out = await new Deno.Command("redis-server", { args: ["--version"], stdout: "null" })
      .output();
    if (out.success) return true;
  } catch { /* not installed */ }
  // deno-lint-ignore no-console
  console.log("Skipping tests that run their own redis-server: it is not installed here");
  return false;
}

/** A redis-server of the test's own on `port`, empty, with nothing saved to disk; `dir` is its
 * working directory, for one that replicates (a replica writes what it is sent there, as
 * dump.rdb, and every redis-server started in that directory later loads it). */
export async function startRedis(port: number, dir?: string): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("redis-server", {
    args: [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      ...(dir === undefined ? [] : ["--dir", dir]),
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const deadline = Date.now() + 5000;
  for (;;) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return child;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis-server never listened on ${port}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Kills a redis-server from startRedis (no shutdown: as a crash would). */
export async function stopRedis(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch { /* already gone */ }
  await child.status;
}

/** A store on `url` under `prefix`, as two instances of one company would open it; its presence
 * beats every `heartbeatMs`. */
export function openPrefixedStore(
  url: string,
  prefix: string,
  heartbeatMs = 60_000,
): Promise<RedisStore> {
  return createRedisStore({
    url,
    prefix,
    companyId: "acme",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 60_000,
    heartbeatMs,
  });
}

/** A store on the redis-server of startRedis() at `port`, its presence beating every 500 ms. */
export function openStoreOnPort(port: number): Promise<RedisStore> {
  return createRedisStore({
    url: `redis://127.0.0.1:${port}`,
    companyId: "",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 3600_000,
    heartbeatMs: 500,
  });
}
