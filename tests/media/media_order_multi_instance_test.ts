// A follower's media and the messages after it, as WeChat posts them to instances on one Redis
// behind a round-robin proxy: the agent reads each once, in the order the follower sent them,
// whichever instance got each and whichever instance dies (src/media/shared_intake.ts keeps the
// queue behind a follower's media in Redis, where every instance sees it and any may finish it).

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { type MainProcess, startMain } from "../helpers/main_process.ts";
import { killBridge, spawnBridge, waitReady } from "../helpers/spawn.ts";
import {
  findTestRedis,
  flushPrefix,
  rawClient,
  uniquePrefix,
  waitUntil,
} from "../store/_redis_test_env.ts";

const REDIS_URL = await findTestRedis();
const B = "/im_component/wx_official_account";
const AGENT_SECRET = "media-order-multi-instance-secret-0123456789";

function imageXml(from: string, mediaId: string, msgId: string): string {
  return `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[${from}]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[${mediaId}]]></MediaId><MsgId>${msgId}</MsgId></xml>`;
}

interface Setup {
  a: MainProcess;
  b: MainProcess;
  fake: FakeWechat;
  alice: TestAgent;
  prefix: string;
  /** What alice got of these MsgIds, as "id msg_type", in order. */
  got(ids: string[]): string[];
  /** Resolves once no follower has a media queue left in Redis. */
  queuesEnded(): Promise<void>;
}

/** Two instances on one Redis prefix, WeChat's fake with a slow media/get, alice on B. */
async function withTwoInstances(mediaDelayMs: number, fn: (s: Setup) => Promise<void>) {
  const prefix = uniquePrefix("mediaorder");
  const redisUrl = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
    encodeURIComponent(prefix)
  }`;
  const fake = await startFakeWechat({ appId: "wxorder", secret: "secret" });
  const env = {
    REDIS_URL: redisUrl,
    AGENT_SECRET,
    WECHAT_APPID: "wxorder",
    WECHAT_SECRET: "secret",
    WECHAT_API_BASE: fake.url,
  };
  const a = await startMain(env);
  const b = await startMain(env).catch(async (error) => {
    await a.stop();
    await fake.close();
    throw error;
  });
  const token = await mintAgentToken(AGENT_SECRET, "alice", 600);
  const alice = await connectAgent(`${b.wsBase}${B}/msg?token=${token}`);
  const raw = rawClient(REDIS_URL!);
  try {
    const png = new Uint8Array(2_000);
    png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    fake.addMedia("order-img", png, "image/png", "photo.png");
    // WeChat's media/get is slow today: the image is still downloading when the rest comes.
    fake.delay("cgi-bin/media/get", mediaDelayMs);
    await fn({
      a,
      b,
      fake,
      alice,
      prefix,
      got: (ids) =>
        alice.received.filter((e: Received) => ids.includes(String(e.data["id"])))
          .map((e) => `${e.data["id"]} ${e.data.msg_type}`),
      queuesEnded: async () => {
        await waitUntil(
          async () => (await raw.scard(`${prefix}mediaq_followers`)) === 0 || undefined,
          "the media queues to end",
          20_000,
        );
      },
    });
  } finally {
    await raw.quit();
    await alice.close();
    await a.stop();
    await b.stop();
    await fake.close();
    await flushPrefix(REDIS_URL!, prefix);
  }
}

async function ok(url: string, xml: string): Promise<void> {
  const res = await post(url, xml);
  assert.equal(`${res.status} ${res.text}`, "200 success");
}

Deno.test({
  name: "an image posted to one instance, a text to the other: the agent reads them in order",
  ignore: REDIS_URL === null,
  async fn() {
    await withTwoInstances(1_500, async ({ a, b, alice, got, queuesEnded }) => {
      await ok(`${a.base}${B}/send_xml`, imageXml("oOrder", "order-img", "9300001"));
      await ok(
        `${b.base}${B}/send_xml`,
        textXml("oOrder", "gh_account", "see the picture above", "9300002"),
      );
      const ids = ["9300001", "9300002"];
      await alice.waitFor(() => got(ids).length === 2, 15_000);
      await queuesEnded();
      assert.deepEqual(got(ids), ["9300001 image", "9300002 text"]);
    });
  },
});

Deno.test({
  name: "the instance fetching an image is killed: the other delivers it and what came after, once",
  ignore: REDIS_URL === null,
  async fn() {
    await withTwoInstances(3_000, async ({ a, b, fake, alice, got, queuesEnded }) => {
      await ok(`${a.base}${B}/send_xml`, imageXml("oKilled", "order-img", "9310001"));
      // A has started the download before it dies.
      await waitUntil(
        () => fake.calls.some((c) => c.path.endsWith("media/get")) || undefined,
        "A's media/get",
      );
      await ok(`${b.base}${B}/send_xml`, textXml("oKilled", "gh_account", "one", "9310002"));
      await ok(`${a.base}${B}/send_xml`, textXml("oKilled", "gh_account", "two", "9310003"));
      await ok(`${b.base}${B}/send_xml`, textXml("oKilled", "gh_account", "three", "9310004"));
      await a.stop(); // SIGKILL: no shutdown, its lease lapses
      await ok(`${b.base}${B}/send_xml`, textXml("oKilled", "gh_account", "four", "9310005"));
      const ids = ["9310001", "9310002", "9310003", "9310004", "9310005"];
      await alice.waitFor(() => got(ids).length === 5, 25_000);
      await queuesEnded();
      assert.deepEqual(got(ids), [
        "9310001 image",
        "9310002 text",
        "9310003 text",
        "9310004 text",
        "9310005 text",
      ]);
    });
  },
});

Deno.test({
  name: "WeChat's retry of an image posted to the other instance while the first fetches it",
  ignore: REDIS_URL === null,
  async fn() {
    await withTwoInstances(1_500, async ({ a, b, fake, alice, got, queuesEnded }) => {
      const image = imageXml("oRetry", "order-img", "9320001");
      await ok(`${a.base}${B}/send_xml`, image);
      await waitUntil(
        () => fake.calls.some((c) => c.path.endsWith("media/get")) || undefined,
        "A's media/get",
      );
      await ok(`${b.base}${B}/send_xml`, image);
      await ok(`${b.base}${B}/send_xml`, textXml("oRetry", "gh_account", "after", "9320002"));
      const ids = ["9320001", "9320002"];
      await alice.waitFor(() => got(ids).length === 2, 15_000);
      await queuesEnded();
      assert.deepEqual(got(ids), ["9320001 image", "9320002 text"]);
      assert.equal(
        fake.calls.filter((c) => c.path.endsWith("media/get")).length,
        1,
        "the retry is not fetched again",
      );
    });
  },
});

Deno.test({
  name: "a media job journaled by a bridge without Redis is delivered once it starts with Redis",
  ignore: REDIS_URL === null,
  async fn() {
    const prefix = uniquePrefix("mediajournal");
    const redisUrl = `${REDIS_URL}${REDIS_URL!.includes("?") ? "&" : "?"}prefix=${
      encodeURIComponent(prefix)
    }`;
    const dataDir = await Deno.makeTempDir({ prefix: "bridge-journal-" });
    const fake = await startFakeWechat({ appId: "wxorder", secret: "secret" });
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 7, 7, 7]);
    fake.addMedia("journal-img", png, "image/png");
    const env = {
      DATA_DIR: dataDir,
      STORE: "",
      WECHAT_APPID: "wxorder",
      WECHAT_SECRET: "secret",
      WECHAT_API_BASE: fake.url,
      AGENT_SECRET,
    };
    try {
      // One instance on SQLite, killed while WeChat's media/get hangs: the job stays journaled.
      fake.delay("cgi-bin/media/get", 60_000);
      const single = spawnBridge(env);
      await waitReady(single);
      await ok(`${single.base}${B}/send_xml`, imageXml("oJournal", "journal-img", "9330001"));
      await waitUntil(
        () => fake.calls.some((c) => c.path.endsWith("media/get")) || undefined,
        "media/get",
      );
      await killBridge(single, "SIGKILL");
      fake.delay("cgi-bin/media/get", 0);

      // The same DATA_DIR scaled out onto Redis.
      const scaled = spawnBridge({ ...env, REDIS_URL: redisUrl });
      try {
        await waitReady(scaled);
        const token = await mintAgentToken(AGENT_SECRET, "alice", 600);
        const alice = await connectAgent(`${scaled.wsBase}${B}/msg?token=${token}`);
        try {
          const got = await alice.waitFor((e) => e.data["id"] === "9330001", 15_000);
          assert.equal(got.data.msg_type, "image");
          assert.equal(got.data.msg?.["error"], undefined, JSON.stringify(got.data.msg));
        } finally {
          await alice.close();
        }
        assert.deepEqual([...Deno.readDirSync(`${dataDir}/media-jobs`)], []);
      } finally {
        await killBridge(scaled, "SIGTERM");
        await scaled.output;
      }
    } finally {
      await fake.close();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      await flushPrefix(REDIS_URL!, prefix);
    }
  },
});
