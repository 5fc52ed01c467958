// A contact's last-message preview (GET contacts, shown in the console's list) is part of its
// conversation: once the history has expired (HISTORY_RETENTION_DAYS after that message) the
// preview goes too, on every store, while the contact and its binding to its agent stay. It
// outlived the history before: a follower's words were shown months after the history was gone.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { loadConfig } from "../../src/config.ts";
import { createServer } from "../../src/server.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const DAY = 24 * 3600_000;
const START = Date.UTC(2026, 0, 1, 2, 0, 0);
const REDIS_URL = await findTestRedis();

interface ListedContact {
  contact_id: string;
  agent_id: string | null;
  last_message: { preview: string } | null;
}

async function listed(base: string): Promise<ListedContact | undefined> {
  const res = await fetch(`${base}${B}/contacts?userid=ann`);
  const body = await res.json() as { contacts: ListedContact[] };
  return body.contacts.find((c) => c.contact_id === "oPreview");
}

async function check(t: Deno.TestContext, env: Record<string, string>): Promise<void> {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-preview-retention-" });
  let clock = START;
  const config = loadConfig({ DATA_DIR: dataDir, HISTORY_RETENTION_DAYS: "30", ...env });
  const server = await createServer(config, { now: () => clock });
  const { port } = await server.listen({ port: 0, hostname: "127.0.0.1" });
  const base = `http://127.0.0.1:${port}`;
  const ann = await connectAgent(`ws://127.0.0.1:${port}${B}/msg?userid=ann`);
  try {
    const res = await post(
      `${base}${B}/send_xml`,
      textXml("oPreview", "ann", "order 42, my address is …", "8870001"),
    );
    assert.equal(res.text, "success");
    await t.step("while the history is kept, so is the preview", async () => {
      clock = START + 29 * DAY;
      assert.equal((await listed(base))?.last_message?.preview, "order 42, my address is …");
    });
    await t.step(
      "once the history has expired, the preview is gone, the contact kept",
      async () => {
        clock = START + 30 * DAY;
        const contact = await listed(base);
        assert.equal(contact?.agent_id, "ann");
        assert.equal(contact?.last_message, null);
      },
    );
  } finally {
    await ann.close();
    await server.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

for (const store of ["sqlite", "kv", "memory"]) {
  Deno.test(`GET contacts drops a preview with its history (STORE=${store})`, async (t) => {
    await check(t, { STORE: store });
  });
}

Deno.test({
  name: "GET contacts drops a preview with its history (Redis)",
  ignore: REDIS_URL === null,
  async fn(t) {
    const prefix = uniquePrefix("preview-retention");
    const url = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
      encodeURIComponent(prefix)
    }`;
    try {
      await check(t, { REDIS_URL: url });
    } finally {
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});

Deno.test("SQLite keeps no preview at rest once its conversation has expired", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-preview-at-rest-" });
  let clock = START;
  const config = loadConfig({ DATA_DIR: dataDir, STORE: "sqlite", HISTORY_RETENTION_DAYS: "30" });
  try {
    const first = await createServer(config, { now: () => clock });
    const { port } = await first.listen({ port: 0, hostname: "127.0.0.1" });
    const ann = await connectAgent(`ws://127.0.0.1:${port}${B}/msg?userid=ann`);
    const res = await post(
      `http://127.0.0.1:${port}${B}/send_xml`,
      textXml("oPreview", "ann", "order 42, my address is …", "8870002"),
    );
    assert.equal(res.text, "success");
    await ann.close();
    await first.stop();
    // Day 31: a start prunes what has expired.
    clock = START + 31 * DAY;
    const second = await createServer(config, { now: () => clock });
    await second.listen({ port: 0, hostname: "127.0.0.1" });
    await second.stop();
    const db = new DatabaseSync(`${dataDir}/bridge.sqlite`, { readOnly: true });
    try {
      const row = db.prepare("SELECT json FROM contacts WHERE follower_id = 'oPreview'").get() as {
        json: string;
      };
      const contact = JSON.parse(row.json);
      assert.equal(contact.agent_id, "ann");
      assert.equal(contact.last_message, null);
      assert.ok(!row.json.includes("order 42"));
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
