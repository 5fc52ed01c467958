// Instances sharing Redis send at the same time: a reply another instance has "sending" is not
// left unanswered just because this one started. A start (and each minute's sweep) fails only
// those recorded over 10 minutes ago. The real server on a test clock, over a real Redis.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";
import { message, replyItem } from "../store/_store_items.ts";

const REDIS_URL = await findTestRedis();
const MINUTE = 60_000;

Deno.test({
  name: "with Redis a reply recorded sending is failed as unanswered only once 10 minutes old",
  ignore: REDIS_URL === null,
  fn: async () => {
    const prefix = uniquePrefix("unanswered");
    const env = { STORE: "", REDIS_URL: `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}` };
    const clock = { t: Date.UTC(2026, 11, 1) };
    const now = () => clock.t;
    /** The reply's status in a bridge started `minutes` after it was recorded, once its
     * start's sweep had time to change it (up to 2 s). */
    const statusAt = async (minutes: number) => {
      clock.t = start + minutes * MINUTE;
      const bridge = await startBridge({ env, now });
      try {
        const deadline = Date.now() + 2000;
        for (;;) {
          const { items } = await bridge.store.readHistory("oShared", null, 10);
          const status = items.find((i) => i.id === "rShared")?.status;
          if (status !== "sending" || Date.now() > deadline) return status;
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        await bridge.close();
      }
    };
    const start = clock.t;
    try {
      const first = await startBridge({ env, now });
      try {
        const presence = { isOnline: () => true, onlineAgents: () => ["qa"] };
        await first.store.agentOnline("qa", presence);
        await first.store.acceptInbound([message("oShared", "hi", clock.t)], presence);
        // Recorded by another instance, still sending there.
        await first.store.recordReply("qa", "oShared", {
          ...replyItem("qa", "oShared", "rShared"),
          send_time: Math.floor(clock.t / 1000),
        });
      } finally {
        await first.close();
      }
      assert.equal(await statusAt(5), "sending", "5 minutes: another instance may be sending it");
      assert.equal(await statusAt(11), "failed", "11 minutes: left unanswered");
    } finally {
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
