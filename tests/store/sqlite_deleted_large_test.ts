// A large bridge.sqlite deleted under a running main.ts was written back with node:sqlite's
// backup() on the thread that answers WeChat, which in Deno runs whole within the call (864 ms
// at 100 MB): every webhook waited for it. Now the store's worker makes the copy. Seen without a
// clock: with the worker's thread held in the copy (strace), a webhook is answered and the copy
// is not in place; let go, the copy is made. (Timed against the copy instead, the test lost the race on a
// busy machine: the webhook's answer could come after the copy, or the copy, on a thread nicer
// than the rest, after a 20 s wait.)

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { connectAgent, fullHistory, post, textXml } from "../helpers/agent.ts";
import {
  killBridge as kill,
  type SpawnedBridge,
  spawnOnDefaultStore as spawn,
  waitReady,
} from "../helpers/spawn.ts";
import { canTrace, holdThread, mustTrace, threadsNamed } from "../helpers/thread_hold.ts";
import { fileExists as exists, withTempDir } from "./_durable_store_cases.ts";

const B = "/im_component/wx_official_account";
/** What the guard logs once the copy is in place. */
const WRITTEN_BACK = /bridge\.sqlite is written back/;
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

/** `promise`, or a failure saying `what` did not happen within a bound no healthy run nears
 * (it only keeps a broken bridge from hanging the suite). */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} (not within 120 s)`)), 120_000);
  });
  try {
    return await Promise.race([promise, bound]);
  } finally {
    clearTimeout(timer);
  }
}

let msgId = 84_000_000;
const send = async (p: SpawnedBridge, content: string) => {
  const res = await post(
    `${p.base}${B}/send_xml`,
    textXml("oLarge", "gh_account", content, String(msgId++)),
  );
  return `${res.status} ${res.text}`;
};

if (!canTrace && !mustTrace) {
  // deno-lint-ignore no-console
  console.log("Skipping the large bridge.sqlite test: strace is missing or may not trace here");
}

Deno.test({
  name:
    "a large bridge.sqlite deleted while main.ts runs: webhooks are answered while it is written back",
  ignore: !canTrace && !mustTrace,
  fn: async (t) => {
    if (!canTrace) throw new Error("strace is missing or may not trace here (CI=true)");
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
          "with the worker held in its copy, a webhook is answered and the copy is not in place",
          async () => {
            // The store's one Worker (the applier), held at its first call on the copy.
            const workers = await threadsNamed(p.pid, /^worker-\d+$/);
            assert.equal(workers.length, 1, `one worker thread, found ${workers.length}`);
            const held = await holdThread(workers[0]!, `${path}.restoring`);
            try {
              for (const suffix of ["", "-wal", "-shm"]) Deno.removeSync(path + suffix);
              // The guard looks every second, then asks the worker for the copy.
              const copiedBy = await within(
                Promise.race([
                  held.entered.then(() => "the worker"),
                  p.printed(WRITTEN_BACK).then(() => "another thread"),
                ]),
                "the write-back never began",
              );
              assert.equal(copiedBy, "the worker", "the copy was made on the thread that answers");
              assert.equal(await send(p, "during"), "200 success");
              assert.ok(
                !exists(path),
                "the webhook was answered only once the write-back was done: it held the thread",
              );
            } finally {
              await held.release();
            }
          },
        );
        await t.step("let go, the worker writes it back", async () => {
          await within(
            p.printed(WRITTEN_BACK),
            "bridge.sqlite was not written back",
          );
          assert.ok(exists(path), "bridge.sqlite is in place");
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
  },
});
