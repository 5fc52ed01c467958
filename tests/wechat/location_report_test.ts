// WeChat's LOCATION event (chanxuehong's sample of a real follower) is the follower's client
// reporting where it is, on entering the chat or every 5 s in it: not the follower writing. On
// every store: the contact keeps its last place (the contacts API shows it), also one reported
// before the follower first writes; the bound agent is told of a new place but it is not unread;
// nobody is bound or queued for it; the same place reported again (to ~10 m) is not stored.

import assert from "node:assert/strict";
import { post, type TestAgent, textXml } from "../helpers/agent.ts";
import { connectRoutedAgent, startBridge, type TestBridge } from "../helpers/server.ts";
import { openKvStore } from "../../src/store/kv_store.ts";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { baseStoreOptions } from "../store/_durable_store_cases.ts";
import { findTestRedis, rawClient } from "../store/_redis_test_env.ts";
import { message } from "../store/_store_items.ts";

const B = "/im_component/wx_official_account";
const FOLLOWER = "os-IKuHd9pJ6xsn4mS7GyL4HxqI4";
const REDIS_URL = await findTestRedis();
const storeOptions = baseStoreOptions();

const sample = await Deno.readTextFile(
  new URL("../fixtures/wechat/chanxuehong/location_event.xml", import.meta.url),
);

/** The sample, sent `later` s after WeChat sent it, `north` degrees of latitude further. */
function report(later: number, north = 0): string {
  return sample
    .replace("1457752531", String(1457752531 + later))
    .replace("30.443105", (30.443105 + north).toFixed(6));
}

async function postXml(base: string, xml: string): Promise<void> {
  const res = await post(`${base}${B}/send_xml`, xml);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
}

const STORES: Array<[string, Record<string, string> | null]> = [
  ["memory", { STORE: "memory" }],
  ["sqlite", { STORE: "sqlite" }],
  ["kv", { STORE: "kv" }],
  ["redis", REDIS_URL === null ? null : { REDIS_URL: REDIS_URL.replace(/\/\d*$/, "") + "/7" }],
];

/** A test of `title` on every store: a bridge on it (Redis emptied first) with agent
 * loc-agent connected, which `body` is given, and closed after it. */
function onEveryStore(
  title: string,
  body: (server: TestBridge, agent: TestAgent, t: Deno.TestContext) => Promise<void>,
): void {
  for (const [name, env] of STORES) {
    Deno.test({
      name: `${title} (${name})`,
      ignore: env === null,
      async fn(t) {
        if (name === "redis") {
          const raw = rawClient(env!.REDIS_URL!);
          await raw.flushdb();
          raw.disconnect();
        }
        const server = await startBridge({ env: env! });
        const agent = await connectRoutedAgent(server, "loc-agent");
        try {
          await body(server, agent, t);
        } finally {
          await agent.close();
          await server.close();
        }
      },
    });
  }
}

onEveryStore(
  "LOCATION keeps the contact's place, binds nobody and is never unread",
  async (server, agent, t) => {
    let markers = 0;
    const marker = async () => {
      const id = `930${++markers}`;
      await postXml(server.base, textXml("o-marker", "gh_21ee2dc92d7d", "marker", id));
      await agent.waitFor((e) => e.data["id"] === id);
    };
    const locations = () =>
      agent.messages().filter((e) =>
        e.data.msg?.["event"] === "LOCATION" && e.data.msg?.["follower_id"] === FOLLOWER
      );
    const history = async () => (await server.store.readHistory(FOLLOWER, null, 50)).items;
    await t.step(
      "a follower who never wrote: kept, not bound, not waiting, not told",
      async () => {
        await postXml(server.base, report(0));
        await marker();
        const contact = (await server.store.getContact(FOLLOWER))!;
        assert.equal(contact.agent_id, null);
        assert.equal(contact.unread, 0);
        assert.equal(contact.last_inbound_at, 0, "no reply window");
        assert.deepEqual(
          [
            contact.location?.latitude,
            contact.location?.longitude,
            contact.location?.precision,
          ],
          [30.443105, 116.654735, 2703],
        );
        assert.deepEqual(await server.store.listWaiting(), []);
        assert.deepEqual(locations(), []);
        assert.equal((await history()).length, 1);
      },
    );
    await t.step("it writes: bound, and the contacts API shows where it is", async () => {
      await postXml(server.base, textXml(FOLLOWER, "gh_21ee2dc92d7d", "在吗", "9310"));
      await agent.waitFor((e) => e.data["id"] === "9310");
      const res = await fetch(`${server.base}${B}/contacts?userid=loc-agent`);
      const listed = (await res.json()).contacts.find((c: { contact_id: string }) =>
        c.contact_id === FOLLOWER
      );
      assert.equal(listed.unread, 1);
      assert.equal(listed.location.latitude, 30.443105);
      assert.equal(listed.location.longitude, 116.654735);
      const kept = (await server.store.getContact(FOLLOWER))!.location!;
      assert.equal(listed.location.time, Math.floor(kept.at / 1000));
      assert.ok(kept.at > 0);
    });
    await t.step("the same place 5 s later (2 m off): not stored, not told", async () => {
      await postXml(server.base, report(5, 0.00002));
      await marker();
      assert.deepEqual(locations(), []);
      assert.equal((await history()).length, 2);
      assert.equal((await server.store.getContact(FOLLOWER))!.location?.latitude, 30.443105);
    });
    await t.step(
      "a new place (110 m north): kept, told, in the history, not unread",
      async () => {
        await postXml(server.base, report(10, 0.001));
        await agent.waitFor(() => locations().length === 1);
        const e = locations()[0]!;
        assert.equal(e.result.code, 102);
        assert.equal(e.data.msg?.["latitude"], 30.444105);
        const contact = (await server.store.getContact(FOLLOWER))!;
        assert.equal(contact.location?.latitude, 30.444105);
        assert.equal(contact.unread, 1, "only the text is unread");
        assert.equal(contact.last_message?.msg_type, "text");
        assert.equal((await history()).length, 3);
      },
    );
    await t.step(
      "WeChat's retry of the first report: the place stays the newer one",
      async () => {
        await postXml(server.base, report(0));
        await marker();
        assert.equal((await server.store.getContact(FOLLOWER))!.location?.latitude, 30.444105);
        assert.equal(locations().length, 1);
        assert.equal((await history()).length, 3);
      },
    );
  },
);

for (
  const [name, open] of [
    ["SQLite", (dir: string) => openSqliteStore(`${dir}/bridge.sqlite`, storeOptions)],
    ["Deno KV", (dir: string) => openKvStore(`${dir}/bridge.kv`, storeOptions)],
  ] as const
) {
  Deno.test(`the ${name} store keeps a contact's place across close and reopen`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "location-" });
    try {
      const first = await open(dir);
      const item = message(FOLLOWER, "loc-1", Date.UTC(2026, 10, 1), "none");
      const place = { latitude: 30.443105, longitude: 116.654735, precision: 2703, at: 1 };
      assert.equal((await first.reportLocation(item, place)).value, "new");
      await first.close();
      const again = await open(dir);
      try {
        assert.deepEqual((await again.getContact(FOLLOWER))!.location, place);
        // Another report (not WeChat's retry of the first) at the same place.
        const later = message(FOLLOWER, "loc-2", Date.UTC(2026, 10, 1, 0, 0, 5), "none");
        assert.equal((await again.reportLocation(later, { ...place, at: 2 })).value, "same");
      } finally {
        await again.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

// A follower sitting on the 180th meridian (Taveuni, Fiji): GPS jitter takes its longitude
// from 179.99999 to -179.99999, 2 m apart. Read as 360 degrees apart, every report was a new
// place: a history item and a 102 to the agent every 5 s for a follower who did not move.
onEveryStore(
  "LOCATION across the antimeridian: 2 m apart is the same place",
  async (server, agent) => {
    const at = (later: number, longitude: string) =>
      report(later, -46.5).replace("116.654735", longitude);
    await postXml(server.base, at(0, "179.999990"));
    await postXml(server.base, textXml(FOLLOWER, "gh_21ee2dc92d7d", "Bula", "9410"));
    await agent.waitFor((e) => e.data["id"] === "9410");
    await postXml(server.base, at(5, "-179.999990"));
    await postXml(server.base, at(10, "179.999995"));
    // A marker after them: the reports were handled by the time it arrives.
    await postXml(server.base, textXml(FOLLOWER, "gh_21ee2dc92d7d", "marker", "9411"));
    await agent.waitFor((e) => e.data["id"] === "9411");
    const kinds = (await server.store.readHistory(FOLLOWER, null, 50)).items
      .map((i) => String(i.msg["event"] ?? i.msg_type));
    assert.deepEqual(kinds, ["LOCATION", "text", "text"], `one place, two texts: ${kinds}`);
    assert.equal((await server.store.getContact(FOLLOWER))!.location?.longitude, 179.99999);
    assert.deepEqual(
      agent.messages().filter((e) => e.data.msg?.["event"] === "LOCATION"),
      [],
    );
  },
);

// A LOCATION whose coordinates are not numbers (`<Latitude>abc</Latitude>`, none at all): WeChat
// sends none such, but anyone may post one without WECHAT_TOKEN. It was routed as a follower's
// message: bound to an agent, unread, in the waiting list, what the docs say a LOCATION never
// is. It is kept in the history as the report it is, and the contact's place is left as it was.
onEveryStore(
  "LOCATION without numeric coordinates binds nobody and changes no place",
  async (server, agent) => {
    await postXml(server.base, report(0).replace("30.443105", "abc"));
    await postXml(
      server.base,
      report(5).replace("<Longitude>116.654735</Longitude>", "").replace(FOLLOWER, "o-other"),
    );
    await postXml(server.base, textXml("o-marker", "gh_21ee2dc92d7d", "marker", "9501"));
    await agent.waitFor((e) => e.data["id"] === "9501");
    for (const follower of [FOLLOWER, "o-other"]) {
      const contact = (await server.store.getContact(follower))!;
      assert.equal(contact.agent_id, null, `${follower} bound`);
      assert.equal(contact.unread, 0);
      assert.equal(contact.last_inbound_at, 0, "no reply window");
      assert.equal(contact.location, undefined);
      assert.equal((await server.store.readHistory(follower, null, 50)).items.length, 1);
    }
    assert.deepEqual(await server.store.listWaiting(), []);
    // Reported by a follower already bound: its place stays the last good one.
    await postXml(server.base, report(10));
    await postXml(server.base, textXml(FOLLOWER, "gh_21ee2dc92d7d", "hi", "9502"));
    await agent.waitFor((e) => e.data["id"] === "9502");
    await postXml(server.base, report(15, 1).replace("31.443105", "north"));
    await postXml(server.base, textXml("o-marker", "gh_21ee2dc92d7d", "marker", "9503"));
    await agent.waitFor((e) => e.data["id"] === "9503");
    const contact = (await server.store.getContact(FOLLOWER))!;
    assert.equal(contact.location?.latitude, 30.443105);
    assert.equal(contact.unread, 1, "only the text is unread");
  },
);
