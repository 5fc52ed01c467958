import assert from "node:assert/strict";
import { openKvStore } from "../../src/store/kv_store.ts";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { withTempDir } from "./_durable_store_cases.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const B = "/im_component/wx_official_account";

let msgIds = 9_000_000;
const nextMsgId = () => String(msgIds++);

/** Resolves once `check` holds, polling; fails with `what` after the deadline. */
async function waitUntil(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The server as `deno task start` runs it, in a child process we can kill. */
interface ServerProcess {
  base: string;
  ws: string;
  kill(signal: Deno.Signal): Promise<void>;
}

async function spawnServer(
  dataDir: string,
  extraEnv: Record<string, string> = {},
): Promise<ServerProcess> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: ROOT,
    env: {
      PORT: String(port),
      HOSTNAME: "127.0.0.1",
      DATA_DIR: dataDir,
      // Unset: the default store (SQLite); the kill -9 tests run on each store.
      STORE: "",
      LOG_LEVEL: "warning",
      // Whatever the outer environment says: no Redis, no WeChat, open agents.
      REDIS_URL: "",
      WECHAT_TOKEN: "",
      WECHAT_AES_KEY: "",
      WECHAT_APPID: "",
      WECHAT_SECRET: "",
      AGENT_SECRET: "",
      ...extraEnv,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const base = `http://127.0.0.1:${port}`;
  const kill = async (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch { /* exited already */ }
    await child.status;
    await stderr;
  };
  let exited = false;
  child.status.then(() => exited = true);
  try {
    await waitUntil(
      async () => {
        if (exited) throw new Error(`The server exited: ${await stderr}`);
        try {
          const res = await fetch(`${base}/healthz`);
          await res.body?.cancel();
          return res.ok;
        } catch {
          return false;
        }
      },
      "the server to listen",
      30_000,
    );
  } catch (error) {
    await kill("SIGKILL");
    throw error;
  }
  return { base, ws: `ws://127.0.0.1:${port}`, kill };
}

async function agentsOnline(base: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return Number(/^bridge_agents_online (\d+)/m.exec(text)?.[1] ?? NaN);
}

/** Posts follower messages one after another, as WeChat does for one follower. */
async function postAll(base: string, from: string, contents: string[]): Promise<void> {
  for (const content of contents) {
    const res = await post(
      `${base}${B}/send_xml`,
      textXml(from, "gh_account", content, nextMsgId()),
    );
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, "success");
  }
}

const contentOf = (e: Received): string =>
  e.data.msg_type === "system"
    ? `${e.data.msg?.["event"]}:${e.data.msg?.["follower_id"]}`
    : String(e.data.msg?.["content"]);

/** What an agent received, heartbeats left out, in words. */
const contents = (agent: TestAgent): string[] => agent.messages().map(contentOf);

function assertIncreasingSeqs(agent: TestAgent): void {
  const seqs = agent.messages().map((e) => e.data.seq ?? 0);
  for (let i = 1; i < seqs.length; i++) {
    assert.ok(seqs[i]! > seqs[i - 1]!, `seq ${seqs[i]} after ${seqs[i - 1]}`);
  }
}

for (const store of ["sqlite", "kv"]) {
  Deno.test(`30 messages for an offline agent survive kill -9 and arrive once, in order (STORE=${store})`, async (t) => {
    await withTempDir(async (dir) => {
      const expected = Array.from({ length: 30 }, (_, i) => `queued ${i + 1}`);
      let server = await spawnServer(dir, { STORE: store });
      try {
        await t.step("the follower is bound to a1, then a1 goes away", async () => {
          const a1 = await connectAgent(`${server.ws}${B}/msg?userid=a1`);
          try {
            await waitUntil(async () => await agentsOnline(server.base) === 1, "a1 online");
            await postAll(server.base, "oAlice", ["hello"]);
            await a1.waitFor((e) => e.data.msg?.["content"] === "hello");
          } finally {
            await a1.close();
          }
          await waitUntil(async () => await agentsOnline(server.base) === 0, "a1 offline");
        });
        await t.step("30 messages are accepted while a1 is away, then kill -9", async () => {
          await postAll(server.base, "oAlice", expected);
          await server.kill("SIGKILL");
        });
        await t.step("after a restart a1 gets the 30, once, in order", async () => {
          server = await spawnServer(dir, { STORE: store });
          const a1 = await connectAgent(`${server.ws}${B}/msg?userid=a1`);
          try {
            await a1.waitForCount(30, 10_000);
            // A live message after the backlog shows nothing else was on its way.
            await postAll(server.base, "oAlice", ["live"]);
            await a1.waitFor((e) => e.data.msg?.["content"] === "live");
            assert.deepEqual(contents(a1), [...expected, "live"]);
            assertIncreasingSeqs(a1);
          } finally {
            await a1.close();
          }
        });
      } finally {
        await server.kill("SIGTERM");
      }
    });
  });

  Deno.test(`a follower with no agent is served by the first agent after kill -9 (STORE=${store})`, async (t) => {
    await withTempDir(async (dir) => {
      let server = await spawnServer(dir, { STORE: store });
      try {
        await t.step("messages from a follower nobody serves are accepted", async () => {
          await postAll(server.base, "oBob", ["is anyone there?", "hello?"]);
          await postAll(server.base, "oCarol", ["me too"]);
          await server.kill("SIGKILL");
        });
        await t.step("the first agent after the restart gets them, oldest first", async () => {
          server = await spawnServer(dir, { STORE: store });
          const b1 = await connectAgent(`${server.ws}/?userId=b1`);
          try {
            await b1.waitForCount(5);
            await postAll(server.base, "oBob", ["thanks"]);
            await b1.waitFor((e) => e.data.msg?.["content"] === "thanks");
            assert.deepEqual(contents(b1), [
              "assigned:oBob",
              "is anyone there?",
              "hello?",
              "assigned:oCarol",
              "me too",
              "thanks",
            ]);
            assertIncreasingSeqs(b1);
          } finally {
            await b1.close();
          }
        });
      } finally {
        await server.kill("SIGTERM");
      }
    });
  });
}

/** The real bridge in this process, on the SQLite or KV store in memory. */
async function startStoreBridge(kind: "sqlite" | "kv"): Promise<TestBridge> {
  const options = {
    companyId: "",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 3600_000,
    retentionMs: 30 * 24 * 3600_000,
  };
  const store = kind === "kv"
    ? await openKvStore(":memory:", options)
    : await openSqliteStore(":memory:", options);
  return await startBridge({ store });
}

async function connectOnline(server: TestBridge, agentId: string, query = ""): Promise<TestAgent> {
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=${agentId}${query}`);
  await waitUntil(() => server.bridge.hub.isOnline(agentId), `${agentId} online`);
  return agent;
}

/** An agent command over `POST send`. */
async function command(
  server: TestBridge,
  agentId: string,
  data: Record<string, unknown>,
): Promise<void> {
  const res = await post(
    `${server.base}${B}/send?userid=${agentId}`,
    JSON.stringify({ data, result: { code: 1001, message: "common" } }),
    { "content-type": "application/json" },
  );
  assert.equal(res.status, 200, res.text);
}

for (const kind of ["sqlite", "kv"] as const) {
  Deno.test(`since= replays exactly what came after it (${kind})`, async (t) => {
    const server = await startStoreBridge(kind);
    try {
      let since = 0;
      await t.step("a1 sees 5 messages, notes the seq of the third, goes away", async () => {
        const a1 = await connectOnline(server, "a1");
        try {
          await postAll(server.base, "oDan", ["1", "2", "3", "4", "5"]);
          const got = await a1.waitForCount(6);
          assert.deepEqual(got.map(contentOf), ["assigned:oDan", "1", "2", "3", "4", "5"]);
          since = got[3]!.data.seq!;
        } finally {
          await a1.close();
        }
        await waitUntil(() => !server.bridge.hub.isOnline("a1"), "a1 offline");
      });
      await t.step("three more arrive while it is away", async () => {
        await postAll(server.base, "oDan", ["6", "7", "8"]);
      });
      await t.step("since=SEQ gives everything after SEQ, in order, and nothing else", async () => {
        const a1 = await connectOnline(server, "a1", `&since=${since}`);
        try {
          await a1.waitForCount(5);
          await postAll(server.base, "oDan", ["live"]);
          await a1.waitFor((e) => e.data.msg?.["content"] === "live");
          assert.deepEqual(contents(a1), ["4", "5", "6", "7", "8", "live"]);
          assert.equal(a1.messages()[0]!.data.seq, since + 1);
          assertIncreasingSeqs(a1);
        } finally {
          await a1.close();
        }
      });
    } finally {
      await server.close();
    }
  });

  Deno.test(`8 followers posting at once each keep their order (${kind})`, async () => {
    const server = await startStoreBridge(kind);
    try {
      const agents = [await connectOnline(server, "a1"), await connectOnline(server, "a2")];
      try {
        const followers = Array.from({ length: 8 }, (_, i) => `oConcurrent${i}`);
        const perFollower = 25;
        await Promise.all(
          followers.map((f) =>
            postAll(server.base, f, Array.from({ length: perFollower }, (_, i) => `${f}#${i}`))
          ),
        );
        const total = () => agents.reduce((n, a) => n + a.messages().length, 0);
        await waitUntil(() => total() >= followers.length * (perFollower + 1), "every message");
        for (const f of followers) {
          const mine = agents.flatMap((a) =>
            a.messages().filter((e) => e.data["contact_id"] === f).map(contentOf)
          );
          assert.deepEqual(mine, Array.from({ length: perFollower }, (_, i) => `${f}#${i}`));
          const history = await server.store.readHistory(f, null, 100);
          assert.deepEqual(history.items.map((i) => i.msg["content"]), mine);
        }
        for (const a of agents) assertIncreasingSeqs(a);
        assert.equal(total(), followers.length * (perFollower + 1));
      } finally {
        for (const a of agents) await a.close();
      }
    } finally {
      await server.close();
    }
  });

  Deno.test(`transfer, close, capacity and the waiting order work on ${kind}`, async (t) => {
    const server = await startStoreBridge(kind);
    const a1 = await connectOnline(server, "a1");
    const a2 = await connectOnline(server, "a2");
    const assignedTo = async (follower: string) =>
      (await server.store.getContact(follower))?.agent_id ?? null;
    const events = (agent: TestAgent, event: string) =>
      agent.messages().filter((e) => e.data.msg?.["event"] === event).map((e) =>
        e.data.msg?.["follower_id"]
      );
    try {
      await t.step("with capacity 1 each, the third and fourth followers wait", async () => {
        await command(server, "a1", { msg_type: "capacity", msg: { max: 1 } });
        await command(server, "a2", { msg_type: "capacity", msg: { max: 1 } });
        await postAll(server.base, "oF1", ["f1"]);
        await postAll(server.base, "oF2", ["f2"]);
        await postAll(server.base, "oF3", ["f3"]);
        await postAll(server.base, "oF4", ["f4"]);
        // Equal loads: the lower id; then the one with room.
        assert.equal(await assignedTo("oF1"), "a1");
        assert.equal(await assignedTo("oF2"), "a2");
        const waiting = await server.store.listWaiting();
        assert.deepEqual(waiting.map((c) => c.follower_id), ["oF3", "oF4"]);
      });
      await t.step(
        "close frees a place; raised capacity takes the longest-waiting first",
        async () => {
          await command(server, "a1", { msg_type: "close", contact_id: "oF1" });
          await a1.waitFor((e) => e.data.msg?.["event"] === "closed");
          await command(server, "a1", { msg_type: "capacity", msg: { max: 2 } });
          await a1.waitFor((e) => e.data.msg?.["content"] === "f4");
          assert.deepEqual(events(a1, "assigned"), ["oF1", "oF3", "oF4"]);
          assert.deepEqual(contents(a1).slice(-4), ["assigned:oF3", "f3", "assigned:oF4", "f4"]);
          assert.equal(await server.store.queueDepth(), 0);
        },
      );
      await t.step("transfer moves a follower; both agents are told", async () => {
        await command(server, "a2", { msg_type: "transfer", contact_id: "oF2", msg: { to: "a1" } });
        await a1.waitFor((e) => e.data.msg?.["event"] === "transferred_in");
        await a2.waitFor((e) => e.data.msg?.["event"] === "transferred_out");
        await postAll(server.base, "oF2", ["f2 again"]);
        await a1.waitFor((e) => e.data.msg?.["content"] === "f2 again");
        assert.equal(a2.messages().some((e) => e.data.msg?.["content"] === "f2 again"), false);
      });
      await t.step("a closed follower goes back to its last agent, if it has room", async () => {
        await command(server, "a1", { msg_type: "capacity", msg: { max: null } });
        await postAll(server.base, "oF1", ["f1 again"]);
        await a1.waitFor((e) => e.data.msg?.["content"] === "f1 again");
        assert.equal(await assignedTo("oF1"), "a1");
      });
      await t.step("a new follower goes to the least-loaded agent", async () => {
        await postAll(server.base, "oF5", ["f5"]);
        await a2.waitFor((e) => e.data.msg?.["content"] === "f5");
        assert.equal(await assignedTo("oF5"), "a2");
        assert.equal((await server.store.getAgent("a1"))?.load, 4);
        assert.equal((await server.store.getAgent("a2"))?.load, 1);
      });
    } finally {
      await a1.close();
      await a2.close();
      await server.close();
    }
  });
}

Deno.test("a media message being fetched at kill -9 is fetched and delivered after a restart", async (t) => {
  const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 7, 7, 7]);
  fake.addMedia("imgJournal", png, "image/png");
  const env = {
    WECHAT_APPID: "wxtest",
    WECHAT_SECRET: "secret",
    WECHAT_API_BASE: fake.url,
    MEDIA_TIMEOUT_MS: "120000",
  };
  const msgId = nextMsgId();
  const xml =
    `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oJournal]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[]]></PicUrl><MediaId><![CDATA[imgJournal]]></MediaId><MsgId>${msgId}</MsgId></xml>`;
  try {
    await withTempDir(async (dir) => {
      await t.step("WeChat is answered success while media/get hangs, then kill -9", async () => {
        // media/get answers only after the process is gone: the job is still running.
        fake.delay("cgi-bin/media/get", 60_000);
        const server = await spawnServer(dir, env);
        const res = await post(`${server.base}${B}/send_xml`, xml);
        assert.equal(res.text, "success");
        await waitUntil(() => fake.calls.some((c) => c.path === "cgi-bin/media/get"), "media/get");
        await server.kill("SIGKILL");
      });
      await t.step("the restarted server fetches it again and the agent gets its URL", async () => {
        fake.delay("cgi-bin/media/get", 0);
        const server = await spawnServer(dir, env);
        const agent = await connectAgent(`${server.ws}${B}/msg?userid=a1`);
        try {
          const got = await agent.waitFor((e) => e.data["id"] === msgId, 10_000);
          assert.equal(got.result.code, 1002);
          assert.equal(got.data.msg?.["error"], undefined, JSON.stringify(got.data.msg));
          // The URL was built from the first run's request; this run listens on another port.
          const url = new URL(String(got.data.msg?.["media_path"]));
          const served = await fetch(`${server.base}${url.pathname}${url.search}`);
          assert.deepEqual(new Uint8Array(await served.arrayBuffer()), png);
        } finally {
          await agent.close();
          await server.kill("SIGTERM");
        }
      });
    });
  } finally {
    await fake.close();
  }
});
