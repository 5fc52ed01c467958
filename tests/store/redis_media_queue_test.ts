// The Redis store's media queue (MediaQueue) as two instances see it: who may work a follower's
// queue, what the routing script queues behind it, and how the last pop ends it.

import assert from "node:assert/strict";
import type { Redis } from "redis";
import { createSystemEnvelope, type Envelope } from "../../src/protocol/envelope.ts";
import type { RedisStore } from "../../src/store/redis_store.ts";
import type { InboundItem, Presence } from "../../src/core/store.ts";
import { createSharedMediaIntake } from "../../src/media/shared_intake.ts";
import type { MediaPipeline } from "../../src/media/pipeline.ts";
import {
  findTestRedis,
  flushPrefix,
  openPrefixedStore,
  rawClient,
  uniquePrefix,
} from "./_redis_test_env.ts";

const REDIS_URL = await findTestRedis();

const openStore = (prefix: string) => openPrefixedStore(REDIS_URL!, prefix);

/** Two stores of one company (two instances) and a plain client, under a prefix of their own. */
async function withTwoStores(
  fn: (a: RedisStore, b: RedisStore, raw: Redis, prefix: string) => Promise<void>,
): Promise<void> {
  const prefix = uniquePrefix("mediaq");
  const a = await openStore(prefix);
  const b = await openStore(prefix);
  const raw = rawClient(REDIS_URL!);
  try {
    await fn(a, b, raw, prefix);
  } finally {
    await raw.quit();
    await a.close();
    await b.close();
    await flushPrefix(REDIS_URL!, prefix);
  }
}

let msgId = 0;
function item(from: string, msgType: "text" | "image"): InboundItem {
  const id = String(++msgId);
  const msg = msgType === "text" ? { content: `hello | ${id}\n"/"` } : { media_id: `m${id}` };
  const envelope: Envelope = {
    data: {
      id,
      name: from,
      avatar: "",
      msg_type: msgType,
      contact_id: from,
      company_id: "acme",
      send_time: 1_700_000_000,
      msg,
    },
    result: { code: msgType === "text" ? 1001 : 1002, message: "common" },
  };
  return {
    followerId: from,
    name: "关注者",
    to: "gh_account",
    envelope,
    kind: "message",
    receivedAt: Date.now(),
    dedupKey: id,
  };
}

const presence: Presence = { isOnline: () => true, onlineAgents: () => new Set() };

Deno.test({
  name:
    "the Redis media queue: one instance works it, the script queues behind it, the last pop ends it",
  ignore: REDIS_URL === null,
  async fn(t) {
    const prefix = uniquePrefix("mediaq");
    const a = await openStore(prefix);
    const b = await openStore(prefix);
    try {
      await b.agentOnline("alice", presence);
      const image = item("oQ", "image");
      const text = item("oQ", "text");

      await t.step(
        "a follower with a queue has its next message queued, on any instance",
        async () => {
          await a.mediaQueue.push(image, "https://bridge.example");
          const other = item("oOther", "text");
          const { value } = await b.acceptInbound([text, other], presence);
          assert.deepEqual(value, ["queued", "delivered"]);
          assert.deepEqual(await b.mediaQueue.followers(), ["oQ"]);
        },
      );

      await t.step(
        "one instance holds the lease; the other can neither take, read nor pop",
        async () => {
          assert.equal(await a.mediaQueue.lease("oQ", 5_000), true);
          assert.equal(await b.mediaQueue.lease("oQ", 5_000), false);
          assert.equal(await b.mediaQueue.head("oQ"), null);
          const head = await a.mediaQueue.head("oQ");
          assert.ok(head);
          assert.equal(await b.mediaQueue.pop("oQ", head), -1);
        },
      );

      await t.step("the head comes back as it was pushed; storing it pops it", async () => {
        const head = await a.mediaQueue.head("oQ");
        assert.ok(head);
        assert.deepEqual(head.item, image);
        assert.equal(head.publicBase, "https://bridge.example");
        assert.equal(head.stored, false);
        const { value } = await a.acceptInbound([{ ...head.item, fromQueue: head.raw }], presence);
        assert.deepEqual(value, ["delivered"]);
        // Stored again from the same entry (a retry of the call): it is no longer the head.
        const again = await a.acceptInbound([{ ...head.item, fromQueue: head.raw }], presence);
        assert.deepEqual(again.value, ["duplicate"]);
        assert.deepEqual(again.deliveries, []);
      });

      await t.step(
        "a message the script queued comes back whole, without a media base",
        async () => {
          const head = await a.mediaQueue.head("oQ");
          assert.ok(head);
          assert.deepEqual(head.item, text);
          assert.equal(head.publicBase, null);
          assert.equal(head.stored, false);
          const { value, deliveries } = await a.acceptInbound(
            [{ ...head.item, fromQueue: head.raw }],
            presence,
          );
          assert.deepEqual(value, ["delivered"]);
          assert.deepEqual(deliveries.map((e) => e.envelope.data.msg), [text.envelope.data.msg]);
        },
      );

      await t.step(
        "storing the last ends the queue and the lease, which a renewal does not make again",
        async () => {
          assert.deepEqual(await a.mediaQueue.followers(), []);
          assert.equal(await a.mediaQueue.head("oQ"), null);
          assert.equal(await a.mediaQueue.renew("oQ", 5_000), false);
          assert.equal(await b.mediaQueue.lease("oQ", 5_000), true);
          await b.mediaQueue.release("oQ");
          const { value } = await b.acceptInbound([item("oQ", "text")], presence);
          assert.deepEqual(value, ["delivered"]);
        },
      );

      await t.step("a copy of a stored message at the head is marked stored", async () => {
        const again = item("oR", "image");
        await a.mediaQueue.push(again, "https://bridge.example");
        await a.mediaQueue.push(again, "https://bridge.example");
        assert.equal(await a.mediaQueue.lease("oR", 5_000), true);
        const first = await a.mediaQueue.head("oR");
        assert.ok(first);
        await a.acceptInbound([{ ...first.item, fromQueue: first.raw }], presence);
        const copy = await a.mediaQueue.head("oR");
        assert.equal(copy?.stored, true);
        assert.equal(await a.mediaQueue.pop("oR", copy), 0);
      });
    } finally {
      await a.close();
      await b.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});

Deno.test({
  name: "a queued message whose preview cut an emoji in two comes off the queue",
  ignore: REDIS_URL === null,
  async fn() {
    const prefix = uniquePrefix("mediaq");
    const a = await openStore(prefix);
    try {
      await a.agentOnline("alice", presence);
      // previewOf keeps 80 UTF-16 units: here the 80th is the first half of the emoji. The
      // journal of a bridge without Redis holds such texts behind media (recover pushes them).
      const text = item("oE", "text");
      text.envelope.data.msg = { content: `${"a".repeat(79)}😀 and more` };
      await a.mediaQueue.push(text, "https://bridge.example");
      assert.equal(await a.mediaQueue.lease("oE", 5_000), true);
      const head = await a.mediaQueue.head("oE");
      assert.ok(head);
      assert.deepEqual(head.item.envelope.data.msg, text.envelope.data.msg);
      const { value } = await a.acceptInbound([{ ...head.item, fromQueue: head.raw }], presence);
      assert.deepEqual(value, ["delivered"]);
      assert.equal(await a.mediaQueue.head("oE"), null);
    } finally {
      await a.close();
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});

Deno.test({
  name: "an instance that finds a swept follower's queue already ended leaves no lease behind",
  ignore: REDIS_URL === null,
  fn: () =>
    withTwoStores(async (a, b, raw, prefix) => {
      // What a sweep sees when the last pop ends the queue between its SMEMBERS and its lease.
      await raw.sadd(`${prefix}mediaq_followers`, "oGone");
      const intake = createSharedMediaIntake({
        pipeline: {} as MediaPipeline,
        queue: a.mediaQueue,
        accept: () => Promise.reject(new Error("nothing is queued")),
      });
      await intake.recover();
      await intake.drain();
      intake.stop();
      assert.deepEqual(await b.mediaQueue.followers(), []);
      // The follower's next media, on the other instance, is worked there at once.
      assert.equal(await b.mediaQueue.lease("oGone", 5_000), true);
    }),
});

Deno.test({
  name: "a head set aside moves, unread, to the follower's aside list; the next one is the head",
  ignore: REDIS_URL === null,
  fn: () =>
    withTwoStores(async (a, b, raw, prefix) => {
      // An entry no instance can read (the script's cjson refuses it), then a good one.
      await raw.rpush(`${prefix}mediaq:oBad`, "{not json");
      await raw.sadd(`${prefix}mediaq_followers`, "oBad");
      const good = item("oBad", "image");
      await a.mediaQueue.push(good, "https://bridge.example");
      assert.equal(await a.mediaQueue.lease("oBad", 5_000), true);
      await assert.rejects(a.mediaQueue.head("oBad"));
      // Only the instance holding the lease may set a head aside.
      assert.equal(await b.mediaQueue.setAside("oBad"), -1);
      assert.equal(await a.mediaQueue.setAside("oBad"), 1);
      assert.deepEqual(await raw.lrange(`${prefix}mediaq_aside:oBad`, 0, -1), ["{not json"]);
      const head = await a.mediaQueue.head("oBad");
      assert.equal(head?.item.envelope.data.id, good.envelope.data.id);
      // The last one set aside ends the queue, as the last pop does.
      assert.equal(await a.mediaQueue.setAside("oBad"), 0);
      assert.deepEqual(await a.mediaQueue.followers(), []);
    }),
});

const revoked = (followerId: string) =>
  createSystemEnvelope({ event: "user_authorization_revoke", follower_id: followerId, text: "-" }, {
    id: `revoke-${followerId}`,
    companyId: "acme",
    sendTime: 0,
  });

Deno.test({
  name: "forgetting a follower clears its media queue and its aside list, on every instance",
  ignore: REDIS_URL === null,
  fn: () =>
    withTwoStores(async (a, b, raw, prefix) => {
      await a.agentOnline("alice", presence);
      // Its first message is media, still being fetched: no contact yet, only the queue.
      await a.mediaQueue.push(item("oForget", "image"), "https://bridge.example");
      assert.deepEqual((await b.acceptInbound([item("oForget", "text")], presence)).value, [
        "queued",
      ]);
      await raw.rpush(`${prefix}mediaq_aside:oForget`, "{set aside");
      assert.equal((await b.forgetFollower("oForget", revoked("oForget"))).value, true);
      assert.equal(await raw.exists(`${prefix}mediaq:oForget`, `${prefix}mediaq_aside:oForget`), 0);
      assert.deepEqual(await a.mediaQueue.followers(), []);
      assert.equal(await a.mediaQueue.head("oForget"), null);
      // Writing again starts afresh: delivered at once, not behind the old media.
      const next = item("oForget", "text");
      const { value, deliveries } = await a.acceptInbound([next], presence);
      assert.deepEqual(value, ["delivered"]);
      assert.deepEqual(
        deliveries.map((e) => e.envelope.data.id).filter((id) => id === next.envelope.data.id),
        [next.envelope.data.id],
      );
    }),
});

Deno.test({
  name: "a head being fetched when its follower is forgotten is not stored afterwards",
  ignore: REDIS_URL === null,
  fn: () =>
    withTwoStores(async (a, b) => {
      await a.agentOnline("alice", presence);
      await a.mediaQueue.push(item("oGoing", "image"), "https://bridge.example");
      assert.equal(await a.mediaQueue.lease("oGoing", 5_000), true);
      const head = await a.mediaQueue.head("oGoing");
      assert.ok(head);
      // Instance a is fetching the picture when the revoke reaches instance b.
      await b.forgetFollower("oGoing", revoked("oGoing"));
      const { value, deliveries } = await a.acceptInbound(
        [{ ...head.item, fromQueue: head.raw }],
        presence,
      );
      assert.deepEqual(value, ["duplicate"]);
      assert.deepEqual(deliveries, []);
      assert.equal(await a.getContact("oGoing"), null);
      assert.equal(await a.mediaQueue.renew("oGoing", 5_000), false, "its lease went with it");
    }),
});

Deno.test({
  name:
    "an event without a MsgId stored off the queue is popped in that step: an instance that dies then leaves nothing to deliver again",
  ignore: REDIS_URL === null,
  fn: () =>
    withTwoStores(async (a, b, raw, prefix) => {
      await a.agentOnline("alice", presence);
      // A menu tap: no MsgId, so its envelope id was made at the webhook and its dedup key
      // (FromUserName, CreateTime, event, EventKey) lapses like any other.
      const click = item("oDies", "text");
      click.kind = "event";
      click.event = "CLICK";
      click.dedupKey = "e|oDies|1700000000|CLICK|menu_1";
      click.envelope.data.id = crypto.randomUUID();
      click.envelope.data.msg_type = "system";
      await a.mediaQueue.push(click, "https://bridge.example");
      assert.equal(await a.mediaQueue.lease("oDies", 5_000), true);
      const head = await a.mediaQueue.head("oDies");
      assert.ok(head);
      const { deliveries } = await a.acceptInbound(
        [{ ...head.item, fromQueue: head.raw }],
        presence,
      );
      // The assignment notice, then the tap.
      assert.equal(deliveries.at(-1)?.envelope.data.id, click.envelope.data.id);
      // Instance a dies here, before anything else; its lease lapses, and so, when every
      // instance stays down for an hour, does the tap's dedup key.
      await a.mediaQueue.release("oDies");
      await raw.del(`${prefix}dedup:${click.dedupKey}`);
      assert.equal(await b.mediaQueue.lease("oDies", 5_000), true);
      assert.equal(await b.mediaQueue.head("oDies"), null, "nothing is left to store again");
      assert.deepEqual(await b.mediaQueue.followers(), []);
    }),
});
