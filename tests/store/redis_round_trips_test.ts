import assert from "node:assert/strict";
import type { Redis } from "redis";
import type { Envelope } from "../../src/protocol/envelope.ts";
import type { InboundItem, Presence } from "../../src/core/store.ts";
import type { RedisStore } from "../../src/store/redis_store.ts";
import {
  findTestRedis,
  flushPrefix,
  openPrefixedStore,
  rawClient,
  uniquePrefix,
  waitUntil,
} from "./_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const ignore = REDIS_URL === null;
const url = REDIS_URL ?? "";

const openStore = (prefix: string) => openPrefixedStore(url, prefix);

let msgId = 0;
function item(from: string, to: string): InboundItem {
  const id = String(++msgId);
  const envelope: Envelope = {
    data: {
      id,
      name: from,
      avatar: "",
      msg_type: "text",
      contact_id: from,
      company_id: "acme",
      send_time: 1_700_000_000,
      msg: { content: `hello ${id}` },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId: from,
    name: null,
    to,
    envelope,
    kind: "message",
    receivedAt: Date.now(),
    dedupKey: id,
  };
}

const presence: Presence = { isOnline: () => true, onlineAgents: () => new Set() };

/** MONITOR's escaped arguments, after its `+time [db source]` (`"evalsha" "ab\\"c" "\\xe4\\xbd\\xa0"`) as text. */
function monitorArgs(text: string): string[] {
  const args: string[] = [];
  const escapes: Record<string, number> = { n: 10, r: 13, t: 9, a: 7, b: 8 };
  for (let i = text.indexOf('"'); i >= 0 && i < text.length; i = text.indexOf('"', i + 1)) {
    const bytes: number[] = [];
    for (i++; i < text.length && text[i] !== '"'; i++) {
      if (text[i] !== "\\") {
        bytes.push(...new TextEncoder().encode(text[i]));
        continue;
      }
      const next = text[++i]!;
      if (next === "x") {
        bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
        i += 2;
      } else bytes.push(escapes[next] ?? next.charCodeAt(0));
    }
    args.push(new TextDecoder().decode(new Uint8Array(bytes)));
  }
  return args;
}

/** What Redis ran, by MONITOR: each command with who sent it (an address, or "lua" for the
 * script's own calls). MONITOR shows commands in the order Redis ran them, so once a marker
 * sent after an operation shows, everything the operation ran has shown. On a socket of its
 * own: ioredis's monitor() sends its ready check's INFO too, and on a busy machine another
 * client's command shown before that INFO's answer broke its queue ("Command queue state
 * error", ioredis#1981), an uncaught error that failed the whole file. */
async function watchCommands(marker: Redis) {
  const seen: Array<{ source: string; args: string[] }> = [];
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port || 6379) });
  await conn.write(new TextEncoder().encode("MONITOR\r\n"));
  const reading = (async () => {
    const decoder = new TextDecoder();
    let buffered = "";
    for await (const chunk of conn.readable) {
      buffered += decoder.decode(chunk, { stream: true });
      for (let nl = buffered.indexOf("\r\n"); nl >= 0; nl = buffered.indexOf("\r\n")) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 2);
        const found = /^\+\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$/.exec(line);
        if (found) seen.push({ source: found[1]!, args: monitorArgs(found[2]!) });
      }
    }
  })().catch(() => {});
  // MONITOR answers +OK before it shows anything: from then on every command shows.
  await waitUntil(async () => {
    await marker.echo("monitor-ready");
    return seen.some((c) => c.args[1] === "monitor-ready") || undefined;
  }, "MONITOR");
  return {
    async during(op: () => Promise<unknown>) {
      seen.length = 0;
      await op();
      const tag = `marker-${crypto.randomUUID()}`;
      await marker.echo(tag);
      await waitUntil(() => seen.some((c) => c.args[1] === tag) || undefined, "the marker");
      return seen.slice(0, seen.findIndex((c) => c.args[1] === tag));
    },
    async stop() {
      try {
        conn.close();
      } catch { /* closed already */ }
      await reading;
    },
  };
}

/** The address Redis sees for a store's command connection, by its connection name. */
async function addressOf(raw: Redis, store: RedisStore): Promise<string> {
  const list = await raw.client("LIST") as string;
  const line = list.split("\n").find((l) => l.includes(` name=bridge-${store.instanceId} `));
  const addr = /addr=(\S+)/.exec(line ?? "")?.[1];
  assert.ok(addr, "the store's connection is listed");
  return addr;
}

Deno.test({
  name: "the Redis store: one round trip per batch, one publication per other instance",
  ignore,
  async fn(t) {
    const prefix = uniquePrefix("trips");
    const a = await openStore(prefix);
    const b = await openStore(prefix);
    const raw = rawClient(url);
    const marker = rawClient(url);
    const watch = await watchCommands(marker);
    const listener = rawClient(url);
    const heard: string[] = [];
    try {
      await listener.subscribe(`${prefix}deliver:${b.instanceId}`);
      listener.on("message", (_channel: string, message: string) => heard.push(message));
      await a.agentOnline("a1", presence);
      await b.agentOnline("b1", presence);
      await b.agentOnline("b2", presence);
      const fromA = await addressOf(raw, a);
      const ours = (cmds: Array<{ source: string; args: string[] }>) =>
        cmds.filter((c) => c.source === fromA);
      const publications = (cmds: Array<{ source: string; args: string[] }>) =>
        cmds.filter((c) =>
          c.source === "lua" && c.args[0]?.toLowerCase() === "publish" &&
          c.args[1]?.startsWith(prefix)
        );

      await t.step(
        "a batch of 12 for three agents is one command and one publication",
        async () => {
          const items = Array.from(
            { length: 12 },
            (_, i) => item(`f${i}`, ["a1", "b1", "b2"][i % 3]!),
          );
          const cmds = await watch.during(() => a.acceptInbound(items, presence));
          assert.deepEqual(ours(cmds).map((c) => c.args[0]?.toLowerCase()), ["evalsha"]);
          const pubs = publications(cmds);
          assert.equal(pubs.length, 1, "one publication, for the instance with b1 and b2");
          assert.equal(pubs[0]!.args[1], `${prefix}deliver:${b.instanceId}`);
          // It carries the eight entries for b1 and b2 and their assignment notices, in order:
          // lines agent, envelope, agent, envelope, … as B's subscriber gets it.
          const message = await waitUntil(() => heard[0], "B's publication");
          const lines = message.split("\n");
          const agents = lines.filter((_, i) => i % 2 === 0);
          assert.deepEqual([...new Set(agents)].sort(), ["b1", "b2"]);
          const envelopes = lines.map((line, i) => i % 2 === 1 ? JSON.parse(line) : null);
          for (const agent of ["b1", "b2"]) {
            const texts = envelopes.filter((e, i) =>
              e?.result.code === 1001 && agents[(i - 1) / 2] === agent
            )
              .map((e) => e.data.contact_id);
            assert.deepEqual(texts, items.filter((x) => x.to === agent).map((x) => x.followerId));
          }
        },
      );

      await t.step("a batch only for agents here publishes nothing", async () => {
        const cmds = await watch.during(() =>
          a.acceptInbound([item("f0", "a1"), item("f3", "a1")], presence)
        );
        assert.equal(ours(cmds).length, 1);
        assert.equal(publications(cmds).length, 0);
        assert.equal(heard.length, 1, "B heard nothing more");
      });

      await t.step("a known agent is asked of Redis once", async () => {
        const cmds = await watch.during(async () => {
          for (let i = 0; i < 5; i++) assert.equal(await a.isKnownAgent("b1"), true);
        });
        assert.equal(ours(cmds).length, 1);
        // An unknown one is asked each time: another instance may make it known.
        const unknown = await watch.during(async () => {
          for (let i = 0; i < 2; i++) assert.equal(await a.isKnownAgent("nobody"), false);
        });
        assert.equal(ours(unknown).length, 2);
      });

      await t.step("delivery cursors are written together", async () => {
        const cmds = await watch.during(async () => {
          for (let seq = 1; seq <= 5; seq++) a.markDelivered("a1", seq);
          await waitUntil(
            async () => (await a.getAgent("a1"))?.cursor === 5 || undefined,
            "cursor",
          );
        });
        const evals = ours(cmds).filter((c) => c.args[0]?.toLowerCase() === "evalsha");
        assert.equal(evals.length, 1);
      });
    } finally {
      await watch.stop();
      listener.disconnect();
      await a.close();
      await b.close();
      await marker.quit();
      await raw.quit().catch(() => raw.disconnect());
      await flushPrefix(url, prefix);
    }
  },
});

Deno.test({
  name: "an instance whose presence lapsed reads what it missed at its next heartbeat",
  ignore,
  async fn() {
    const prefix = uniquePrefix("lapse");
    const a = await openStore(prefix);
    const b = await openPrefixedStore(url, prefix, 200);
    const raw = rawClient(url);
    const got: string[] = [];
    b.onRemoteEntries((entries) => {
      for (const e of entries) if (e.envelope.result.code === 1001) got.push(e.envelope.data.id);
    });
    try {
      await b.agentOnline("b1", presence);
      // As if B had stalled past two heartbeats: its presence expired, so A does not publish
      // to it.
      await raw.multi().del(`${prefix}instance:${b.instanceId}`, `${prefix}online:${b.instanceId}`)
        .srem(`${prefix}instances`, b.instanceId).exec();
      const sent = item("f1", "b1");
      await a.acceptInbound([sent], presence);
      await waitUntil(() => got.length > 0 || undefined, "the entry B missed");
      assert.deepEqual(got, [sent.envelope.data.id]);
    } finally {
      await a.close();
      await b.close();
      await raw.quit();
      await flushPrefix(url, prefix);
    }
  },
});
