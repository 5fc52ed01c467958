// State has bounds on the default store (SQLite), as on Deno KV (kv_bounded_test.ts): a bridge
// on 60,000 followers (moved from a Deno KV DATA_DIR at its first start) holds about what it
// holds on none, and with only a few contacts kept in memory, routing, lists, history, replies
// and window notices still see every follower, read back from SQLite.

import assert from "node:assert/strict";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { generateContacts } from "../helpers/kv_contacts.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const HOUR = 3600_000;

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts main.ts on `dataDir`, waits until it is ready; returns its RSS (MB), a contacts
 * page of agent1, and a stop function. */
async function spawnBridge(dataDir: string) {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", new URL("../../main.ts", import.meta.url).pathname],
    env: {
      DATA_DIR: dataDir,
      PORT: String(port),
      HOSTNAME: "127.0.0.1",
      LOG_LEVEL: "error",
    },
    stdout: "null",
    stderr: "null",
  }).spawn();
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      const res = await fetch(`${base}/readyz`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error("main.ts never became ready");
    await new Promise((r) => setTimeout(r, 50));
  }
  // `ps`, not /proc: Deno lets only --allow-all read another process's /proc entries.
  const ps = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(child.pid)] })
    .output();
  const rssMb = Number(new TextDecoder().decode(ps.stdout).trim()) / 1024;
  assert.ok(rssMb > 0, "ps gave the RSS");
  return {
    base,
    rssMb,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

Deno.test("main.ts on 60,000 followers in SQLite holds about what it holds on none", async (t) => {
  const empty = await Deno.makeTempDir({ prefix: "sqlite-bounded-empty-" });
  const full = await Deno.makeTempDir({ prefix: "sqlite-bounded-full-" });
  try {
    await generateContacts(`${full}/bridge.kv`, 60_000);
    // The first start moves the KV file into SQLite; the second is what a restart costs.
    await (await spawnBridge(full)).stop();
    const none = await spawnBridge(empty);
    await none.stop();
    const many = await spawnBridge(full);
    try {
      await t.step("the KV file was moved", async () => {
        await Deno.stat(`${full}/bridge.kv.migrated`);
        await assert.rejects(() => Deno.stat(`${full}/bridge.kv`), Deno.errors.NotFound);
      });
      await t.step("RSS grows by less than 15 MB", () => {
        const grown = many.rssMb - none.rssMb;
        assert.ok(grown < 15, `${many.rssMb.toFixed(0)} MB against ${none.rssMb.toFixed(0)} MB`);
      });
      await t.step("GET contacts answers a page of 200 and a cursor to the next", async () => {
        const url = `${many.base}${B}/contacts?userid=agent1`;
        const first = await (await fetch(url)).json();
        assert.equal(first.contacts.length, 200);
        assert.equal(typeof first.next, "string");
        const second = await (await fetch(`${url}&cursor=${encodeURIComponent(first.next)}`))
          .json();
        assert.equal(second.contacts.length, 200);
        const times = [...first.contacts, ...second.contacts].map((c) => c.last_message_time);
        assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first across pages");
        const ids = new Set([...first.contacts, ...second.contacts].map((c) => c.contact_id));
        assert.equal(ids.size, 400, "no contact twice");
      });
    } finally {
      await many.stop();
    }
  } finally {
    await Deno.remove(empty, { recursive: true });
    await Deno.remove(full, { recursive: true });
  }
});

Deno.test("SQLite with 3 contacts in memory still serves every follower", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "sqlite-bounded-hot-" });
  let offset = 0;
  const now = () => Date.now() + offset;
  const options = {
    companyId: "",
    now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 3600_000,
    retentionMs: 30 * 24 * HOUR,
    hotContacts: 3,
  };
  let server = await startBridge({
    store: await openSqliteStore(`${dir}/bridge.sqlite`, options),
    now,
  });
  let agent = await connectAgent(`${server.wsBase}${B}/msg?userid=HA`);
  let msgId = 60_000;
  const write = async (follower: string) => {
    const id = String(++msgId);
    const res = await post(`${server.base}${B}/send_xml`, textXml(follower, "gh_x", id, id));
    assert.equal(res.text, "success");
    return await agent.waitFor((e) => e.data["id"] === id);
  };
  const followers = Array.from({ length: 10 }, (_, i) => `fh${i}`);
  const listAll = async (limit: number) => {
    const all: Array<Record<string, unknown>> = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 20; pages++) {
      const q: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
      const page = await (await fetch(`${server.base}${B}/contacts?userid=HA&limit=${limit}${q}`))
        .json();
      assert.ok(page.contacts.length <= limit);
      all.push(...page.contacts);
      cursor = page.next;
      if (cursor === null) return all;
    }
    throw new Error("contacts never ended");
  };
  try {
    while (!(await server.store.isKnownAgent("HA"))) await new Promise((r) => setTimeout(r, 5));
    for (const f of followers) {
      await write(f);
      offset += 1000;
    }
    await t.step("a follower forgotten from memory still goes to its agent", async () => {
      const assigned = () =>
        agent.messages().filter((e: Received) =>
          e.data.msg?.["event"] === "assigned" && e.data.msg?.["follower_id"] === "fh0"
        ).length;
      assert.equal(assigned(), 1);
      await write("fh0");
      assert.equal(assigned(), 1, "not assigned again");
    });
    await t.step("the contact list pages through all 10, newest first", async () => {
      const all = await listAll(4);
      assert.deepEqual(all.map((c) => c["contact_id"]), [
        "fh0",
        ...followers.slice(1).reverse(),
      ]);
    });
    await t.step("history and a reply reach a forgotten follower", async () => {
      const history = await (await fetch(`${server.base}${B}/history?userid=HA&contact_id=fh3`))
        .json();
      assert.equal(history.messages.length, 1);
      const res = await post(
        `${server.base}${B}/send?userid=HA`,
        JSON.stringify({
          data: { msg_type: "text", contact_id: "fh4", msg: { content: "hello" } },
          result: { code: 1001, message: "common" },
        }),
      );
      assert.equal(res.status, 200, res.text);
    });
    await t.step("window notices reach the agent for every follower, when due", async () => {
      offset += 20 * HOUR;
      await write("fh5"); // a new 48 hours for fh5
      offset += 27.5 * HOUR;
      const closing = () =>
        agent.messages().filter((e) => e.data.msg?.["event"] === "window_closing")
          .map((e) => e.data.msg?.["follower_id"]);
      assert.equal(await server.bridge.sweepWindows(), 9);
      assert.ok(!closing().includes("fh5"), "fh5's window is not closing yet");
      assert.equal(await server.bridge.sweepWindows(), 0, "once each");
      offset += 20 * HOUR;
      assert.equal(await server.bridge.sweepWindows(), 10, "fh5 closing, the 9 others expired");
      await agent.waitFor((e) =>
        e.data.msg?.["event"] === "window_closing" && e.data.msg?.["follower_id"] === "fh5"
      );
    });
    await t.step("after a restart the list is whole", async () => {
      await agent.close();
      await server.close();
      server = await startBridge({
        store: await openSqliteStore(`${dir}/bridge.sqlite`, options),
        now,
      });
      agent = await connectAgent(`${server.wsBase}${B}/msg?userid=HA`);
      const all = await listAll(200);
      assert.equal(all.length, 10);
    });
  } finally {
    await agent.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
