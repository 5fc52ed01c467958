// A reply WeChat refused (an errcode: 40003 invalid openid, 45002 too long, 40007 bad media id,
// 40001 twice over a fresh token) delivered nothing, so it gives its count back to WeChat's 5;
// one whose outcome is unknown (a 5xx, a connection reset, even when a retry is then refused:
// it may have been delivered) keeps it, and history says it may have arrived; and one refused after the follower wrote again gives nothing back to the new window. As
// an agent over a real socket against the fake WeChat, on every store main.ts can open, and on
// SQLite across a `kill -9`.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { killBridge, spawnBridge, waitReady } from "../helpers/spawn.ts";
import { everyStore, type ReplySetup, SEND, type StoreCase, withBridge } from "./_reply_env.ts";

const B = "/im_component/wx_official_account";
const AGENT = "qa";
/** The stores as the configuration names them: each test gets its own (a fresh DATA_DIR, or
 * a Redis key prefix of its own). */
const stores = await everyStore("refused");

/** A bridge on `store` with agent qa online (see withBridge). */
const withRefusedBridge = (store: StoreCase, fn: (s: ReplySetup) => Promise<void>) =>
  withBridge(store, { appId: "wxrefused", agentId: AGENT }, fn);

let msgIds = 8_810_000;

/** The follower writes (a new 48-hour window, 5 replies); resolves once the agent has it. */
async function followerWrites(base: string, agent: TestAgent, follower: string): Promise<void> {
  const id = String(++msgIds);
  const res = await post(`${base}${B}/send_xml`, textXml(follower, "gh_acct", `hi ${id}`, id));
  assert.equal(`${res.status} ${res.text}`, "200 success");
  await agent.waitFor((e) => e.data["id"] === id);
}

function replyFrame(follower: string, clientId: string) {
  return {
    data: {
      msg_type: "text",
      contact_id: follower,
      client_id: clientId,
      msg: { content: clientId },
    },
    result: { code: 1001, message: "common" },
  };
}

const isOutcome = (clientId: string) => (e: Received) =>
  (e.result.code === -1 && e.data["client_id"] === clientId) ||
  (e.data.msg?.["event"] === "reply_sent" && e.data.msg?.["client_id"] === clientId);

/** Sends a reply over the socket; resolves to its outcome: `reply_sent`, or the -1. */
async function reply(agent: TestAgent, follower: string, clientId: string): Promise<Received> {
  agent.send(replyFrame(follower, clientId));
  return await agent.waitFor(isOutcome(clientId), 10_000);
}

/** The bridge's count of replies against WeChat's quota, as `GET B/contacts` lists it. */
async function countOf(base: string, follower: string): Promise<unknown> {
  const res = await fetch(`${base}${B}/contacts?userid=${AGENT}`);
  const body = await res.json() as { contacts: Array<Record<string, unknown>> };
  return body.contacts.find((c) => c["contact_id"] === follower)?.["replies_since_inbound"];
}

/** The reply of `outcome` as `GET B/history` keeps it: its status and whether it may have
 * arrived (`unconfirmed`), which the console reads after a reload. */
async function historyOf(base: string, follower: string, outcome: Received) {
  const url = `${base}${B}/history?userid=${AGENT}&contact_id=${follower}&limit=50`;
  const body = await (await fetch(url)).json() as { messages: Array<Record<string, unknown>> };
  const item = body.messages.find((m) => m["id"] === outcome.data["reply_id"]);
  return { status: item?.["status"], unconfirmed: item?.["unconfirmed"] ?? null };
}

function assertSent(outcome: Received, what: string): void {
  assert.equal(outcome.data.msg?.["event"], "reply_sent", `${what}: ${JSON.stringify(outcome)}`);
}

for (const store of stores) {
  Deno.test(`refused replies give WeChat's quota back: 5 refused, then 5 sent (${store.name})`, async (t) => {
    await withRefusedBridge(store, async ({ server, fake, agent }) => {
      const follower = "oRefused";
      await followerWrites(server.base, agent, follower);
      assertSent(await reply(agent, follower, "first"), "the first reply");

      await t.step("each refusal gives its reply back and says the count", async () => {
        // 40001 twice: refused, a fresh token, refused again; one reply, given back once.
        for (const code of [40003, 45002, 40007, 40001, 40001, 40003]) {
          fake.failNext(SEND, code, `refused ${code}`);
        }
        for (const [i, code] of [40003, 45002, 40007, 40001, 40003].entries()) {
          const outcome = await reply(agent, follower, `refused-${i}`);
          assert.equal(outcome.result.code, -1, JSON.stringify(outcome));
          assert.equal(outcome.data["errcode"], code);
          assert.equal(outcome.data["replies_since_inbound"], 1, JSON.stringify(outcome));
          assert.equal(outcome.data["unconfirmed"], undefined);
          assert.deepEqual(await historyOf(server.base, follower, outcome), {
            status: "failed",
            unconfirmed: null,
          });
        }
        assert.equal(await countOf(server.base, follower), 1);
      });

      await t.step("the four replies left of WeChat's 5 are all sent", async () => {
        for (let i = 0; i < 4; i++) assertSent(await reply(agent, follower, `ok-${i}`), `ok-${i}`);
        assert.equal(fake.sent.length, 5);
        assert.equal(await countOf(server.base, follower), 5);
        const sixth = await reply(agent, follower, "sixth");
        assert.equal(sixth.data["limit"], "quota", JSON.stringify(sixth));
        assert.equal(fake.sent.length, 5);
      });
    });
  });

  Deno.test(`a token refused once, then accepted, counts once (${store.name})`, async () => {
    await withRefusedBridge(store, async ({ server, fake, agent }) => {
      const follower = "oToken";
      await followerWrites(server.base, agent, follower);
      fake.failNext(SEND, 40001, "invalid credential");
      assertSent(await reply(agent, follower, "retried"), "the reply sent on a fresh token");
      assert.equal(await countOf(server.base, follower), 1);
    });
  });

  Deno.test(`a reply whose outcome is unknown keeps its count (${store.name})`, async (t) => {
    await withRefusedBridge(store, async ({ server, fake, agent }) => {
      const follower = "oUnknown";
      await followerWrites(server.base, agent, follower);
      const cases: Array<{ kind: string; fail: () => void }> = [
        { kind: "a 502", fail: () => fake.failHttpNext(SEND, 502) },
        { kind: "a connection reset", fail: () => fake.dropNext(SEND) },
      ];
      for (const { kind, fail } of cases) {
        await t.step(`${kind}: it may have been delivered, so it counts`, async () => {
          fail();
          const before = await countOf(server.base, follower);
          const tries = fake.calls.filter((call) => call.path === SEND.slice(1)).length;
          const outcome = await reply(agent, follower, `unknown-${kind}`);
          assert.equal(outcome.result.code, -1, JSON.stringify(outcome));
          assert.equal(outcome.data["errcode"], -1);
          // Not sent again: a second copy would reach the follower as a second message.
          assert.equal(fake.calls.filter((call) => call.path === SEND.slice(1)).length, tries + 1);
          assert.equal(outcome.data["replies_since_inbound"], undefined);
          assert.equal(outcome.data["unconfirmed"], true);
          assert.equal(await countOf(server.base, follower), Number(before) + 1);
          assert.deepEqual(await historyOf(server.base, follower, outcome), {
            status: "failed",
            unconfirmed: true,
          });
        });
      }
    });
  });

  Deno.test(`a refusal after the follower wrote again gives nothing back (${store.name})`, async () => {
    await withRefusedBridge(store, async ({ server, fake, agent, gate }) => {
      const follower = "oLate";
      await followerWrites(server.base, agent, follower);
      fake.failNext(SEND, 40003, "invalid openid");
      const held = gate.holdNext();
      agent.send(replyFrame(follower, "late"));
      await held;
      // Counted in the first window; the follower's message opens a new one with 5 replies,
      // which five more replies use while the first is still on its way.
      await followerWrites(server.base, agent, follower);
      for (let i = 0; i < 5; i++) {
        agent.send(replyFrame(follower, `new-${i}`));
        await agent.waitFor((e) => e.data["client_id"] === `new-${i}` && e.result.code !== -1);
      }
      assert.equal(await countOf(server.base, follower), 5);
      gate.release();
      const late = await agent.waitFor(isOutcome("late"), 10_000);
      assert.equal(late.data["errcode"], 40003, JSON.stringify(late));
      assert.equal(late.data["replies_since_inbound"], undefined);
      for (let i = 0; i < 5; i++) {
        assertSent(await agent.waitFor(isOutcome(`new-${i}`), 10_000), `new-${i}`);
      }
      assert.equal(await countOf(server.base, follower), 5);
      const sixth = await reply(agent, follower, "sixth");
      assert.equal(sixth.data["limit"], "quota", JSON.stringify(sixth));
      assert.equal(fake.sent.length, 5);
    });
  });
}

Deno.test("a reply whose upload failed never reached WeChat's send: it is given back", async () => {
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);
  const files = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(png, { headers: { "content-type": "image/png" } }),
  );
  const store = {
    name: "memory",
    env: () => ({ STORE: "memory", MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}` }),
  };
  try {
    await withRefusedBridge(store, async ({ server, fake, agent }) => {
      const follower = "oUpload";
      await followerWrites(server.base, agent, follower);
      // The first try and the client's 3 retries: no answer from WeChat, but no send either.
      fake.failHttpNext("/cgi-bin/media/upload", 502, 4);
      agent.send({
        data: {
          msg_type: "image",
          contact_id: follower,
          client_id: "picture",
          msg: { media_url: `http://127.0.0.1:${files.addr.port}/picture.png` },
        },
        result: { code: 1002, message: "common" },
      });
      const outcome = await agent.waitFor(isOutcome("picture"), 10_000);
      assert.equal(outcome.data["errcode"], -1, JSON.stringify(outcome));
      assert.equal(outcome.data["replies_since_inbound"], 0);
      assert.equal(fake.calls.filter((c) => c.path === SEND.slice(1)).length, 0);
      assert.equal(await countOf(server.base, follower), 0);
    });
  } finally {
    await files.shutdown();
  }
});

Deno.test("given-back replies stay given back across kill -9 (SQLite, main.ts)", async () => {
  const fake = await startFakeWechat({ appId: "wxrefused", secret: "s" });
  const dataDir = await Deno.makeTempDir({ prefix: "refused-kill-" });
  const env = {
    DATA_DIR: dataDir,
    STORE: "",
    WECHAT_APPID: "wxrefused",
    WECHAT_SECRET: "s",
    WECHAT_API_BASE: fake.url,
    LOG_LEVEL: "error",
  };
  let bridge = spawnBridge(env);
  let agent: TestAgent | null = null;
  try {
    await waitReady(bridge);
    agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=${AGENT}`);
    await followerWrites(bridge.base, agent, "oKill");
    fake.failNext(SEND, 40003, "invalid openid", 5);
    for (let i = 0; i < 5; i++) {
      const outcome = await reply(agent, "oKill", `refused-${i}`);
      assert.equal(outcome.data["replies_since_inbound"], 0, JSON.stringify(outcome));
    }
    await agent.close();
    agent = null;
    await killBridge(bridge, "SIGKILL");

    bridge = spawnBridge(env);
    await waitReady(bridge);
    assert.equal(await countOf(bridge.base, "oKill"), 0);
    agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=${AGENT}`);
    for (let i = 0; i < 5; i++) assertSent(await reply(agent, "oKill", `after-${i}`), `after-${i}`);
    assert.equal(fake.sent.length, 5);
  } finally {
    await agent?.close();
    await killBridge(bridge, "SIGTERM");
    await fake.close();
    await Deno.remove(dataDir, { recursive: true });
  }
});
