// A subscriber link that stops passing anything without closing (a NAT, firewall or proxy that
// dropped an idle connection without a word) never notices: the subscriber never writes. What
// other instances committed for this instance's agents stopped coming, for as long as the link
// stayed so (up to TCP keepalive's two hours), with no log line. Asked now and then, a link that
// does not answer is made again, and what it missed is read from the logs.

import assert from "node:assert/strict";
import type { Envelope } from "../../src/protocol/envelope.ts";
import type { LogEntry, Presence } from "../../src/core/store.ts";
import { createRedisStore } from "../../src/store/redis_store.ts";
import { startStallingProxy } from "../helpers/stalling_proxy.ts";
import { findTestRedis, flushPrefix, uniquePrefix, waitUntil } from "./_redis_test_env.ts";

const REDIS_URL = await findTestRedis();

const presence: Presence = {
  isOnline: (id) => id === "a1",
  onlineAgents: () => new Set(["a1"]),
};

function envelope(id: string, content: string): Envelope {
  return {
    data: {
      id,
      name: "f1",
      avatar: "",
      msg_type: "text",
      contact_id: "f1",
      company_id: "",
      send_time: 1_700_000_000,
      msg: { content },
    },
    result: { code: 1001, message: "common" },
  };
}

Deno.test({
  name: "a Redis subscriber link stalled without closing is made again and catches up",
  ignore: REDIS_URL === null,
  async fn() {
    const url = new URL(REDIS_URL!);
    const prefix = uniquePrefix("substall");
    const proxy = startStallingProxy(Number(url.port || 6379));
    const options = (target: string) => ({
      url: `${target}?prefix=${encodeURIComponent(prefix)}`,
      companyId: "",
      now: Date.now,
      newId: () => crypto.randomUUID(),
      dedupTtlMs: 60_000,
      heartbeatMs: 1000,
    });
    const a = await createRedisStore(options(REDIS_URL!.split("?")[0]!));
    // B's commands link is the relay's first, its subscriber the second.
    const b = await createRedisStore(options(`redis://127.0.0.1:${proxy.port}`));
    const onB: LogEntry[] = [];
    b.onRemoteEntries((entries) => onB.push(...entries));
    try {
      await b.agentOnline("a1", presence);
      await a.appendToAgents([{ agentId: "a1", envelope: envelope("before", "before") }]);
      await waitUntil(() => onB.find((e) => e.envelope.data.id === "before"), "A's entry on B");

      assert.equal(proxy.accepted, 2);
      proxy.stall(2);
      await a.appendToAgents([{ agentId: "a1", envelope: envelope("stalled", "while stalled") }]);
      await waitUntil(
        () => onB.find((e) => e.envelope.data.id === "stalled"),
        "the entry committed while B's subscriber link passed nothing",
        15_000,
      );
      assert.ok(proxy.accepted > 2, "B's subscriber was connected again");
    } finally {
      await a.close();
      // Bounded: a subscriber still stalled (the defect) would hold quit() for good; the
      // sanitizers then report it, and the test fails instead of hanging.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([b.close(), new Promise((r) => timer = setTimeout(r, 3000))]);
      clearTimeout(timer);
      proxy.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
