// README: HISTORY_RETENTION_DAYS (30) — "a conversation's history expires this long after its
// last message". On the default store (SQLite) each history row expires on its own, 30 days
// after it was written (sqlite_journal.ts: expires_at = the commit's time + retention, never
// moved on), so a conversation still going loses its beginning while it goes on: a follower who
// wrote on day 0, day 20 and day 40 has, on day 45, a history without its first message (the
// order, the complaint, what the agent promised), five days after its last message. Redis keeps
// a conversation while it is active (its hash's expiry renewed on each message), as the README
// says. Expected on SQLite too: nothing of a conversation expires before its last message is
// HISTORY_RETENTION_DAYS old.

import assert from "node:assert/strict";
import { loadConfig } from "../../src/config.ts";
import { createServer } from "../../src/server.ts";
import { fullHistory, post, textXml } from "../helpers/agent.ts";

const B = "/im_component/wx_official_account";
const DAY = 24 * 3600_000;

Deno.test("SQLite keeps a conversation whole until its last message is HISTORY_RETENTION_DAYS old", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-retention-" });
  let clock = Date.UTC(2026, 0, 1, 2, 0, 0);
  const config = loadConfig({ DATA_DIR: dataDir, STORE: "sqlite", HISTORY_RETENTION_DAYS: "30" });
  try {
    const first = await createServer(config, { now: () => clock });
    const { port } = await first.listen({ port: 0, hostname: "127.0.0.1" });
    const base = `http://127.0.0.1:${port}`;
    for (const [day, id] of [[0, "8850000"], [20, "8850020"], [40, "8850040"]] as const) {
      clock = Date.UTC(2026, 0, 1, 2, 0, 0) + day * DAY;
      const res = await post(
        `${base}${B}/send_xml`,
        textXml("oLong", "ann", `day ${day}`, id, String(Math.floor(clock / 1000))),
      );
      assert.equal(res.text, "success");
    }
    assert.equal((await fullHistory(base, "ann", "oLong")).length, 3);
    await first.stop();

    // Day 45: the last message is five days old. A start prunes what has expired.
    clock = Date.UTC(2026, 0, 1, 2, 0, 0) + 45 * DAY;
    const second = await createServer(config, { now: () => clock });
    const again = await second.listen({ port: 0, hostname: "127.0.0.1" });
    try {
      const texts = (await fullHistory(`http://127.0.0.1:${again.port}`, "ann", "oLong"))
        .map((m) => (m["msg"] as { content?: string }).content);
      assert.deepEqual(texts, ["day 0", "day 20", "day 40"]);
    } finally {
      await second.stop();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
