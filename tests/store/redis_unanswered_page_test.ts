// The Redis sweep reads a page of replies left unanswered in one MULTI. A read that fails keeps its
// member (and throws); an item answered or gone loses its member; the others come back.

import assert from "node:assert/strict";
import {
  findTestRedis,
  flushPrefix,
  openPrefixedStore,
  rawClient,
  uniquePrefix,
} from "./_redis_test_env.ts";
import { message, replyItem } from "./_store_items.ts";

const REDIS_URL = await findTestRedis();

Deno.test({
  name: "a Redis sweep page read in one MULTI keeps failed reads, drops answered ones",
  ignore: REDIS_URL === null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const prefix = uniquePrefix("review-unanswered");
    const store = await openPrefixedStore(REDIS_URL!, prefix);
    const raw = rawClient(REDIS_URL!);
    try {
      const presence = { isOnline: () => true, onlineAgents: () => ["qa"] };
      await store.agentOnline("qa", presence);
      const t = Date.now() - 3600_000;
      for (const f of ["oA", "o:B", "oC"]) {
        await store.acceptInbound([message(f, `hi-${f}`, t)], presence);
      }
      const rec = async (f: string, id: string) =>
        (await store.recordReply("qa", f, {
          ...replyItem("qa", f, id),
          send_time: Math.floor(t / 1000),
        })).value.n;
      const nA = await rec("oA", "rA");
      const nB = await rec("o:B", "rB");
      const nC = await rec("oC", "rC");
      // C answered, but its member left behind (as a script before the index's removal).
      assert.equal(await store.updateReply("oC", { n: nC, id: "rC" }, "sent"), true);
      await raw.zadd(`${prefix}unanswered`, Math.floor(t / 1000), `${nC}:oC`);
      // A member whose read fails: its history key is not a hash.
      await raw.set(`${prefix}hist:oBad`, "x");
      await raw.zadd(`${prefix}unanswered`, Math.floor(t / 1000) - 1, "1:oBad");
      await assert.rejects(() => store.unansweredReplies(Date.now(), 100), /WRONGTYPE/);
      const kept = await raw.zrange(`${prefix}unanswered`, 0, -1);
      assert.deepEqual(
        kept.sort(),
        ["1:oBad", `${nA}:oA`, `${nB}:o:B`, `${nC}:oC`].sort(),
        "a failed page drops nothing",
      );
      await raw.del(`${prefix}hist:oBad`);
      const page = await store.unansweredReplies(Date.now(), 100);
      assert.deepEqual(page.map((r) => [r.followerId, r.n, r.item.id]).sort(), [
        ["o:B", nB, "rB"],
        ["oA", nA, "rA"],
      ]);
      assert.deepEqual(
        (await raw.zrange(`${prefix}unanswered`, 0, -1)).sort(),
        [`${nA}:oA`, `${nB}:o:B`].sort(),
        "the answered and the gone lose their members",
      );
    } finally {
      await raw.quit();
      await store.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
