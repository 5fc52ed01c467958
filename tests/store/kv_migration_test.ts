// A DATA_DIR kept by the Deno KV store, made here by the KV store itself, is moved to the
// SQLite store on the first start with the default configuration: nothing accepted is lost,
// seqs go on, the waiting queue keeps its order, WeChat's retries stay duplicates.

import assert from "node:assert/strict";
import { openKvStore } from "../../src/store/kv_store.ts";
import { openStore } from "../../src/store/open_store.ts";
import { loadConfig } from "../../src/config.ts";
import {
  baseStoreOptions,
  describe,
  fileExists,
  presenceOf,
  textItem,
} from "./_durable_store_cases.ts";

Deno.test("the default store moves a Deno KV DATA_DIR to SQLite on first start", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "kv_migration_test_" });
  const retried = textItem("oAnn", "hello from Ann");
  try {
    await t.step("the KV store of today keeps contacts, logs, history, a queue", async () => {
      const kv = await openKvStore(`${dir}/bridge.kv`, baseStoreOptions());
      try {
        await kv.agentOnline("a1", presenceOf("a1"));
        await kv.acceptInbound([retried, textItem("oAnn", "are you there?")], presenceOf("a1"));
        await kv.recordReply("a1", "oAnn", {
          id: "r1",
          name: "a1",
          avatar: "",
          msg_type: "text",
          contact_id: "oAnn",
          company_id: "acme",
          send_time: 1_700_000_100,
          msg: { content: "yes, how can I help?" },
          direction: "out",
          status: "sent",
        });
        await kv.setCapacity("a2", 5);
        kv.markDelivered("a1", 3);
        // Nobody online: these wait, Ben before Cy.
        await kv.acceptInbound([textItem("oBen", "b1"), textItem("oCy", "c1")], presenceOf());
        await kv.acceptInbound([textItem("oBen", "b2")], presenceOf());
        await kv.renameContact("a1", "oAnn", "安女士");
      } finally {
        await kv.close();
      }
    });

    const config = { ...loadConfig({ DATA_DIR: dir }), dataDir: dir };
    assert.equal(config.store, "sqlite");
    let store = await openStore(config);
    try {
      await t.step("the KV files are kept aside, the SQLite file holds it all", () => {
        assert.equal(fileExists(`${dir}/bridge.kv`), false);
        assert.equal(fileExists(`${dir}/bridge.kv.migrated`), true);
        assert.equal(fileExists(`${dir}/bridge.sqlite`), true);
      });
      await t.step("contacts, agents, seqs and cursors are there", async () => {
        const ann = await store.getContact("oAnn");
        assert.equal(ann?.name, "安女士");
        assert.equal(ann?.agent_id, "a1");
        assert.equal(ann?.history_seq, 3);
        const a1 = await store.getAgent("a1");
        assert.equal(a1?.seq, 4);
        assert.equal(a1?.cursor, 3);
        assert.equal(a1?.load, 1);
        assert.equal((await store.getAgent("a2"))?.capacity, 5);
        assert.deepEqual((await store.listContacts("a1")).map((c) => c.follower_id), ["oAnn"]);
      });
      await t.step("the log and the history read as before", async () => {
        assert.deepEqual(describe(await store.readLog("a1", 0, 100)), [
          "assigned:oAnn",
          "hello from Ann",
          "are you there?",
          "yes, how can I help?",
        ]);
        const history = await store.readHistory("oAnn", null, 10);
        assert.deepEqual(history.items.map((i) => [i.direction, i.msg["content"]]), [
          ["in", "hello from Ann"],
          ["in", "are you there?"],
          ["out", "yes, how can I help?"],
        ]);
      });
      await t.step("a WeChat retry of a migrated message is a duplicate", async () => {
        const applied = await store.acceptInbound([retried], presenceOf("a1"));
        assert.deepEqual(applied.value, ["duplicate"]);
      });
      await t.step("seqs go on from the migrated log", async () => {
        const applied = await store.acceptInbound([textItem("oAnn", "after")], presenceOf("a1"));
        assert.deepEqual(applied.deliveries.map((e) => [e.agentId, e.seq]), [["a1", 5]]);
      });
      await t.step("the waiting queue is handed over in its order", async () => {
        assert.equal(await store.queueDepth(), 3);
        const online = await store.agentOnline("a2", presenceOf("a2"));
        assert.deepEqual(describe(online.deliveries), [
          "assigned:oBen",
          "b1",
          "b2",
          "assigned:oCy",
          "c1",
        ]);
      });
      await t.step("a second start does not migrate again", async () => {
        await store.close();
        store = await openStore(config);
        assert.equal((await store.getAgent("a2"))?.seq, 5);
        assert.equal(await store.queueDepth(), 0);
        assert.equal(fileExists(`${dir}/bridge.kv`), false);
      });
    } finally {
      await store.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
