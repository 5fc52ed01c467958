// Review of retention15: the running pruner clears an expired conversation's preview in the
// contacts table, but not in the model the store answers from. The next change to that contact
// without a message (a rename, labels, mark read, a transfer, a window notice when the retention
// is under two days) writes the whole contact back from the model, its old preview with it; and
// with no history row left, no prune ever finds that follower again: the follower's words stay
// in bridge.sqlite (and its backups) for good. Waits for one real prune interval (60 s).
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { baseStoreOptions, presenceOf, textItem, withTempDir } from "./_durable_store_cases.ts";

const DAY = 24 * 3600_000;

function storedPreview(path: string): unknown {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const row = db.prepare("SELECT json FROM contacts WHERE follower_id = 'oBack'").get() as {
      json: string;
    };
    return JSON.parse(row.json).last_message;
  } finally {
    db.close();
  }
}

Deno.test({
  name: "a contact renamed after its conversation expired keeps no preview at rest",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      let clock = Date.now();
      const store = await openSqliteStore(path, {
        ...baseStoreOptions(),
        now: () => clock,
        retentionMs: 1 * DAY,
      });
      try {
        const online = presenceOf("ann");
        await store.agentOnline("ann", online);
        await store.acceptInbound(
          [{ ...textItem("oBack", "my card is 4111…"), receivedAt: clock }],
          online,
        );
        clock += 2 * DAY;
        // One prune interval (60 s) and the worker's apply.
        await new Promise((r) => setTimeout(r, 62_000));
        assert.equal(storedPreview(path), null, "the pruner cleared it");
        await store.renameContact("ann", "oBack", "Mr Back");
      } finally {
        await store.close();
      }
      assert.equal(storedPreview(path), null, "written back by the rename");
    });
  },
});
