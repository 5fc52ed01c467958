// user_authorization_revoke forgot the follower's contact, history and queue, but its stored
// media files stayed in DATA_DIR/media, and an agent who kept an old URL could renew it and open
// the picture forever. Now a forget deletes each file no other history names; a file another
// follower sent too, or an agent replied to another follower with, stays and keeps opening.

import assert from "node:assert/strict";
import type { FakeWechat } from "../../tools/fake_wechat.ts";
import { post, type Received, type TestAgent } from "../helpers/agent.ts";
import { withMediaBridge } from "../helpers/media_bridge.ts";
import type { TestBridge } from "../helpers/server.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";
import { imageXml, png, revokeXml } from "./_forget_media.ts";
import { fileExists } from "../store/_durable_store_cases.ts";

const B = "/im_component/wx_official_account";
const REDIS_URL = await findTestRedis();

const keyOf = (url: string) => new URL(url).pathname.split("/").at(-1)!;

/** Where disk storage keeps a media URL's file. */
function fileOf(dataDir: string, url: string): string {
  const key = keyOf(url);
  return `${dataDir}/media/${key.slice(0, 2)}/${key}`;
}

/** The one forget record left in the directory. */
function recordOf(dataDir: string): string {
  const names = [...Deno.readDirSync(`${dataDir}/media-forgotten`)]
    .map((e) => e.name).filter((n) => n.endsWith(".json"));
  assert.equal(names.length, 1, String(names));
  return `${dataDir}/media-forgotten/${names[0]}`;
}

/** The forgets whose files are not all decided yet. */
async function recordsLeft(dataDir: string): Promise<number> {
  let n = 0;
  try {
    for await (const e of Deno.readDir(`${dataDir}/media-forgotten`)) {
      if (e.name.endsWith(".json")) n++;
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return n;
}

async function statusOf(url: string): Promise<number> {
  const res = await fetch(url);
  await res.body?.cancel();
  return res.status;
}

async function renewalOf(server: TestBridge, url: string): Promise<number> {
  const res = await fetch(`${server.base}${B}/media_url?userid=A&url=${encodeURIComponent(url)}`);
  await res.body?.cancel();
  return res.status;
}

async function until(done: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`Never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends a picture as `follower`; resolves to the media URL the agent got. */
async function sendPicture(
  server: TestBridge,
  fake: FakeWechat,
  agent: TestAgent,
  follower: string,
  bytes: Uint8Array,
  msgId: string,
): Promise<string> {
  fake.addMedia(`m-${msgId}`, bytes, "image/png", "photo.png");
  const res = await post(`${server.base}${B}/send_xml`, imageXml(follower, `m-${msgId}`, msgId));
  assert.deepEqual([res.status, res.text], [200, "success"]);
  const got = await agent.waitFor((e: Received) => e.data["id"] === msgId, 15_000);
  const url = got.data.msg!["media_path"] as string;
  assert.match(url, /\/media\/[0-9a-f]{64}\.png\?/, JSON.stringify(got.data.msg));
  return url;
}

const STORES: Array<[string, Record<string, string>, boolean]> = [
  ["memory", { STORE: "memory" }, false],
  ["sqlite", { STORE: "sqlite" }, false],
  ["kv", { STORE: "kv" }, false],
  ["redis", {}, REDIS_URL === null],
];

for (const [name, storeEnv, ignore] of STORES) {
  Deno.test({
    name: `a forgotten follower's own media files are deleted, shared ones kept (${name})`,
    ignore,
    async fn() {
      const dataDir = await Deno.makeTempDir({ prefix: "bridge-forget-media-" });
      const prefix = uniquePrefix("forgetmedia");
      // URLs outlive the hours the test's clock moves on.
      const env: Record<string, string> = {
        ...storeEnv,
        DATA_DIR: dataDir,
        MEDIA_URL_TTL_S: String(3 * 24 * 3600),
      };
      let offset = 0;
      const now = () => Date.now() + offset;
      if (name === "redis") {
        env["REDIS_URL"] = `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}`;
      }
      try {
        await withMediaBridge(env, async (server, fake, agent) => {
          const own = await sendPicture(server, fake, agent, "oGone", png(3), "87000001");
          // The same bytes from two followers: one file (a forwarded picture, a sticker).
          const shared = await sendPicture(server, fake, agent, "oGone", png(5), "87000002");
          const sharedToo = await sendPicture(server, fake, agent, "oStays", png(5), "87000003");
          assert.equal(fileOf(dataDir, shared), fileOf(dataDir, sharedToo));
          // The agent replies to oStays with a picture oGone had sent too.
          const replied = await sendPicture(server, fake, agent, "oGone", png(7), "87000004");
          const up = await fetch(`${server.base}${B}/upload?userid=A&filename=r.png`, {
            method: "POST",
            body: png(7) as Uint8Array<ArrayBuffer>,
            headers: { "content-type": "image/png" },
          });
          const uploaded = await up.json();
          assert.equal(up.status, 201, JSON.stringify(uploaded));
          assert.equal(fileOf(dataDir, uploaded.media_url), fileOf(dataDir, replied));
          agent.send({
            data: {
              msg_type: "image",
              contact_id: "oStays",
              client_id: "r1",
              msg: { media_id: uploaded.media_id, media_url: uploaded.media_url },
            },
            result: { code: 1001, message: "common" },
          });
          await agent.waitFor((e) =>
            e.result.code === 102 && e.data.msg?.["event"] === "reply_sent" &&
            e.data.msg?.["client_id"] === "r1"
          );
          // Past the hour an upload is kept for its reply: the reply in oStays' history keeps it.
          offset += 2 * 3600_000;
          // An upload whose reply is not sent yet, of bytes oGone had sent: kept for its reply.
          const pending = await sendPicture(server, fake, agent, "oGone", png(11), "87000005");
          const held = await fetch(`${server.base}${B}/upload?userid=A&filename=p.png`, {
            method: "POST",
            body: png(11) as Uint8Array<ArrayBuffer>,
            headers: { "content-type": "image/png" },
          });
          assert.equal(held.status, 201);
          await held.body?.cancel();
          for (const url of [own, shared, replied, pending]) {
            assert.ok(fileExists(fileOf(dataDir, url)), `stored before the revoke: ${url}`);
          }

          const res = await post(`${server.base}${B}/send_xml`, revokeXml("oGone"));
          assert.deepEqual([res.status, res.text], [200, "success"]);

          await until(() => Promise.resolve(!fileExists(fileOf(dataDir, own))), "own file deleted");
          // Only the held upload waits (for its hour): everything else is decided.
          await until(() => recordsLeft(dataDir).then((n) => n === 1), "the forget's pass done");
          await until(
            () => Deno.readTextFile(recordOf(dataDir)).then((t) => !t.includes(keyOf(own))),
            "the record rewritten",
          );
          assert.deepEqual(JSON.parse(await Deno.readTextFile(recordOf(dataDir))), {
            keys: [keyOf(pending)],
          });
          assert.equal(await statusOf(own), 404, "the forgotten picture's URL");
          assert.equal(await renewalOf(server, own), 404, "its renewal");
          for (const url of [shared, sharedToo, replied, uploaded.media_url as string, pending]) {
            assert.ok(fileExists(fileOf(dataDir, url)), `kept: ${url}`);
            assert.equal(await statusOf(url), 200, `still opens: ${url}`);
            assert.equal(await renewalOf(server, url), 200, `still renews: ${url}`);
          }
        }, { now });
      } finally {
        if (name === "redis") await flushPrefix(REDIS_URL!, prefix);
        await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      }
    },
  });
}
