import assert from "node:assert/strict";
import { accountsOf, parseAccounts } from "../../src/accounts.ts";
import { loadConfig } from "../../src/config.ts";
import { post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const two = JSON.stringify({
  accounts: [
    {
      id: "service",
      original_id: "gh_36dd0f0b3132",
      token: "t1",
      aes_key: "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
      appid: "wx1",
      secret: "s1",
      agents: ["alice", "carol"],
      kf_accounts: { alice: "kf2001@service" },
    },
    { id: "news", appid: "wx2", secret: "s2", api_base: "http://127.0.0.1:9000/" },
  ],
});

Deno.test("parseAccounts() reads ACCOUNTS_FILE", async (t) => {
  await t.step("each account's fields; no agents listed: any agent", () => {
    const [service, news] = parseAccounts(two);
    assert.deepEqual(service, {
      id: "service",
      originalId: "gh_36dd0f0b3132",
      token: "t1",
      aesKey: "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
      aesKeyPrevious: undefined,
      appId: "wx1",
      secret: "s1",
      apiBase: undefined,
      agents: ["alice", "carol"],
      kfAccounts: { alice: "kf2001@service" },
      autoReplyText: undefined,
    });
    assert.equal(news!.agents, null);
    assert.equal(news!.apiBase, "http://127.0.0.1:9000");
    assert.deepEqual(accountsOf([service!, news!], "alice").map((a) => a.id), ["service", "news"]);
    assert.deepEqual(accountsOf([service!, news!], "bob").map((a) => a.id), ["news"]);
  });

  await t.step("what is wrong is named, never a secret's value", () => {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /at least one account/],
      [{ accounts: [{ id: "Bad Id" }] }, /account 1: id "Bad Id"/],
      [{ accounts: [{ id: "a" }, { id: "a" }] }, /account a is listed twice/],
      [{ accounts: [{ id: "a", secret: "TOPSECRET" }] }, /account a: aes_key and secret need/],
      [{ accounts: [{ id: "a", original_id: "wx123" }] }, /original_id must be/],
      [
        { accounts: [{ id: "a", appid: "wx1" }, { id: "b", appid: "wx1", secret: "TOPSECRET" }] },
        /account b: appid wx1 is account a's as well/,
      ],
      [{ accounts: [{ id: "a", agents: "alice" }] }, /agents must be a list/],
      [{ accounts: [{ id: "a", tokn: "x" }] }, /unknown field "tokn"/],
      [{ accounts: [{ id: "a", token: 5 }] }, /token must be a string/],
      [{ accounts: [{ id: "a", kf_accounts: { alice: "kf1" } }] }, /kf_accounts must map/],
    ];
    for (const [doc, message] of cases) {
      assert.throws(() => parseAccounts(JSON.stringify(doc)), (error: Error) => {
        assert.ok(error instanceof SyntaxError);
        assert.match(error.message, message);
        assert.ok(!error.message.includes("TOPSECRET"));
        return true;
      });
    }
    assert.throws(() => parseAccounts("{"), /not JSON/);
  });

  await t.step("loadConfig() reads the file; WECHAT_* beside it stops start-up", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/accounts.json`, two, { mode: 0o600 });
      const config = loadConfig({ ACCOUNTS_FILE: `${dir}/accounts.json` });
      assert.deepEqual(config.accounts.map((a) => a.id), ["service", "news"]);
      assert.throws(
        () => loadConfig({ ACCOUNTS_FILE: `${dir}/accounts.json`, WECHAT_TOKEN: "x" }),
        /Cannot read ACCOUNTS_FILE: WECHAT_TOKEN set as well/,
      );
      assert.throws(
        () => loadConfig({ ACCOUNTS_FILE: `${dir}/accounts.json`, AGENT_KF_ACCOUNTS: "a=k@b" }),
        /AGENT_KF_ACCOUNTS set as well/,
      );
      // The file holds every account's secrets: one any user may read stops start-up.
      await Deno.chmod(`${dir}/accounts.json`, 0o644);
      assert.throws(
        () => loadConfig({ ACCOUNTS_FILE: `${dir}/accounts.json` }),
        /ACCOUNTS_FILE .*accounts\.json: it is open to every user \(mode 0644\).*chmod 600/,
      );
      await Deno.chmod(`${dir}/accounts.json`, 0o640);
      assert.equal(loadConfig({ ACCOUNTS_FILE: `${dir}/accounts.json` }).accounts.length, 2);
      assert.throws(
        () => loadConfig({ ACCOUNTS_FILE: `${dir}/missing.json` }),
        /Cannot read ACCOUNTS_FILE .*missing\.json/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("auto_reply_text: each account answers with its own text", async () => {
  const dir = await Deno.makeTempDir({ prefix: "accounts-auto-" });
  await Deno.writeTextFile(
    `${dir}/accounts.json`,
    JSON.stringify({
      accounts: [
        { id: "brand-a", original_id: "gh_brand_a", auto_reply_text: "品牌A：客服稍后回复" },
        { id: "brand-b", original_id: "gh_brand_b" },
      ],
    }),
    { mode: 0o600 },
  );
  const server = await startBridge({
    env: { ACCOUNTS_FILE: `${dir}/accounts.json`, AUTO_REPLY_TEXT: "稍后回复" },
  });
  try {
    const ask = async (account: string, original: string, from: string) =>
      (await post(
        `${server.base}/im_component/wx_official_account/send_xml/${account}`,
        textXml(from, original, "在吗", String(9_700_000 + from.length)),
      )).text;
    assert.match(await ask("brand-a", "gh_brand_a", "oA"), /品牌A：客服稍后回复/);
    const b = await ask("brand-b", "gh_brand_b", "oBb");
    assert.match(b, /稍后回复/);
    assert.doesNotMatch(b, /品牌A/);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
