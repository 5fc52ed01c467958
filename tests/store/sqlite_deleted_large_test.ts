// A large bridge.sqlite deleted under a running main.ts was written back with node:sqlite's
// backup() on the thread that answers WeChat, which in Deno runs whole within the call (864 ms
// at 100 MB): every webhook waited for it. Now the store's worker makes the copy. Seen without a
// clock: a webhook sent while the copy is being written is answered before the copy is in place.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { connectAgent, fullHistory, post, textXml } from "../helpers/agent.ts";
import {
  killBridge as kill,
  type SpawnedBridge,
  spawnOnDefaultStore as spawn,
  waitReady,
} from "../helpers/spawn.ts";
import { fileExists as exists, withTempDir } from "./_durable_store_cases.ts";

const B = "/im_component/wx_official_account";
/** Enough that the copy takes hundreds of ms here, far longer than a webhook's answer. */
const FILLER_MB = 100;

/** A bridge.sqlite that is mostly one table of its own: the backup copies every page. */
function makeLargeDatabase(path: string): void {
  const db = new DatabaseSync(path);
  try {
    db.exec("CREATE TABLE filler (b BLOB NOT NULL)");
    db.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${FILLER_MB})
      INSERT INTO filler SELECT randomblob(1048576) FROM n`);
  } finally {
    db.close();
  }
}

/** Resolves once `check` is true, polling; false if it never was within 20 s. */
async function until(check: () => boolean, everyMs: number): Promise<boolean> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  return true;
}

let msgId = 84_000_000;
const send = async (p: SpawnedBridge, content: string) => {
  const res = await post(
    `${p.base}${B}/send_xml`,
    textXml("oLarge", "gh_account", content, String(msgId++)),
  );
  return `${res.status} ${res.text}`;
};

Deno.test("a large bridge.sqlite deleted while main.ts runs: webhooks are answered while it is written back", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    makeLargeDatabase(path);
    let p = spawn(dir);
    try {
      await waitReady(p);
      const a1 = await connectAgent(`${p.wsBase}${B}/msg?userid=a1`);
      assert.equal(await send(p, "before"), "200 success");
      await a1.waitForCount(2, 5000); // the assignment notice and the message
      await a1.close();

      await t.step(
        "a webhook sent while the copy is written is answered before it is in place",
        async () => {
          for (const suffix of ["", "-wal", "-shm"]) Deno.removeSync(path + suffix);
          // The guard looks every second; the copy is written beside the file, then renamed.
          assert.ok(
            await until(() => exists(`${path}.restoring`), 2),
            "the write-back never began",
          );
          assert.equal(await send(p, "during"), "200 success");
          assert.ok(
            !exists(path),
            "the webhook was answered only once the write-back was done: it held the thread",
          );
        },
      );
      await t.step("the write-back completes", async () => {
        assert.ok(await until(() => exists(path), 20), "bridge.sqlite was not written back");
      });
      await t.step("after SIGTERM and a restart both messages are there", async () => {
        await kill(p, "SIGTERM");
        p = spawn(dir);
        await waitReady(p);
        const history = (await fullHistory(p.base, "a1", "oLarge"))
          .filter((m) => m.direction === "in")
          .map((m) => String((m.msg as { content?: string }).content));
        assert.deepEqual(history, ["before", "during"]);
      });
    } finally {
      await kill(p, "SIGKILL");
    }
  });
});
