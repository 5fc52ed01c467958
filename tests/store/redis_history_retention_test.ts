// README and docs/redis.md: a conversation's history expires HISTORY_RETENTION_DAYS after its
// last message. On Redis a conversation is one hash whose expiry each new message renews, so
// its first message outlives its own retention while the conversation goes on, and the whole
// of it goes once the last message is that old (Redis's own clock: real time, shortened).

import assert from "node:assert/strict";
import type { Presence } from "../../src/core/store.ts";
import { createRedisStore } from "../../src/store/redis_store.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "./_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const RETENTION_MS = 3_000;

const online: Presence = { isOnline: (id) => id === "a1", onlineAgents: () => new Set(["a1"]) };

function inbound(content: string) {
  const id = `m-${content}`;
  return {
    followerId: "f1",
    name: null,
    to: "gh_account",
    envelope: {
      data: {
        id,
        name: "f1",
        avatar: "",
        msg_type: "text",
        contact_id: "f1",
        company_id: "acme",
        send_time: Math.floor(Date.now() / 1000),
        msg: { content },
      },
      result: { code: 1001, message: "common" },
    },
    kind: "message" as const,
    receivedAt: Date.now(),
    dedupKey: id,
  };
}

Deno.test({
  name: "Redis keeps a conversation's history until its last message is past the retention",
  ignore: REDIS_URL === null,
  async fn(t) {
    const prefix = uniquePrefix("history-retention");
    const store = await createRedisStore({
      url: REDIS_URL!,
      prefix,
      companyId: "acme",
      now: Date.now,
      newId: () => crypto.randomUUID(),
      dedupTtlMs: 3600_000,
      heartbeatMs: 60_000,
      historyRetentionMs: RETENTION_MS,
    });
    const texts = async () =>
      (await store.readHistory("f1", null, 10)).items.map((i) => i.msg["content"]);
    try {
      await store.agentOnline("a1", online);
      await store.acceptInbound([inbound("first")], online);
      await new Promise((r) => setTimeout(r, 2_000));
      await store.acceptInbound([inbound("second")], online);
      await new Promise((r) => setTimeout(r, 2_000));
      await t.step(
        "the first message, past its own retention, is kept with the second",
        async () => {
          assert.deepEqual(await texts(), ["first", "second"]);
        },
      );
      await new Promise((r) => setTimeout(r, 2_000));
      await t.step("past the last message's retention the conversation is gone", async () => {
        assert.deepEqual(await texts(), []);
      });
    } finally {
      await store.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
