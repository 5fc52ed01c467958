// Past one machine, completely: two `main.ts` processes on one Redis, with two official accounts
// (ACCOUNTS_FILE) and media in a real S3-protocol server. A follower of each account writes to
// one instance; that account's agent, on the other instance, gets the message and its picture,
// and replies through its own account's WeChat.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { type MainProcess, startMain } from "../helpers/main_process.ts";
import { startS3Server } from "../helpers/s3_server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";
import {
  A,
  type Account,
  Bq,
  encryptedCallback,
  next,
  writeAccountsFile,
} from "./_accounts_env.ts";

const REDIS_URL = await findTestRedis();
const B = "/im_component/wx_official_account";
const AGENT_SECRET = "accounts-multi-instance-secret-0123456789";

Deno.test({
  name: "two accounts on two instances: each follower reaches its own account's agent elsewhere",
  ignore: REDIS_URL === null,
  async fn(t) {
    const prefix = uniquePrefix("accounts-multi");
    const redisUrl = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
      encodeURIComponent(prefix)
    }`;
    const dir = await Deno.makeTempDir({ prefix: "accounts-multi-" });
    const s3 = await startS3Server(["media"]);
    const fakes: Record<string, FakeWechat> = {
      [A.id]: await startFakeWechat({ appId: A.appId, secret: A.secret }),
      [Bq.id]: await startFakeWechat({ appId: Bq.appId, secret: Bq.secret }),
    };
    const env = {
      ACCOUNTS_FILE: await writeAccountsFile(dir, fakes),
      REDIS_URL: redisUrl,
      MEDIA_STORE: s3.mediaStore("media"),
      AGENT_SECRET,
      HEARTBEAT_INTERVAL_S: "1",
    };
    const instances: MainProcess[] = [];
    const agents: TestAgent[] = [];
    try {
      instances.push(await startMain(env), await startMain(env));
      const [one, two] = instances as [MainProcess, MainProcess];
      const socket = async (i: MainProcess, agent: string) =>
        await connectAgent(
          `${i.wsBase}${B}/msg?userid=${agent}&token=${await mintAgentToken(
            AGENT_SECRET,
            agent,
            600,
          )}`,
        );
      const alice = await socket(two, "alice");
      const bob = await socket(one, "bob");
      agents.push(alice, bob);

      const write = async (i: MainProcess, account: Account, xml: string) => {
        const { query, body } = encryptedCallback(account, xml);
        const res = await post(`${i.base}${B}/send_xml/${account.id}?${query}`, body);
        assert.equal(res.text, "success");
      };

      await t.step(
        "brand A's picture posted to one instance reaches alice on the other",
        async () => {
          const bytes = new Uint8Array(20_000).map((_, i) => (i * 13) % 256);
          bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
          fakes[A.id]!.addMedia("pic-a", bytes, "image/png", "a.png");
          const msgId = String(9_600_000 + next());
          await write(
            one,
            A,
            `<xml><ToUserName><![CDATA[${A.originalId}]]></ToUserName><FromUserName><![CDATA[oMultiA]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[pic-a]]></MediaId><MsgId>${msgId}</MsgId></xml>`,
          );
          const got = await alice.waitFor((e: Received) => e.data["id"] === msgId, 20_000);
          assert.equal(got.data["account"], A.originalId);
          const url = (got.data.msg!["media_path"] as string).replace(one.base, two.base);
          const res = await fetch(url);
          assert.equal(res.status, 200);
          assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
          assert.equal((await s3.objects("media")).length, 1);
        },
      );

      await t.step("brand B's text posted to the other instance reaches bob", async () => {
        const msgId = String(9_600_000 + next());
        await write(two, Bq, textXml("oMultiB", Bq.originalId, "你好", msgId));
        const got = await bob.waitFor((e: Received) => e.data["id"] === msgId, 20_000);
        assert.equal(got.data["account"], Bq.originalId);
        assert.ok(!alice.messages().some((e) => e.data["contact_id"] === "oMultiB"));
        assert.ok(!bob.messages().some((e) => e.data["contact_id"] === "oMultiA"));
      });

      await t.step("each reply goes out through its own account's WeChat", async () => {
        const sent = (id: string) => (e: Received) =>
          e.data.msg?.["event"] === "reply_sent" && e.data.msg?.["client_id"] === id;
        alice.send({
          data: {
            msg_type: "text",
            contact_id: "oMultiA",
            client_id: "m-a",
            msg: { content: "A" },
          },
        });
        bob.send({
          data: {
            msg_type: "text",
            contact_id: "oMultiB",
            client_id: "m-b",
            msg: { content: "B" },
          },
        });
        await alice.waitFor(sent("m-a"), 10_000);
        await bob.waitFor(sent("m-b"), 10_000);
        assert.deepEqual(fakes[A.id]!.sent.map((m) => m["touser"]), ["oMultiA"]);
        assert.deepEqual(fakes[Bq.id]!.sent.map((m) => m["touser"]), ["oMultiB"]);
      });
    } finally {
      for (const agent of agents) await agent.close();
      for (const instance of instances) await instance.stop();
      for (const fake of Object.values(fakes)) await fake.close();
      await s3.close();
      await flushPrefix(REDIS_URL!, prefix);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
