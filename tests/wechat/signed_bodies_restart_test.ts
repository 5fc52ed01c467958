// With WECHAT_MAX_AGE_S, a plain signed callback URL carries one body: on the embedded stores
// that outlive the process (SQLite by default, STORE=kv) that holds across a kill -9 too, so a
// captured URL replayed with another body after a restart is refused, WeChat's byte-identical
// retry still passes (and is delivered once), and past the window the age check refuses it.

import assert from "node:assert/strict";
import { computeSignature } from "../../src/wechat/signature.ts";
import { journalDirOf, openSqliteStore } from "../../src/store/sqlite_store.ts";
import { readJournalDir } from "../../src/store/sqlite_journal_file.ts";
import { openKvStore } from "../../src/store/kv_store.ts";
import { connectAgent, fullHistory, post, textXml } from "../helpers/agent.ts";
import { killBridge, spawnBridge, type SpawnedBridge, waitReady } from "../helpers/spawn.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "signed-restart-token";
const MAX_AGE_S = 20;

/** A callback query as WeChat signs it, at `timestamp` (s). */
function signedQuery(nonce: string, timestamp = Math.floor(Date.now() / 1000)): string {
  const signature = computeSignature(TOKEN, String(timestamp), nonce);
  return new URLSearchParams({ signature, timestamp: String(timestamp), nonce }).toString();
}

async function start(dataDir: string, store: string): Promise<SpawnedBridge> {
  const bridge = spawnBridge({
    DATA_DIR: dataDir,
    STORE: store,
    WECHAT_TOKEN: TOKEN,
    WECHAT_MAX_AGE_S: String(MAX_AGE_S),
    LOG_LEVEL: "error",
  });
  await waitReady(bridge);
  return bridge;
}

for (const store of ["", "kv"]) {
  const name = store === "" ? "the default store (SQLite)" : `STORE=${store}`;
  Deno.test(`a signed URL carries one body across a kill -9 on ${name}`, async () => {
    const dataDir = await Deno.makeTempDir({ prefix: "signed-restart-" });
    let bridge = await start(dataDir, store);
    try {
      const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=ann`);
      const query = signedQuery("nonce-restart");
      // Older, still in the window now, past it soon after the restart.
      const oldStamp = Math.floor(Date.now() / 1000) - (MAX_AGE_S - 6);
      const oldQuery = signedQuery("nonce-old", oldStamp);
      const real = textXml("oReal", "ann", "where is my order?", "8101");
      const oldReal = textXml("oReal", "ann", "an older message", "8102");
      const url = (q: string) => `${bridge.base}${B}/send_xml?${q}`;
      assert.equal((await post(url(query), real)).text, "success");
      assert.equal((await post(url(oldQuery), oldReal)).text, "success");
      // A retry under a signature of its own (WeChat's are not, a replayer's may be): nothing
      // is stored for it but its signature, which is kept all the same.
      const dupQuery = signedQuery("nonce-dup");
      assert.equal((await post(url(dupQuery), real)).text, "success");
      await agent.waitForCount(2);
      await agent.close();
      await killBridge(bridge, "SIGKILL");

      bridge = await start(dataDir, store);
      const forged = textXml("oReal", "ann", "cancel my order", "8103");
      const res = await post(url(query), forged);
      assert.equal(res.status, 401, res.text);
      assert.match(res.text, /already used for another body/);
      assert.equal((await post(url(query), real)).text, "success", "WeChat's retry");
      const dup = await post(url(dupQuery), forged);
      assert.equal(dup.status, 401, dup.text);

      // Past the older URL's window: its signature is stale, as before any restart.
      const staleAtMs = (oldStamp + MAX_AGE_S + 1.5) * 1000;
      await new Promise((r) => setTimeout(r, Math.max(0, staleAtMs - Date.now())));
      const late = await post(url(oldQuery), forged);
      assert.equal(late.status, 401, late.text);
      assert.match(late.text, /Stale signature/);

      const texts = (await fullHistory(bridge.base, "ann", "oReal"))
        .map((item) => (item["msg"] as { content?: string } | undefined)?.content);
      assert.deepEqual(texts, ["where is my order?", "an older message"]);
    } finally {
      await bridge.stop();
      await bridge.output;
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}

const SIGNATURE = "a".repeat(40);

Deno.test("the embedded stores keep a signature's body for a restart until its window ends", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "signed-expiry-" });
  let nowMs = 1_800_000_000_000;
  const options = {
    companyId: "c",
    now: () => nowMs,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 3600_000,
    retentionMs: 24 * 3600_000,
  };
  const sqlitePath = `${dataDir}/bridge.sqlite`;
  const kvPath = `${dataDir}/bridge.kv`;
  try {
    await t.step(
      "sqlite: a callback that stored nothing writes a journal line of its own",
      async () => {
        let store = await openSqliteStore(sqlitePath, options);
        assert.equal(await store.firstBody!(SIGNATURE, "first", 10_000), "first");
        await store.bodiesKept!();
        // In the journal before the answer, as a kill -9 would leave it.
        const lines = readJournalDir(journalDirOf(sqlitePath), 0);
        assert.deepEqual(lines.flatMap((c) => c.s ?? []), [[SIGNATURE, "first", nowMs + 10_000]]);
        await store.close();
        store = await openSqliteStore(sqlitePath, options);
        assert.equal(await store.firstBody!(SIGNATURE, "other", 10_000), "first", "kept");
        await store.close();
        nowMs += 10_001;
        store = await openSqliteStore(sqlitePath, options);
        assert.equal(await store.firstBody!(SIGNATURE, "other", 10_000), "other", "forgotten");
        await store.close();
      },
    );
    await t.step("kv: a callback that stored nothing writes it on its own", async () => {
      nowMs = 1_800_000_000_000;
      const store = await openKvStore(kvPath, options);
      assert.equal(await store.firstBody!(SIGNATURE, "first", 10_000), "first");
      await store.bodiesKept!();
      // Read by another store on the file before this one closes, as after a kill -9.
      let next = await openKvStore(kvPath, options);
      assert.equal(await next.firstBody!(SIGNATURE, "other", 10_000), "first", "kept");
      await next.close();
      await store.close();
      nowMs += 10_001;
      next = await openKvStore(kvPath, options);
      assert.equal(await next.firstBody!(SIGNATURE, "other", 10_000), "other", "forgotten");
      await next.close();
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
