// The SQLite pruner deletes expired rows only among the table's oldest 5,000 (PRUNE_CHUNK) and
// stops at the first chunk in which none has expired (sqlite_journal.ts pruneExpired). Expiry
// is written with each row (its commit's time + HISTORY_RETENTION_DAYS), so it is in id order
// only while the retention never shrinks: an operator who cuts HISTORY_RETENTION_DAYS from 365
// to 30 (a privacy review, a regulator) leaves 5,000 rows of the old year at the head of the
// table, and from then on no row is ever pruned, those written under the 30 days too, for as
// long as the old rows live (up to a year): followers' messages outlive the retention the
// bridge was told to keep. Expected: a row past its expiry is deleted, wherever it is in the
// table.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { loadConfig } from "../../src/config.ts";
import { createServer } from "../../src/server.ts";
import { post, textXml } from "../helpers/agent.ts";

const B = "/im_component/wx_official_account";
const DAY = 24 * 3600_000;
const START = Date.UTC(2026, 0, 1, 2, 0, 0);

async function run(
  dataDir: string,
  retentionDays: number,
  now: () => number,
  fn: (base: string) => Promise<void>,
): Promise<void> {
  const config = loadConfig({
    DATA_DIR: dataDir,
    STORE: "sqlite",
    HISTORY_RETENTION_DAYS: String(retentionDays),
  });
  const server = await createServer(config, { now });
  const { port } = await server.listen({ port: 0, hostname: "127.0.0.1" });
  try {
    await fn(`http://127.0.0.1:${port}`);
  } finally {
    await server.stop();
  }
}

Deno.test("SQLite prunes rows past their expiry after HISTORY_RETENTION_DAYS was cut", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-prune-cut-" });
  let clock = START;
  const now = () => clock;
  try {
    // A year's retention: 5,001 messages (the pruner's first chunk and one more).
    await run(dataDir, 365, now, async (base) => {
      for (let i = 0; i < 5_001; i += 50) {
        await Promise.all(
          Array.from({ length: Math.min(50, 5_001 - i) }, (_, k) =>
            post(
              `${base}${B}/send_xml`,
              textXml(`oOld${(i + k) % 40}`, "gh_acct", "old", String(8860000 + i + k)),
            )),
        );
      }
    });
    // Cut to 30 days; the next day a follower writes.
    clock = START + DAY;
    await run(dataDir, 30, now, async (base) => {
      const res = await post(
        `${base}${B}/send_xml`,
        textXml("oRecent", "gh_acct", "under the 30 days", "8869999"),
      );
      assert.equal(res.text, "success");
    });
    // Day 40: that message is ten days past its 30. A start prunes what has expired.
    clock = START + 40 * DAY;
    await run(dataDir, 30, now, () => Promise.resolve());
    const db = new DatabaseSync(`${dataDir}/bridge.sqlite`, { readOnly: true });
    try {
      const row = db.prepare(
        "SELECT count(*) AS n FROM history WHERE follower_id = 'oRecent' AND expires_at <= ?",
      ).get(clock) as { n: number };
      assert.equal(row.n, 0, "a row past its expiry (written under the 30 days) is still kept");
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
