// A reply this process is still on is never settled as left unanswered by its own sweep: not
// while the store is taking the reply (recorded, the switchboard not yet told), nor while its
// outcome, refused by the store once, waits to be written again. Settled, history said
// "failed" and the agent got a -1 for a reply WeChat took (and told as sent). The real server in
// demo mode, its clock half a second into the second its store opened (a reply's send_time, in
// whole seconds, is then before that opening), over the memory store with a fault of the test's.

import assert from "node:assert/strict";
import type { TestBridge } from "../helpers/server.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import type { Store } from "../../src/core/store.ts";
import { replyItem } from "../store/_store_items.ts";
import { clock, options, send, settledStatus, withBridge } from "./_sweep_env.ts";

Deno.test("a sweep while this process's reply is being recorded leaves it to its sender", async () => {
  const inner = createMemoryStore(options);
  let server: TestBridge | null = null;
  let swept: number | null = null;
  const store: Store = {
    ...inner,
    async recordReply(agentId, followerId, item) {
      const recorded = await inner.recordReply(agentId, followerId, item);
      // Recorded "sending", the reply service not yet answered: a sweep's turn.
      swept = await server!.bridge.settleUnanswered();
      return recorded;
    },
  };
  await withBridge(store, async (s, agent) => {
    server = s;
    send(agent, "c-recording");
    assert.equal(await settledStatus(s, "c-recording"), "sent");
    assert.equal(swept, 0, "nothing settled");
    assert.ok(!agent.received.some((e) => e.result.code === -1), "no -1");
  });
});

Deno.test("a sweep while this process's outcome waits to be written again leaves it", async () => {
  const inner = createMemoryStore(options);
  let refused = 0;
  const store: Store = {
    ...inner,
    updateReply(followerId, reply, status, error, outcomeOptions) {
      // The reply's own outcome refused once (the store away), then taken.
      if (!outcomeOptions?.onlySending && refused++ === 0) {
        return Promise.reject(new Error("store away"));
      }
      return inner.updateReply(followerId, reply, status, error, outcomeOptions);
    },
  };
  await withBridge(store, async (s, agent) => {
    send(agent, "c-retried");
    await agent.waitFor((e) =>
      (e.data["msg"] as Record<string, unknown>)["event"] === "reply_sent"
    );
    assert.equal(refused, 1, "the outcome was refused once");
    assert.equal(await s.bridge.settleUnanswered(), 0, "nothing settled");
    assert.equal(await settledStatus(s, "c-retried"), "sent", "written again");
    assert.ok(!agent.received.some((e) => e.result.code === -1), "no -1");
  });
});

Deno.test("a reply this process recorded and then failed on is not left sending", async () => {
  const inner = createMemoryStore(options);
  let broken = true;
  const store: Store = {
    ...inner,
    async recordReply(agentId, followerId, item) {
      const recorded = await inner.recordReply(agentId, followerId, item);
      if (!broken) return recorded;
      // Taken by the store, then the switchboard fails on what it logged: nothing was sent.
      return {
        value: recorded.value,
        get deliveries(): never {
          throw new Error("the switchboard fails");
        },
      };
    },
  };
  await withBridge(store, async (s, agent) => {
    send(agent, "c-broken");
    assert.equal(await settledStatus(s, "c-broken"), "failed", "failed, not sending for good");
    const { items } = await s.store.readHistory("oMine", null, 20);
    const item = items.find((i) => i["client_id"] === "c-broken")!;
    assert.notEqual(item["unconfirmed"], true, "nothing went to WeChat: no doubt to tell");
    // Its -1 names it: the console marks that reply failed, not some frame.
    const told = await agent.waitFor((e) => e.data["client_id"] === "c-broken");
    assert.equal(told.result.code, -1);
    assert.equal(told.data["contact_id"], "oMine");
    broken = false;
    send(agent, "c-after");
    assert.equal(await settledStatus(s, "c-after"), "sent", "the next reply goes");
  });
});

Deno.test("a reply this process left sending is settled by a sweep once 10 minutes old", async () => {
  const inner = createMemoryStore(options);
  await withBridge(inner, async (s, agent) => {
    // Recorded as by this process's reply service, which then never wrote an outcome (a path
    // that lost it): only a start's sweep looked, and this process's replies were not its.
    await s.store.recordReply("qa", "oMine", {
      ...replyItem("qa", "oMine", "rAbandoned"),
      // A second after the store opened: this process's own.
      send_time: Math.floor(clock.t / 1000) + 1,
      client_id: "c-abandoned",
    });
    assert.equal(await s.bridge.settleUnanswered(), 0, "just recorded: perhaps still sending");
    clock.t += 11 * 60_000;
    try {
      assert.equal(await s.bridge.settleUnanswered(), 1, "11 minutes: left unanswered");
      assert.equal(await settledStatus(s, "c-abandoned"), "failed");
      await agent.waitFor((e) => e.data["client_id"] === "c-abandoned" && e.result.code === -1);
    } finally {
      clock.t -= 11 * 60_000;
    }
  });
});
