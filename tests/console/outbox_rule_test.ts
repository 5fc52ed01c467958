// The console's stored replies (static/console/outbox.js): whose they are, what is one, and how
// old one may be and still go out by itself, that bound checked against the bridge's memory of
// a client_id over the wire (a reply sent again under its client_id within it goes once).

import assert from "node:assert/strict";
import {
  createEntry,
  createOutbox,
  isKept,
  OUTBOX_MAX_AGE_MS,
  outboxPrefix,
  parseEntry,
  storedFate,
} from "../../static/console/outbox.js";
import { connectAgent } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { B, followerXml } from "../browser/browser.ts";

/** localStorage's shape, over a Map. */
function fakeStorage() {
  const map = new Map<string, string>();
  return {
    map,
    get length() {
      return map.size;
    },
    key: (i: number) => [...map.keys()][i] ?? null,
    getItem: (k: string) => map.get(k) ?? null,
    setItem: (k: string, v: string) => void map.set(k, String(v)),
    removeItem: (k: string) => void map.delete(k),
  };
}

const entry = (fields: Record<string, unknown> = {}) =>
  createEntry({
    clientId: "c-1",
    agentId: "agentA",
    contactId: "oF",
    msgType: "text",
    msg: { content: "您好" },
    queuedAt: 1_000_000,
    ...fields,
  });

Deno.test("createOutbox() keeps one agent's replies on one account", async (t) => {
  await t.step("put, get, list and remove, one key a reply", () => {
    const storage = fakeStorage();
    const outbox = createOutbox(storage, "agentA");
    assert.equal(outbox.put(entry()), true);
    assert.equal(outbox.put(entry({ clientId: "c-0", queuedAt: 5 })), true);
    assert.equal(storage.map.size, 2);
    assert.deepEqual(outbox.list().map((e) => e.client_id), ["c-0", "c-1"]);
    assert.equal(outbox.get("c-1")?.msg.content, "您好");
    outbox.remove("c-1");
    assert.equal(outbox.get("c-1"), null);
    assert.deepEqual(outbox.list().map((e) => e.client_id), ["c-0"]);
  });

  await t.step("another agent's or account's replies are not this page's to send", () => {
    const storage = fakeStorage();
    createOutbox(storage, "agentB").put(entry({ agentId: "agentB" }));
    createOutbox(storage, "agentA", { account: "gh_two" })
      .put(entry({ account: "gh_two", clientId: "c-2" }));
    // Agent "a:b" and agent "a" do not share keys (each part is encoded).
    createOutbox(storage, "agentA:x").put(entry({ agentId: "agentA:x", clientId: "c-3" }));
    assert.deepEqual(createOutbox(storage, "agentA").list(), []);
    assert.deepEqual(
      createOutbox(storage, "agentA", { account: "gh_two" }).list().map((e) => e.client_id),
      ["c-2"],
    );
    // A value under this agent's prefix that names another agent (written by hand, damaged).
    storage.setItem(`${outboxPrefix("agentA")}c-9`, JSON.stringify(entry({ agentId: "agentB" })));
    assert.deepEqual(createOutbox(storage, "agentA").list(), []);
  });

  await t.step("clientIdOf() tells its keys from every other", () => {
    const outbox = createOutbox(fakeStorage(), "agentA", { account: "gh_one" });
    assert.equal(outbox.clientIdOf(`${outboxPrefix("agentA", "gh_one")}c-%3A1`), "c-:1");
    assert.equal(outbox.clientIdOf(`${outboxPrefix("agentA")}c-1`), null);
    assert.equal(outbox.clientIdOf("wxbridge.draft:agentA:oF"), null);
    assert.equal(outbox.clientIdOf(null), null);
  });

  await t.step("no storage, or one that refuses: put says the reply is not kept", () => {
    assert.equal(createOutbox(null, "agentA").put(entry()), false);
    const full = {
      ...fakeStorage(),
      setItem: () => {
        throw new DOMException("full", "QuotaExceededError");
      },
    };
    assert.equal(createOutbox(full, "agentA").put(entry()), false);
    assert.deepEqual(createOutbox(null, "agentA").list(), []);
  });
});

Deno.test("parseEntry() and isKept() take only a whole reply", () => {
  assert.equal(parseEntry(JSON.stringify(entry()))?.client_id, "c-1");
  for (
    const bad of [
      null,
      "",
      "not json",
      "[]",
      JSON.stringify({ ...entry(), client_id: "" }),
      JSON.stringify({ ...entry(), contact_id: 3 }),
      JSON.stringify({ ...entry(), msg_type: "news" }),
      JSON.stringify({ ...entry(), msg: null }),
      JSON.stringify({ ...entry(), queued_at: "yesterday" }),
    ]
  ) {
    assert.equal(parseEntry(bad), null, String(bad));
  }
  assert.equal(isKept("text", { content: "hi" }), true);
  assert.equal(isKept("image", { media_id: "m1", media_url: "https://x/y" }), true);
  // A file still uploading has no payload yet: only the page holds it.
  assert.equal(isKept("image", {}), false);
  assert.equal(isKept("note", { content: "hi" }), false);
});

Deno.test("storedFate() sends a reply younger than the bound, not an older one", () => {
  const queued = entry({ queuedAt: 0 });
  assert.equal(storedFate(queued, OUTBOX_MAX_AGE_MS), "send");
  assert.equal(storedFate(queued, OUTBOX_MAX_AGE_MS + 1), "expired");
  assert.equal(storedFate(queued, 10, 5), "expired");
});

Deno.test("OUTBOX_MAX_AGE_MS is no longer than the bridge takes a client_id once", async (t) => {
  let now = Date.now();
  const server = await startBridge({ now: () => now });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=agentA`);
  try {
    const res = await fetch(`${server.base}${B}/send_xml`, {
      method: "POST",
      headers: { "content-type": "text/xml" },
      body: followerXml("oAge", { MsgType: "text", Content: "在吗", CreateTime: now / 1000 | 0 }),
    });
    assert.equal(res.status, 200, await res.text());
    await agent.waitFor((e) => e.data.contact_id === "oAge");
    const reply = (clientId: string) =>
      agent.send({
        data: { msg_type: "text", contact_id: "oAge", client_id: clientId, msg: { content: "好" } },
        result: { code: 1001, message: "common" },
      });
    const sent = async () => {
      const r = await fetch(`${server.base}${B}/demo/replies?contact_id=oAge&since=0`);
      return (await r.json()).replies.length as number;
    };
    const echoes = (clientId: string) =>
      agent.received.filter((e) => e.data.direction === "out" && e.data.client_id === clientId)
        .length;

    await t.step("sent again at the bound (a stored reply that had reached it): once", async () => {
      reply("c-stored");
      await agent.waitFor((e) => e.data.client_id === "c-stored");
      now += OUTBOX_MAX_AGE_MS - 60_000;
      reply("c-stored");
      // A reply after it is answered after it: the second c-stored had its turn by then.
      reply("c-next");
      await agent.waitFor((e) => e.data.client_id === "c-next" && e.data.direction === "out");
      assert.equal(echoes("c-stored"), 1);
      assert.equal(await sent(), 2);
    });

    await t.step(
      "past the bridge's day the same client_id is sent again: hence the bound",
      async () => {
        now += 2 * 3600_000;
        reply("c-stored");
        await agent.waitFor(() => echoes("c-stored") === 2);
        assert.equal(await sent(), 3);
      },
    );
  } finally {
    await agent.close();
    await server.close();
  }
});
