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

Deno.test({
  name: "with Redis two instances starting together tell each reply left unanswered once",
  ignore: REDIS_URL === null,
  fn: async () => {
    const prefix = uniquePrefix("unanswered-twice");
    const env = { STORE: "", REDIS_URL: `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}` };
    const clock = { t: Date.UTC(2026, 11, 1) };
    const now = () => clock.t;
    const ids: string[] = [];
    try {
      const first = await startBridge({ env, now });
      try {
        const presence = { isOnline: () => true, onlineAgents: () => ["qa"] };
        await first.store.agentOnline("qa", presence);
        // Enough of them that the two start sweeps run at once.
        for (let f = 0; f < 50; f++) {
          await first.store.acceptInbound([message(`oTwice${f}`, `m${f}`, clock.t)], presence);
          for (let r = 0; r < 4; r++) {
            const id = `rTwice${f}-${r}`;
            ids.push(id);
            await first.store.recordReply("qa", `oTwice${f}`, {
              ...replyItem("qa", `oTwice${f}`, id),
              send_time: Math.floor(clock.t / 1000),
            });
          }
        }
      } finally {
        await first.close();
      }
      // A deploy restarting every instance at once, the replies long overdue.
      clock.t += 11 * MINUTE;
      const both = await Promise.all([startBridge({ env, now }), startBridge({ env, now })]);
      try {
        const store = both[0].store;
        const deadline = Date.now() + 10_000;
        for (;;) {
          const left = await store.unansweredReplies(clock.t + MINUTE, 1000);
          if (left.length === 0) break;
          assert.ok(Date.now() < deadline, `${left.length} replies still sending`);
          await new Promise((r) => setTimeout(r, 50));
        }
        // Both sweeps are done once nothing is left: the later one's frames are in by then,
        // or come within a moment.
        await new Promise((r) => setTimeout(r, 500));
        const told = new Map<string, number>();
        for (const e of await store.readLog("qa", 0, 10_000)) {
          const replyId = e.envelope.data["reply_id"];
          if (e.envelope.result.code === -1 && typeof replyId === "string") {
            told.set(replyId, (told.get(replyId) ?? 0) + 1);
          }
        }
        const notOnce = ids.filter((id) => told.get(id) !== 1).map((id) =>
          `${id}: ${told.get(id)}`
        );
        assert.deepEqual(notOnce, [], "each reply's agent told once");
      } finally {
        await Promise.all(both.map((b) => b.close()));
      }
    } finally {
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
