// A failover behind one address (a managed Redis's primary endpoint, a DNS name or a proxy
// moved to the promoted replica): the demoted master keeps the bridge's connection open and
// refuses every write with READONLY. ioredis stays on it unless told that READONLY calls for a
// new connection, and the bridge answered every webhook 503 for good.
// A real bridge on REDIS_URL, two redis-servers, and a TCP proxy in between whose target moves.

import assert from "node:assert/strict";
import { Redis } from "redis";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { freePort } from "../helpers/spawn.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";
import { canRunRedisServer, startRedis, stopRedis, waitUntil } from "./_redis_test_env.ts";

const B = "/im_component/wx_official_account";

/** A TCP proxy to `target.port`, read at each new connection; open ones stay where they are. */
function startProxy(target: { port: number }) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
    try {
      await from.readable.pipeTo(to.writable);
    } catch { /* either side closed */ }
    for (const c of [from, to]) {
      try {
        c.close();
      } catch { /* closed already */ }
      conns.delete(c);
    }
  };
  const accepting = (async () => {
    for await (const client of listener) {
      try {
        const upstream = await Deno.connect({ hostname: "127.0.0.1", port: target.port });
        conns.add(client).add(upstream);
        pipe(client, upstream);
        pipe(upstream, client);
      } catch {
        client.close();
      }
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed already */ }
      }
      await accepting.catch(() => {});
    },
  };
}

Deno.test({
  name: "after a failover behind the same address, READONLY from the old master reconnects",
  ignore: !await canRunRedisServer(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const [portA, portB] = [freePort(), freePort()];
    const dir = Deno.makeTempDirSync({ prefix: "redis-failover-" });
    const redisA = await startRedis(portA, dir);
    const redisB = await startRedis(portB, dir);
    const a = new Redis(portA, "127.0.0.1");
    const b = new Redis(portB, "127.0.0.1");
    const target = { port: portA };
    const proxy = startProxy(target);
    const server = await startBridge({
      env: { REDIS_URL: `redis://127.0.0.1:${Deno.env.get("DIRECT") ? portA : proxy.port}` },
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=fo`);
    const send = (id: string) =>
      post(`${server.base}${B}/send_xml`, textXml("oF", "gh_f", `text ${id}`, id));
    try {
      await waitRouted(server, "fo");
      assert.deepEqual(await send("83001"), { status: 200, text: "success" });
      await agent.waitFor((e) => e.data["id"] === "83001", 5000);

      // B follows A, then is promoted; A is demoted under it, and the address now leads to B.
      // Redis 7 waits repl-diskless-sync-delay (5 s) for more replicas before a full sync: as
      // long as this wait was, so the test failed whenever the machine was a little slow.
      await a.config("SET", "repl-diskless-sync-delay", "0");
      await b.replicaof("127.0.0.1", portA);
      await waitUntil(
        async () => {
          const info = await b.info("replication");
          return info.includes("master_link_status:up") ? true : undefined;
        },
        "B in sync with A",
        15_000,
      );
      await b.replicaof("NO", "ONE");
      await a.replicaof("127.0.0.1", portB);
      target.port = portB;

      // WeChat retries a refused message (and so does this test, a few times).
      let last = await send("83002");
      for (let i = 0; i < 20 && last.text !== "success"; i++) {
        assert.equal(last.status, 503, last.text);
        await new Promise((r) => setTimeout(r, 100));
        last = await send("83002");
      }
      assert.deepEqual(last, { status: 200, text: "success" });
      await agent.waitFor((e) => e.data["id"] === "83002", 5000);
    } finally {
      await agent.close();
      await server.close();
      await proxy.close();
      a.disconnect();
      b.disconnect();
      await stopRedis(redisA);
      await stopRedis(redisB);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a REDIS_URL that leads to a replica fails at start, saying READONLY",
  ignore: !await canRunRedisServer(),
  async fn() {
    // READONLY reconnects; the call it refused is not sent again on the new connection, which
    // on an address that leads to a replica for good sent it again for ever: the start hung.
    const [portA, portB] = [freePort(), freePort()];
    const dir = Deno.makeTempDirSync({ prefix: "redis-replica-" });
    const redisA = await startRedis(portA, dir);
    const redisB = await startRedis(portB, dir);
    const b = new Redis(portB, "127.0.0.1");
    let deadline: ReturnType<typeof setTimeout> | undefined;
    try {
      await b.replicaof("127.0.0.1", portA);
      const start = startBridge({ env: { REDIS_URL: `redis://127.0.0.1:${portB}` } });
      const outcome = await Promise.race([
        start.then(async (server) => {
          await server.close();
          return "started";
        }, (error: Error) => error.message),
        new Promise<string>((r) =>
          deadline = setTimeout(() => r("still starting after 10 s"), 10_000)
        ),
      ]);
      assert.match(outcome, /Cannot connect to Redis: READONLY/);
    } finally {
      clearTimeout(deadline);
      b.disconnect();
      await stopRedis(redisA);
      await stopRedis(redisB);
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
