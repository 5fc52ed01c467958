// What the tests of a reply's outcome share: the stores main.ts can open (Redis when a test
// server is there), a gate that holds a call to the fake WeChat so that something (a revoke, the
// follower writing again) comes while a reply is on its way, and WeChat's revoke event.

import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, type TestAgent } from "../helpers/agent.ts";
import { startBridge, type TestBridge, waitRouted } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";

/** WeChat's customer-service send, the call a reply makes. */
export const SEND = "/cgi-bin/message/custom/send";

/** The revoke event as WeChat's push service sends it (its doc's sample, tests/fixtures). */
export const revokeXml = (openId: string) =>
  `<xml><ToUserName><![CDATA[gh_870882ca4b1]]></ToUserName><FromUserName><![CDATA[owAqB1v0ahK_Xlc7GshIDdf2yf7E]]></FromUserName><CreateTime>1626857200</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[user_authorization_revoke]]></Event><OpenID><![CDATA[${openId}]]></OpenID><AppID><![CDATA[wx13974bf780d3dc89]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>`;

/** A store main.ts can open, by its environment; `flush` deletes what a test left in Redis. */
export interface StoreCase {
  name: string;
  env: () => Record<string, string>;
  flush?: () => Promise<void>;
}

/** Every store main.ts can open; on Redis each `env()` is a key prefix of its own, named after
 * `test`, which `flush` deletes. */
export async function everyStore(test: string): Promise<StoreCase[]> {
  const stores: StoreCase[] = [
    { name: "memory", env: () => ({ STORE: "memory" }) },
    { name: "SQLite", env: () => ({ STORE: "sqlite" }) },
    { name: "Deno KV", env: () => ({ STORE: "kv" }) },
  ];
  const redisUrl = await findTestRedis();
  if (redisUrl !== null) {
    let prefix = "";
    stores.push({
      name: "Redis",
      env: () => {
        prefix = uniquePrefix(test);
        return { STORE: "", REDIS_URL: `${redisUrl}?prefix=${encodeURIComponent(prefix)}` };
      },
      flush: () => flushPrefix(redisUrl, prefix),
    });
  }
  return stores;
}

/** Holds the next call to `path` (default the customer-service send) on its way to the fake
 * until `release()`; `holdNext()` again holds the one after. */
export function createSendGate(path = SEND) {
  let armed = false;
  let arrived = Promise.withResolvers<void>();
  let released = Promise.withResolvers<void>();
  const gatedFetch: typeof fetch = async (input, init) => {
    const url = input instanceof Request ? input.url : String(input);
    if (armed && new URL(url).pathname === path) {
      armed = false;
      arrived.resolve();
      await released.promise;
    }
    return await fetch(input, init);
  };
  return {
    fetch: gatedFetch,
    /** Holds the next call; resolves once one is held. */
    holdNext(): Promise<void> {
      armed = true;
      arrived = Promise.withResolvers();
      released = Promise.withResolvers();
      return arrived.promise;
    },
    release: () => released.resolve(),
  };
}

/** What `withBridge` gives a test: the bridge, its fake WeChat, one agent online, the gate. */
export interface ReplySetup {
  server: TestBridge;
  fake: FakeWechat;
  agent: TestAgent;
  gate: ReturnType<typeof createSendGate>;
}

/**
 * Runs `fn` against a bridge on `store` with a fake WeChat (app `appId`) behind a send gate on
 * `gatePath`, and agent `agentId` online and routable; closes all of it after, and flushes Redis.
 */
export async function withBridge(
  store: StoreCase,
  options: { appId: string; agentId: string; gatePath?: string; env?: Record<string, string> },
  fn: (setup: ReplySetup) => Promise<void>,
): Promise<void> {
  const fake = await startFakeWechat({ appId: options.appId, secret: "s" });
  const gate = createSendGate(options.gatePath);
  const server = await startBridge({
    env: {
      ...store.env(),
      WECHAT_APPID: options.appId,
      WECHAT_SECRET: "s",
      WECHAT_API_BASE: fake.url,
      ...options.env,
    },
    fetch: gate.fetch,
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=${options.agentId}`);
  try {
    await waitRouted(server, options.agentId);
    await fn({ server, fake, agent, gate });
  } finally {
    gate.release();
    await agent.close();
    await server.close();
    await fake.close();
    await store.flush?.();
  }
}

/** A file server whose answer waits: `asked` resolves when a download starts, `held.resolve()`
 * lets it (and every later one) have a small PNG. */
export function startHeldFileServer() {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);
  const asked = Promise.withResolvers<void>();
  const held = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
    asked.resolve();
    await held.promise;
    return new Response(png, { headers: { "content-type": "image/png" } });
  });
  return { asked, held, addr: server.addr, shutdown: () => server.shutdown() };
}
