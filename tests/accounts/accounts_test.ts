// Issue 18's "done when" for several official accounts: two accounts in one ACCOUNTS_FILE, each
// callback verified with its own token and AES key (encrypted by wechat-crypto, the other side),
// replies sent with each account's own access token to its own fake WeChat, and agents of one
// account never seeing the other's followers; on the embedded store and on Redis.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { computeSignature } from "../../src/wechat/signature.ts";
import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, rawClient, uniquePrefix } from "../store/_redis_test_env.ts";
import {
  A,
  type Account,
  Bq,
  encryptedCallback,
  next,
  writeAccountsFile,
} from "./_accounts_env.ts";

const B = "/im_component/wx_official_account";
const REDIS_URL = await findTestRedis();

/** A follower of `account` writes; the bridge answers "success" once it has the message. */
async function follower(server: TestBridge, account: Account, from: string, text: string) {
  const msgId = String(9_300_000 + next());
  const { query, body } = encryptedCallback(
    account,
    textXml(from, account.originalId, text, msgId),
  );
  const res = await post(`${server.base}${B}/send_xml/${account.id}?${query}`, body);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
  return msgId;
}

async function withAccounts(
  env: Record<string, string>,
  fn: (server: TestBridge, fakes: Record<string, FakeWechat>) => Promise<void>,
) {
  const fakeA = await startFakeWechat({ appId: A.appId, secret: A.secret });
  const fakeB = await startFakeWechat({ appId: Bq.appId, secret: Bq.secret });
  const dir = await Deno.makeTempDir({ prefix: "accounts-test-" });
  const file = await writeAccountsFile(dir, { [A.id]: fakeA, [Bq.id]: fakeB });
  const server = await startBridge({ env: { ACCOUNTS_FILE: file, ...env } });
  try {
    await fn(server, { [A.id]: fakeA, [Bq.id]: fakeB });
  } finally {
    await server.close();
    await fakeA.close();
    await fakeB.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const textFrom = (who: string) => (e: Received) =>
  e.result.code === 1001 && e.data["contact_id"] === who;

async function scenario(
  t: Deno.TestContext,
  server: TestBridge,
  fakes: Record<string, FakeWechat>,
) {
  const ws = (query: string) => `${server.wsBase}${B}/msg?${query}`;
  const agents: TestAgent[] = [];
  try {
    await t.step("each account's URL check takes its own token only", async () => {
      for (const [account, other] of [[A, Bq], [Bq, A]] as const) {
        const timestamp = String(Math.floor(Date.now() / 1000));
        const sign = (token: string) =>
          new URLSearchParams({
            signature: computeSignature(token, timestamp, "n1"),
            timestamp,
            nonce: "n1",
            echostr: `echo-${account.id}`,
          });
        const ok = await fetch(`${server.base}${B}/send_xml/${account.id}?${sign(account.token)}`);
        assert.equal(await ok.text(), `echo-${account.id}`);
        const wrong = await fetch(`${server.base}${B}/send_xml/${account.id}?${sign(other.token)}`);
        await wrong.body?.cancel();
        assert.equal(wrong.status, 401);
      }
      // An id that does not decode (a scanner's `%E0%A4%A`) names no account: it was a 500.
      for (const id of ["brand-z", "BRAND-A", "%E0%A4%A", "brand-a%2F"]) {
        const unknown = await fetch(`${server.base}${B}/send_xml/${id}`, { method: "POST" });
        assert.equal(unknown.status, 404, id);
        assert.match(await unknown.text(), /No account/);
      }
    });

    const alice = await connectAgent(ws("userid=alice"));
    const bob = await connectAgent(ws("userid=bob"));
    agents.push(alice, bob);

    await t.step(
      "an agent of both accounts names one; an agent of one cannot name the other",
      async () => {
        const both = await fetch(`${server.base}${B}/contacts?userid=carol`);
        assert.equal(both.status, 400);
        assert.match(await both.text(), /brand-a, brand-b.*account=/);
        const other = await fetch(`${server.base}${B}/contacts?userid=alice&account=brand-b`);
        assert.equal(other.status, 403);
        assert.match(await other.text(), /alice does not serve account brand-b/);
        await assert.rejects(connectAgent(ws("userid=alice&account=brand-b")));
        await assert.rejects(connectAgent(ws("userid=dave")));
      },
    );

    await t.step("each callback is read with its own AES key, and only its own", async () => {
      const idA = await follower(server, A, "oFanA", "你好 A");
      const idB = await follower(server, Bq, "oFanB", "你好 B");
      const gotA = await alice.waitFor(textFrom("oFanA"), 5000);
      assert.equal(gotA.data["id"], idA);
      assert.equal(gotA.data["account"], A.originalId);
      const gotB = await bob.waitFor(textFrom("oFanB"), 5000);
      assert.equal(gotB.data["id"], idB);
      assert.equal(gotB.data["account"], Bq.originalId);
      // Brand B's ciphertext posted to brand A's callback is refused, not delivered.
      const { query, body } = encryptedCallback(A, textXml("oSpy", A.originalId, "x", "1"), Bq);
      const res = await post(`${server.base}${B}/send_xml/${A.id}?${query}`, body);
      assert.ok(res.status === 401 || res.status === 400, `${res.status} ${res.text}`);
    });

    await t.step("replies go out with each account's own access token", async () => {
      alice.send({
        data: {
          msg_type: "text",
          contact_id: "oFanA",
          client_id: "ra",
          msg: { content: "A 的回复" },
        },
      });
      bob.send({
        data: {
          msg_type: "text",
          contact_id: "oFanB",
          client_id: "rb",
          msg: { content: "B 的回复" },
        },
      });
      const sentEvent = (id: string) => (e: Received) =>
        e.data.msg?.["event"] === "reply_sent" && e.data.msg?.["client_id"] === id;
      await alice.waitFor(sentEvent("ra"), 5000);
      await bob.waitFor(sentEvent("rb"), 5000);
      const fakeA = fakes[A.id]!;
      const fakeB = fakes[Bq.id]!;
      assert.deepEqual(fakeA.sent.map((m) => m["touser"]), ["oFanA"]);
      assert.deepEqual(fakeB.sent.map((m) => m["touser"]), ["oFanB"]);
      // Each reply shows the agent's kf account of that account (kf_accounts in the file).
      const kf = (m: Record<string, unknown>) =>
        (m["customservice"] as { kf_account?: string } | undefined)?.kf_account;
      assert.deepEqual(fakeA.sent.map(kf), ["kf2001@brand_a"]);
      assert.deepEqual(fakeB.sent.map(kf), ["kf3001@brand_b"]);
      // Each fake issued its token to its own appid and secret only, and saw only that token.
      assert.ok(fakeA.tokensIssued >= 1 && fakeB.tokensIssued >= 1);
      const tokensAt = (fake: FakeWechat) =>
        new Set(
          fake.calls.filter((c) => c.path === "cgi-bin/message/custom/send").map((c) =>
            c.query["access_token"]
          ),
        );
      const [tokenA] = [...tokensAt(fakeA)];
      const [tokenB] = [...tokensAt(fakeB)];
      assert.ok(tokenA && tokenB && tokenA !== tokenB);
    });

    await t.step("each account's media opens by the URL its agent got", async () => {
      for (const [account, agent, fan] of [[A, alice, "oFanA"], [Bq, bob, "oFanB"]] as const) {
        const bytes = new Uint8Array(5000).map((_, i) => (i * 7 + account.id.length) % 256);
        bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
        fakes[account.id]!.addMedia(`pic-${account.id}`, bytes, "image/png", "pic.png");
        const msgId = String(9_500_000 + next());
        const xml =
          `<xml><ToUserName><![CDATA[${account.originalId}]]></ToUserName><FromUserName><![CDATA[${fan}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[pic-${account.id}]]></MediaId><MsgId>${msgId}</MsgId></xml>`;
        const { query, body } = encryptedCallback(account, xml);
        const res = await post(`${server.base}${B}/send_xml/${account.id}?${query}`, body);
        assert.equal(res.text, "success");
        const got = await agent.waitFor((e) => e.data["id"] === msgId, 10_000);
        assert.equal(got.data.msg!["error"], undefined, String(got.data.msg!["error"]));
        const media = await fetch(got.data.msg!["media_path"] as string);
        assert.equal(media.status, 200);
        assert.deepEqual(new Uint8Array(await media.arrayBuffer()), bytes);
      }
    });

    await t.step("agents of one account never see the other's followers", async () => {
      const contacts = async (agent: string, account?: string) => {
        const q = new URLSearchParams({ userid: agent, ...(account ? { account } : {}) });
        const res = await fetch(`${server.base}${B}/contacts?${q}`);
        assert.equal(res.status, 200);
        const body = await res.json();
        const list = (Array.isArray(body) ? body : body.contacts) as Array<
          { contact_id?: string; id?: string }
        >;
        return list.map((c) => c.contact_id ?? c.id);
      };
      assert.deepEqual(await contacts("alice"), ["oFanA"]);
      assert.deepEqual(await contacts("bob"), ["oFanB"]);
      assert.deepEqual(await contacts("carol", A.id), []);
      assert.ok(!alice.messages().some((e) => e.data["contact_id"] === "oFanB"));
      assert.ok(!bob.messages().some((e) => e.data["contact_id"] === "oFanA"));
      const history = await fetch(
        `${server.base}${B}/history?userid=alice&account=${Bq.id}&contact_id=oFanB`,
      );
      await history.body?.cancel();
      assert.equal(history.status, 403);
      // Alice replying to brand B's follower goes through brand A, which does not know it.
      const res = await fetch(`${server.base}${B}/send?userid=alice`, {
        method: "POST",
        body: JSON.stringify({
          data: { msg_type: "text", contact_id: "oFanB", msg: { content: "x" } },
        }),
      });
      assert.equal(res.status, 404, await res.text());
      assert.deepEqual(fakes[Bq.id]!.sent.map((m) => m["touser"]), ["oFanB"]);
      assert.ok(!fakes[A.id]!.sent.some((m) => m["touser"] === "oFanB"));
    });

    await t.step("plain send_xml finds the account by ToUserName", async () => {
      const carolB = await connectAgent(ws(`userid=carol&account=${Bq.id}`));
      agents.push(carolB);
      const msgId = String(9_400_000 + next());
      const { query, body } = encryptedCallback(
        Bq,
        textXml("oFanB", Bq.originalId, "again", msgId),
      );
      const res = await post(`${server.base}${B}/send_xml?${query}`, body);
      assert.equal(res.text, "success");
      await bob.waitFor((e) => e.data["id"] === msgId, 5000);
    });

    await t.step("plain send_xml refuses a ToUserName no account has", async () => {
      // An account taken out of the file whose token brand A shares: its followers' messages
      // went to brand A (the first account), and brand A's agents saw another brand's follower.
      const gone = { ...A, originalId: "gh_gone00000009" };
      const msgId = String(9_400_000 + next());
      const { query, body } = encryptedCallback(
        gone,
        textXml("oGone", gone.originalId, "x", msgId),
        A,
      );
      const res = await post(`${server.base}${B}/send_xml?${query}`, body);
      assert.equal(res.status, 404, res.text);
      assert.match(res.text, /No account has original_id gh_gone00000009/);
      const contacts = await fetch(`${server.base}${B}/contacts?userid=alice`);
      assert.doesNotMatch(await contacts.text(), /oGone/);
      assert.ok(!alice.messages().some((e) => e.data["contact_id"] === "oGone"));
      // WeChat drops it after three tries: the refusal is counted where operators look.
      const metrics = await (await fetch(`${server.base}/metrics`)).text();
      assert.match(metrics, /^bridge_rejected_total\{[^}]*reason="webhook_404"[^}]*\} 1$/m);
    });

    await t.step("the seed's simplified form on an account's URL carries no account", async () => {
      // ToUserName names the agent, not the account (SPEC): no `data.account`, though the
      // callback URL says which account the message came through.
      const msgId = String(9_400_000 + next());
      const { query, body } = encryptedCallback(A, textXml("oSeedA", "alice", "seed", msgId));
      const res = await post(`${server.base}${B}/send_xml/${A.id}?${query}`, body);
      assert.equal(res.text, "success");
      const got = await alice.waitFor((e) => e.data["id"] === msgId, 5000);
      assert.equal("account" in got.data, false);
    });

    await t.step("a ToUserName naming another account's agent is not the account", async () => {
      // Bob serves brand B only: on brand A's URL the message is brand A's agents', and its
      // `data.account` was "bob", an agent passed off as the official account.
      const msgId = String(9_400_000 + next());
      const { query, body } = encryptedCallback(A, textXml("oSeedBob", "bob", "seed", msgId));
      const res = await post(`${server.base}${B}/send_xml/${A.id}?${query}`, body);
      assert.equal(res.text, "success");
      const got = await alice.waitFor((e) => e.data["id"] === msgId, 5000);
      assert.equal(got.data["account"], undefined);
    });

    await t.step("/readyz asks every account", async () => {
      const res = await fetch(`${server.base}/readyz`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { status: "ready" });
    });

    await t.step("metrics carry the account", async () => {
      const text = await (await fetch(`${server.base}/metrics`)).text();
      assert.match(text, /bridge_messages_in_total\{[^}]*account="brand-a"/);
      assert.match(text, /bridge_messages_in_total\{[^}]*account="brand-b"/);
      assert.equal(text.match(/^# TYPE bridge_messages_in_total /gm)?.length, 1);
      const rss = text.split("\n").filter((l) => l.startsWith("process_resident_memory_bytes"));
      assert.equal(rss.length, 1, rss.join("\n"));
      assert.match(rss[0]!, /^process_resident_memory_bytes \d/);
    });
  } finally {
    for (const agent of agents) await agent.close();
  }
}

Deno.test("an agent of one account cannot renew a media URL of another's follower", async () => {
  // With AGENT_SECRET every account signs media URLs with the one key derived from it: alice
  // (brand A only) renewed bob's picture of a brand B follower through brand A, and opened it.
  const secret = "a".repeat(40);
  await withAccounts({ AGENT_SECRET: secret }, async (server, fakes) => {
    const token = (agent: string) => mintAgentToken(secret, agent, 600);
    const bob = await connectAgent(`${server.wsBase}${B}/msg?token=${await token("bob")}`);
    try {
      const bytes = new Uint8Array(4000).map((_, i) => (i * 13) % 256);
      bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      fakes[Bq.id]!.addMedia("pic-renew", bytes, "image/png", "pic.png");
      const msgId = String(9_600_000 + next());
      const xml =
        `<xml><ToUserName><![CDATA[${Bq.originalId}]]></ToUserName><FromUserName><![CDATA[oFanR]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[pic-renew]]></MediaId><MsgId>${msgId}</MsgId></xml>`;
      const { query, body } = encryptedCallback(Bq, xml);
      assert.equal(
        (await post(`${server.base}${B}/send_xml/${Bq.id}?${query}`, body)).text,
        "success",
      );
      const got = await bob.waitFor((e) => e.data["id"] === msgId, 10_000);
      const url = got.data.msg!["media_path"] as string;
      const renew = async (agent: string) => {
        const res = await fetch(`${server.base}${B}/media_url?url=${encodeURIComponent(url)}`, {
          headers: { authorization: `Bearer ${await token(agent)}` },
        });
        return { status: res.status, text: await res.text() };
      };
      const alice = await renew("alice");
      assert.equal(alice.status, 404, alice.text);
      assert.match(alice.text, /this account holds no such file/);
      assert.equal((await renew("bob")).status, 200);
    } finally {
      await bob.close();
    }
  });
});

/** Writes an ACCOUNTS_FILE anew: brand A served by alice, brand B by `agentsOfB`. */
async function writeBrands(file: string, agentsOfB: string[]): Promise<void> {
  await Deno.remove(file).catch(() => {});
  const accounts = [
    { id: "brand-a", original_id: "gh_brand_a", agents: ["alice"] },
    { id: "brand-b", original_id: "gh_brand_b", agents: agentsOfB },
  ];
  await Deno.writeTextFile(file, JSON.stringify({ accounts }), { mode: 0o600 });
}

Deno.test("a follower is not transferred to an agent taken off its account", async () => {
  // Dave served brand B, then left its list: brand B's store still knew him, a transfer to him
  // was accepted, and the follower waited on an agent who can no longer connect to brand B.
  const dir = await Deno.makeTempDir({ prefix: "accounts-transfer-" });
  const file = `${dir}/accounts.json`;
  const writeFile = (agentsOfB: string[]) => writeBrands(file, agentsOfB);
  const env = { ACCOUNTS_FILE: file, DATA_DIR: `${dir}/data`, STORE: "kv" };
  try {
    await writeFile(["bob", "dave"]);
    let server = await startBridge({ env });
    const dave = await connectAgent(`${server.wsBase}${B}/msg?userid=dave`);
    await dave.close();
    await server.close();
    await writeFile(["bob"]);
    server = await startBridge({ env });
    const bob = await connectAgent(`${server.wsBase}${B}/msg?userid=bob`);
    try {
      const res = await post(
        `${server.base}${B}/send_xml/brand-b`,
        textXml("oFanT", "gh_brand_b", "转人工", String(9_800_000 + next())),
      );
      assert.equal(res.status, 200, res.text);
      await bob.waitFor(textFrom("oFanT"), 5000);
      const transfer = await fetch(`${server.base}${B}/send?userid=bob`, {
        method: "POST",
        body: JSON.stringify({
          data: { msg_type: "transfer", contact_id: "oFanT", msg: { to: "dave" } },
        }),
      });
      assert.equal(transfer.status, 409);
      assert.match(await transfer.text(), /agent dave does not serve this account/);
      const contacts = await (await fetch(`${server.base}${B}/contacts?userid=bob`)).json();
      assert.deepEqual(contacts.contacts.map((c: { contact_id: string }) => c.contact_id), [
        "oFanT",
      ]);
    } finally {
      await bob.close();
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an agent taken off its account is no longer written to, nor keeps its followers", async (t) => {
  // Dave served brand B, then left its list. Brand B's store still knew him: a colleague's
  // message to him was "delivered" to a queue he can never read again, and so was every new
  // message of the followers he served, which no one else could claim or answer.
  const dir = await Deno.makeTempDir({ prefix: "accounts-removed-" });
  const file = `${dir}/accounts.json`;
  const writeFile = (agentsOfB: string[]) => writeBrands(file, agentsOfB);
  const env = { ACCOUNTS_FILE: file, DATA_DIR: `${dir}/data`, STORE: "kv" };
  try {
    await writeFile(["bob", "dave"]);
    let server = await startBridge({ env });
    const dave = await connectAgent(`${server.wsBase}${B}/msg?userid=dave`);
    const first = await post(
      `${server.base}${B}/send_xml/brand-b`,
      textXml("oFanD", "gh_brand_b", "你好", String(9_850_000 + next())),
    );
    assert.equal(first.status, 200, first.text);
    await dave.waitFor(textFrom("oFanD"), 5000);
    await dave.close();
    await server.close();
    await writeFile(["bob"]);
    server = await startBridge({ env });
    const bob = await connectAgent(`${server.wsBase}${B}/msg?userid=bob`);
    try {
      await t.step("a message to him is refused, not delivered to nobody", async () => {
        const res = await fetch(`${server.base}${B}/send?userid=bob`, {
          method: "POST",
          body: JSON.stringify({
            data: { msg_type: "text", contact_id: "dave", msg: { content: "can you take oFanD?" } },
          }),
        });
        const text = await res.text();
        assert.equal(res.status, 409, text);
        assert.match(text, /agent dave does not serve this account/);
      });
      await t.step("he is not offered as a transfer target", async () => {
        const res = await fetch(`${server.base}${B}/agents?userid=bob`);
        const { agents } = await res.json();
        assert.deepEqual(agents.map((a: { agent_id: string }) => a.agent_id), ["bob"]);
      });
      await t.step("his follower's next message reaches an agent of the account", async () => {
        const msgId = String(9_850_000 + next());
        const res = await post(
          `${server.base}${B}/send_xml/brand-b`,
          textXml("oFanD", "gh_brand_b", "还在吗", msgId),
        );
        assert.equal(res.status, 200, res.text);
        await bob.waitFor((e) => e.data["id"] === msgId, 5000);
      });
      await t.step("the seed's form naming him goes to the account's agents", async () => {
        const msgId = String(9_850_000 + next());
        const res = await post(
          `${server.base}${B}/send_xml/brand-b`,
          textXml("oFanE", "dave", "hello", msgId),
        );
        assert.equal(res.status, 200, res.text);
        await bob.waitFor((e) => e.data["id"] === msgId, 5000);
      });
    } finally {
      await bob.close();
      await server.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("two official accounts in one deployment, on the embedded store", async (t) => {
  await withAccounts({ STORE: "kv" }, (server, fakes) => scenario(t, server, fakes));
});

Deno.test({
  name: "two official accounts in one deployment, on Redis",
  ignore: REDIS_URL === null,
  async fn(t) {
    const prefix = uniquePrefix("accounts");
    const url = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
      encodeURIComponent(prefix)
    }`;
    try {
      await withAccounts({ REDIS_URL: url }, async (server, fakes) => {
        await scenario(t, server, fakes);
        await t.step("each account's keys live under its own prefix", async () => {
          const redis = rawClient(REDIS_URL!);
          try {
            const keys = await redis.keys(`${prefix}*`);
            assert.ok(keys.some((k) => k.startsWith(`${prefix}brand-a:`)), keys.join(" "));
            assert.ok(keys.some((k) => k.startsWith(`${prefix}brand-b:`)), keys.join(" "));
            assert.ok(keys.every((k) => /^(brand-a|brand-b):/.test(k.slice(prefix.length))));
          } finally {
            await redis.quit();
          }
        });
      });
    } finally {
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
