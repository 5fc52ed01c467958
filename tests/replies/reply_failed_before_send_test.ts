// A reply the bridge recorded and then failed on before WeChat was asked (the switchboard
// throwing on what the store logged) stayed "sending"; failed at once, it still kept its count
// against the follower's replies, and only the frame's socket heard of it (another tab the echo
// reached, and the agent's log, nothing). Now it is settled as any reply that reached nothing:
// its count given back, its outcome written, the agent told through its log. And the sweep of
// replies left unanswered leaves this process's own alone while their outcome is settled.

import assert from "node:assert/strict";
import { connectAgent } from "../helpers/agent.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import type { LogEntry, Store } from "../../src/core/store.ts";
import { clock, options, send, settledStatus, withBridge as withOne } from "./_sweep_env.ts";

const B = "/im_component/wx_official_account";

/** Two sockets of agent qa: the one that sends, and another tab the echo reaches. */
const withBridge = (store: Store, fn: Parameters<typeof withOne>[1]) => withOne(store, fn, 2);

/** A memory store whose switchboard push fails once the reply's echo went out (`broken`):
 * the deliveries are the real ones and then one the switchboard cannot read. */
function brokenPushStore(state: { broken: boolean }): Store {
  const inner = createMemoryStore(options);
  return {
    ...inner,
    async recordReply(agentId, followerId, item) {
      const recorded = await inner.recordReply(agentId, followerId, item);
      if (!state.broken) return recorded;
      return {
        value: recorded.value,
        // The echo reaches the agent's sockets, then push throws (TypeError on null).
        deliveries: [...recorded.deliveries, null as unknown as LogEntry],
      };
    },
  };
}

Deno.test("a reply failed as not sent gives its count back", async () => {
  const state = { broken: true };
  await withBridge(brokenPushStore(state), async (s, a) => {
    assert.equal((await s.store.getContact("oMine"))!.replies_since_inbound, 0);
    send(a, "c-broken");
    assert.equal(await settledStatus(s, "c-broken"), "failed");
    const { items } = await s.store.readHistory("oMine", null, 20);
    const item = items.find((i) => i["client_id"] === "c-broken")!;
    assert.match(String(item["error"]), /nothing reached WeChat/);
    // Nothing reached WeChat: WeChat counted nothing, and the bridge must not either.
    assert.equal(
      (await s.store.getContact("oMine"))!.replies_since_inbound,
      0,
      "a reply that reached nothing at WeChat still uses one of the follower's 5",
    );
  });
});

Deno.test("every socket the echo reached hears the not-sent reply failed", async () => {
  const state = { broken: true };
  await withBridge(brokenPushStore(state), async (s, a, b) => {
    send(a, "c-broken");
    // The echo went out to both tabs before the switchboard failed.
    await b.waitFor((e) => e.data["client_id"] === "c-broken" && e.result.code !== -1);
    await a.waitFor((e) => e.data["client_id"] === "c-broken" && e.result.code === -1);
    assert.equal(await settledStatus(s, "c-broken"), "failed");
    // The other tab showed it "sending": it must hear of the failure as of any failed reply.
    await b.waitFor((e) => e.data["client_id"] === "c-broken" && e.result.code === -1, 2000);
  });
});

Deno.test("the agent's log (a reconnect's replay) has the not-sent reply's outcome", async () => {
  const state = { broken: true };
  await withBridge(brokenPushStore(state), async (s, a) => {
    send(a, "c-broken");
    await a.waitFor((e) => e.data["client_id"] === "c-broken" && e.result.code === -1);
    assert.equal(await settledStatus(s, "c-broken"), "failed");
    const c = await connectAgent(`${s.wsBase}${B}/msg?userid=qa&since=0`);
    try {
      await c.waitFor((e) => e.data["client_id"] === "c-broken");
      await c.waitFor((e) => e.data["client_id"] === "c-broken" && e.result.code === -1, 2000);
    } finally {
      await c.close();
    }
  });
});

Deno.test("a sent reply whose outcome write was given up is not swept as unconfirmed", async () => {
  // The outcome retries' backoff (1 s doubling to 30 s, 20 tries: about 8 minutes) run fast.
  const realSetTimeout = globalThis.setTimeout;
  const backoffs = new Set([1, 2, 4, 8, 16].map((s) => s * 1000).concat([30_000]));
  globalThis.setTimeout =
    ((fn: () => void, ms?: number) =>
      realSetTimeout(fn, backoffs.has(ms ?? 0) ? 1 : ms)) as typeof setTimeout;
  const inner = createMemoryStore(options);
  let refusing = true;
  let refused = 0;
  const store: Store = {
    ...inner,
    updateReply(followerId, reply, status, error, outcomeOptions) {
      // A disk full for 8 minutes: the reply's own "sent" is refused every time.
      if (refusing && !outcomeOptions?.onlySending) {
        refused++;
        return Promise.reject(new Error("disk full"));
      }
      return inner.updateReply(followerId, reply, status, error, outcomeOptions);
    },
  };
  try {
    await withBridge(store, async (s, a) => {
      // Recorded after the store opened (the test clock stands still otherwise).
      clock.t += 2000;
      send(a, "c-sent");
      await a.waitFor((e) => e.data["msg"]?.["event"] === "reply_sent");
      const deadline = Date.now() + 5000;
      while (refused < 21 && Date.now() < deadline) await new Promise((r) => realSetTimeout(r, 10));
      assert.equal(refused, 21, "given up after its tries");
      refusing = false; // the disk has room again
      clock.t += 11 * 60_000;
      try {
        await s.bridge.settleUnanswered();
        await new Promise((r) => realSetTimeout(r, 300));
        const { items } = await s.store.readHistory("oMine", null, 20);
        const item = items.find((i) => i["client_id"] === "c-sent")!;
        const told = a.received.filter((e) =>
          e.data["client_id"] === "c-sent" && e.result.code === -1
        );
        assert.deepEqual(
          { failed: item.status === "failed", told: told.map((e) => e.result.message) },
          { failed: false, told: [] },
          "WeChat took it and the agent was told so: not 'may not have been sent' minutes later",
        );
      } finally {
        clock.t -= 11 * 60_000 + 2000;
      }
    });
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
});

Deno.test("a reply the store failed before its send is not swept while its give-back runs", async () => {
  class Down extends Error {}
  const inner = createMemoryStore(options);
  let down = false;
  let release = () => {};
  const held = new Promise<void>((r) => release = r);
  let returning = false;
  const store: Store = {
    ...inner,
    unreachable: (e) => e instanceof Down,
    async recordReply(agentId, followerId, item) {
      const recorded = await inner.recordReply(agentId, followerId, item);
      down = true; // the store goes away as the reply waits its turn
      return recorded;
    },
    getContact(id) {
      if (down) {
        down = false; // back at once: only its turn's first read failed
        return Promise.reject(new Down("store away"));
      }
      return inner.getContact(id);
    },
    async returnReply(followerId, n, countedIn) {
      returning = true;
      await held; // a give-back the store takes its time over (a reconnection)
      return inner.returnReply(followerId, n, countedIn);
    },
  };
  await withBridge(store, async (s, a) => {
    clock.t += 2000;
    try {
      send(a, "c-down");
      await a.waitFor((e) => e.data["client_id"] === "c-down" && e.result.code === -1);
      const deadline = Date.now() + 2000;
      while (!returning && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.ok(returning, "its count is being given back");
      clock.t += 11 * 60_000;
      const settled = await s.bridge.settleUnanswered();
      release();
      assert.equal(await settledStatus(s, "c-down"), "failed");
      await new Promise((r) => setTimeout(r, 300));
      const told = a.received.filter((e) =>
        e.data["client_id"] === "c-down" && e.result.code === -1
      )
        .map((e) => e.result.message);
      assert.deepEqual({ settled, told: told.length }, { settled: 0, told: 1 }, told.join(" | "));
    } finally {
      release();
      clock.t = Date.UTC(2026, 11, 1) + 500;
    }
  });
});
