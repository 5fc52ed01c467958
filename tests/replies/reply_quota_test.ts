// WeChat's reply quota holds under concurrency, on every store: 10 replies to one follower sent
// at once (5 over HTTP, 5 over a socket) after one follower message, and exactly 5 reach the
// fake WeChat; the other 5 are refused with WeChat's reason before WeChat sees them.

import assert from "node:assert/strict";
import type { Store } from "../../src/core/store.ts";
import { openKvStore } from "../../src/store/kv_store.ts";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import { createRedisStore } from "../../src/store/redis_store.ts";
import { MESSAGE_QUOTA } from "../../src/protocol/window.ts";
import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";

const B = "/im_component/wx_official_account";
const SEND = "cgi-bin/message/custom/send";
const REDIS_URL = await findTestRedis();
const options = {
  companyId: "",
  now: Date.now,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 3600_000,
};

const stores: Array<[string, () => Promise<{ store: Store; done(): Promise<void> }>]> = [
  ["memory", () => Promise.resolve({ store: createMemoryStore(options), done: async () => {} })],
  ["Deno KV", async () => {
    const dir = await Deno.makeTempDir({ prefix: "quota-kv-" });
    const store = await openKvStore(`${dir}/bridge.kv`, { ...options, retentionMs: 3600_000 });
    return { store, done: () => Deno.remove(dir, { recursive: true }) };
  }],
];
if (REDIS_URL !== null) {
  stores.push(["Redis", async () => {
    const prefix = uniquePrefix("quota");
    const store = await createRedisStore({ ...options, url: REDIS_URL, heartbeatMs: 5000, prefix });
    return { store, done: () => flushPrefix(REDIS_URL, prefix) };
  }]);
}

async function until<T>(check: () => T | undefined, what: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sendCalls = (fake: FakeWechat) => fake.calls.filter((c) => c.path === SEND).length;

for (const [name, open] of stores) {
  Deno.test(`10 concurrent replies to one follower: exactly ${MESSAGE_QUOTA} reach WeChat (${name})`, async () => {
    const fake = await startFakeWechat({ appId: "wxq", secret: "s" });
    const { store, done } = await open();
    const server = await startBridge({
      env: { WECHAT_APPID: "wxq", WECHAT_SECRET: "s", WECHAT_API_BASE: fake.url },
      store,
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=QA`);
    try {
      await until(() => server.bridge.hub.isOnline("QA") || undefined, "the agent online");
      const res = await post(`${server.base}${B}/send_xml`, textXml("fq", "gh_x", "hi", "91001"));
      assert.equal(res.text, "success");
      await agent.waitFor((e) => e.data["id"] === "91001");

      const body = (i: number) =>
        JSON.stringify({
          data: {
            msg_type: "text",
            contact_id: "fq",
            client_id: `q${i}`,
            msg: { content: `r${i}` },
          },
          result: { code: 1001, message: "common" },
        });
      const http = Array.from(
        { length: 5 },
        (_, i) =>
          fetch(`${server.base}${B}/send?userid=QA`, { method: "POST", body: body(i) })
            .then(async (r) => ({ status: r.status, body: await r.json() })),
      );
      for (let i = 5; i < 10; i++) agent.send(body(i));

      const answers = await Promise.all(http);
      const socketAnswers = await Promise.all(
        [5, 6, 7, 8, 9].map((i) =>
          agent.waitFor((e: Received) =>
            e.data["client_id"] === `q${i}` &&
            (e.result.code === -1 || e.data["direction"] === "out")
          )
        ),
      );
      const refusedHttp = answers.filter((a) => a.status === 403);
      const refusedSocket = socketAnswers.filter((e) => e.result.code === -1);
      assert.equal(
        refusedHttp.length + refusedSocket.length,
        10 - MESSAGE_QUOTA,
        JSON.stringify(answers),
      );
      for (const r of [...refusedHttp.map((a) => a.body), ...refusedSocket]) {
        assert.equal(r.data["limit"], "quota");
        assert.match(r.result.message, /WeChat allows 5 replies per follower message/);
      }
      await until(() => sendCalls(fake) >= MESSAGE_QUOTA || undefined, "5 sends");
      // Whatever was accepted has been sent: each sent reply was told `reply_sent`.
      await until(
        () =>
          agent.messages().filter((e) => e.data.msg?.["event"] === "reply_sent").length ===
            MESSAGE_QUOTA || undefined,
        "every accepted reply sent",
      );
      assert.equal(sendCalls(fake), MESSAGE_QUOTA);
    } finally {
      await agent.close();
      await server.close();
      await done();
      await fake.close();
    }
  });
}
