// A Redis connection that drops after a call ran but before its answer came: ioredis resends
// what got no answer once it reconnects, so the script would run twice. A give-back, a reply and
// a transfer each take effect once all the same (WeChat's 5 stay 5).

import assert from "node:assert/strict";
import type { Presence, Store } from "../../src/core/store.ts";
import { findTestRedis, flushPrefix, openPrefixedStore, uniquePrefix } from "./_redis_test_env.ts";
import { message, replyItem } from "./_store_items.ts";

const REDIS_URL = await findTestRedis();

/** A TCP relay to Redis that, once armed, lets the next command carrying `marker` through and
 * then cuts that connection instead of relaying Redis's answer. */
function dropAfterCommand(target: URL, marker: string) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const bytes = new TextEncoder().encode(marker);
  const state = { armed: false, cuts: 0 };
  const conns = new Set<Deno.Conn>();
  const has = (chunk: Uint8Array) => {
    outer: for (let i = 0; i + bytes.length <= chunk.length; i++) {
      for (let j = 0; j < bytes.length; j++) if (chunk[i + j] !== bytes[j]) continue outer;
      return true;
    }
    return false;
  };
  const relay = async (client: Deno.Conn) => {
    const server = await Deno.connect({
      hostname: target.hostname,
      port: Number(target.port || 6379),
    });
    conns.add(client).add(server);
    let cutOnAnswer = false;
    const close = () => {
      for (const c of [client, server]) {
        try {
          c.close();
        } catch { /* closed */ }
        conns.delete(c);
      }
    };
    const up = (async () => {
      const buf = new Uint8Array(65536);
      for (;;) {
        const n = await client.read(buf).catch(() => null);
        if (n === null) break;
        const chunk = buf.subarray(0, n);
        if (state.armed && has(chunk)) {
          state.armed = false;
          cutOnAnswer = true;
        }
        await server.write(chunk).catch(() => {});
      }
    })();
    const down = (async () => {
      const buf = new Uint8Array(65536);
      for (;;) {
        const n = await server.read(buf).catch(() => null);
        if (n === null) break;
        if (cutOnAnswer) {
          state.cuts++;
          break;
        }
        await client.write(buf.subarray(0, n)).catch(() => {});
      }
    })();
    await Promise.race([up, down]);
    close();
    await Promise.allSettled([up, down]);
  };
  const accepting = (async () => {
    for await (const conn of listener) void relay(conn);
  })();
  const { port } = listener.addr as Deno.NetAddr;
  return {
    url: `redis://127.0.0.1:${port}`,
    state,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await accepting.catch(() => {});
    },
  };
}

const presence: Presence = { isOnline: (id) => id === "agentW", onlineAgents: () => ["agentW"] };

type Relay = ReturnType<typeof dropAfterCommand>;

/** A test on a store whose connection to Redis is cut right after the call carrying `marker`
 * ran, once `relay.state.armed` is set. */
function resendTest(
  name: string,
  marker: string,
  fn: (store: Store, relay: Relay) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: REDIS_URL === null,
    sanitizeOps: false,
    sanitizeResources: false,
    async fn() {
      const prefix = uniquePrefix("resend");
      const relay = dropAfterCommand(new URL(REDIS_URL!), marker);
      const store = await openPrefixedStore(relay.url, prefix);
      try {
        await fn(store, relay);
      } finally {
        await store.close();
        await relay.close();
        await flushPrefix(REDIS_URL!, prefix);
      }
    },
  });
}

resendTest(
  "Redis: a give-back whose answer a dropped connection lost is given back once",
  "returnreply",
  async (store, relay) => {
    await store.acceptInbound([message("oR", "in-r", Date.now())], presence);
    const sent = [];
    for (const id of ["r1", "r2", "r3"]) {
      sent.push((await store.recordReply("agentW", "oR", replyItem("agentW", "oR", id))).value.n);
    }
    assert.equal((await store.getContact("oR"))!.replies_since_inbound, 3);
    relay.state.armed = true;
    // ioredis resends it after reconnecting; whether it then answers or gives up, the
    // count is what one give-back leaves.
    const { last_inbound_at } = (await store.getContact("oR"))!;
    await store.returnReply("oR", sent[2]!, last_inbound_at).catch(() => null);
    assert.equal(relay.state.cuts, 1, "the connection was cut after the give-back ran");
    assert.equal((await store.getContact("oR"))!.replies_since_inbound, 2);
  },
);

resendTest(
  "Redis: a reply whose answer a dropped connection lost is not recorded twice",
  "$5\r\nreply\r\n",
  async (store, relay) => {
    await store.acceptInbound([message("oS", "in-s", Date.now())], presence);
    relay.state.armed = true;
    // Its outcome is unknown to the bridge: it may fail, but it must not run twice (a second
    // count against WeChat's 5, a second history item).
    await store.recordReply("agentW", "oS", replyItem("agentW", "oS", "s1")).catch(() => null);
    assert.equal(relay.state.cuts, 1, "the connection was cut after the reply was recorded");
    const contact = (await store.getContact("oS"))!;
    assert.equal(contact.replies_since_inbound, 1);
    assert.equal(contact.history_seq, 2, "the message and one reply");
  },
);

resendTest(
  "Redis: a transfer whose answer a dropped connection lost succeeds once",
  "$8\r\ntransfer\r\n",
  async (store, relay) => {
    await store.agentOnline("agentW", presence);
    await store.agentOnline("agentV", presence);
    await store.acceptInbound([message("oT", "in-t", Date.now())], presence);
    relay.state.armed = true;
    // Run twice, the second run found the follower moved and answered "not served by".
    await store.transfer("oT", "agentW", "agentV");
    assert.equal(relay.state.cuts, 1, "the connection was cut after the transfer ran");
    assert.equal((await store.getContact("oT"))!.agent_id, "agentV");
  },
);
