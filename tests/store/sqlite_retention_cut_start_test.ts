// README: a conversation's history expires HISTORY_RETENTION_DAYS after its last message, the
// value the bridge runs with. Each row's expiry is written with it, so after the value was cut
// (365 to 30 days: a privacy review) a conversation of last month was kept for the rest of the
// old year. A start under another value moves the old expiries to it, once.

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
  days: number,
  at: number,
  fn: (base: string) => Promise<void> = () => Promise.resolve(),
): Promise<void> {
  const config = loadConfig({
    DATA_DIR: dataDir,
    STORE: "sqlite",
    HISTORY_RETENTION_DAYS: String(days),
  });
  const server = await createServer(config, { now: () => at });
  const { port } = await server.listen({ port: 0, hostname: "127.0.0.1" });
  try {
    await fn(`http://127.0.0.1:${port}`);
  } finally {
    await server.stop();
  }
}

function rowsOf(dataDir: string, follower: string): number {
  const db = new DatabaseSync(`${dataDir}/bridge.sqlite`, { readOnly: true });
  try {
    return Number(
      (db.prepare("SELECT count(*) AS n FROM history WHERE follower_id = ?").get(follower) as {
        n: number;
      }).n,
    );
  } finally {
    db.close();
  }
}

const write = (follower: string, id: string) => async (base: string) => {
  const res = await post(`${base}${B}/send_xml`, textXml(follower, "gh_acct", "hello", id));
  assert.equal(res.text, "success");
};

Deno.test("a start under a cut HISTORY_RETENTION_DAYS expires what is older than the new value", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-retention-cut-start-" });
  try {
    await run(dataDir, 365, START, write("oYear", "8880001"));
    await t.step("day 40 under 30 days: last month's conversation is gone", async () => {
      await run(dataDir, 30, START + 40 * DAY, write("oNew", "8880002"));
      assert.equal(rowsOf(dataDir, "oYear"), 0);
      assert.equal(rowsOf(dataDir, "oNew"), 1);
    });
    await t.step(
      "day 41, 30 days again: what was written under 30 is not moved twice",
      async () => {
        await run(dataDir, 30, START + 41 * DAY);
        assert.equal(rowsOf(dataDir, "oNew"), 1);
      },
    );
    await t.step("back to 365 days: day 40's message is kept to day 405, not 70", async () => {
      await run(dataDir, 365, START + 71 * DAY);
      assert.equal(rowsOf(dataDir, "oNew"), 1);
      await run(dataDir, 365, START + 405 * DAY);
      assert.equal(rowsOf(dataDir, "oNew"), 0);
    });
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
