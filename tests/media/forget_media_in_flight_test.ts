// user_authorization_revoke while the follower's picture was still being downloaded: the forget
// listed the files its history named (none yet), the download then ended and stored the
// picture, and the job, dropped, stored no history: the forgotten follower's picture stayed in
// DATA_DIR/media for ever, named by nothing. Now a dropped job's files go like a forget's.

import assert from "node:assert/strict";
import { post, textXml } from "../helpers/agent.ts";
import { withMediaBridge } from "../helpers/media_bridge.ts";
import { mediaKeyOf } from "../../src/media/storage.ts";
import { findTestRedis, flushPrefix, uniquePrefix } from "../store/_redis_test_env.ts";
import { imageXml, png, revokeXml } from "./_forget_media.ts";
import { fileExists } from "../store/_durable_store_cases.ts";

const B = "/im_component/wx_official_account";
const REDIS_URL = await findTestRedis();

for (const redis of [false, true]) {
  Deno.test({
    name: `a picture still downloading when its follower is forgotten is deleted once stored (${
      redis ? "Redis, its media queue" : "SQLite, the local intake"
    })`,
    ignore: redis && REDIS_URL === null,
    fn: () => inFlight(redis),
  });
}

async function inFlight(redis: boolean): Promise<void> {
  const prefix = uniquePrefix("forgetinflight");
  const env: Record<string, string> = { DATA_DIR: "" };
  if (redis) env["REDIS_URL"] = `${REDIS_URL}?prefix=${encodeURIComponent(prefix)}`;
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-forget-inflight-" });
  const bytes = png(13);
  const key = mediaKeyOf(bytes, "png");
  const file = `${dataDir}/media/${key.slice(0, 2)}/${key}`;
  const rename = Deno.rename;
  let stored = false;
  Deno.rename = async (from, to) => {
    await rename(from, to);
    if (String(to) === file) stored = true;
  };
  try {
    await withMediaBridge({ ...env, DATA_DIR: dataDir }, async (server, fake, agent) => {
      const send = async (xml: string) => {
        const res = await post(`${server.base}${B}/send_xml`, xml);
        assert.deepEqual([res.status, res.text], [200, "success"]);
      };
      fake.addMedia("inflight-img", bytes, "image/png", "photo.png");
      // media/get is slow: the picture is still downloading when the revoke comes.
      fake.delay("cgi-bin/media/get", 1500);
      await send(imageXml("oInFlight", "inflight-img", "88000001"));
      await send(revokeXml("oInFlight"));
      await send(textXml("oInFlight", "gh_account", "hello again", "88000002"));
      await agent.waitFor((e) => e.data["id"] === "88000002", 15_000);
      // The download ends after the forget and stores the file (seen renamed into place: it may
      // be gone again before a look at the directory)...
      let deadline = Date.now() + 10_000;
      while (!stored) {
        assert.ok(Date.now() < deadline, "the picture's download never ended");
        await new Promise((r) => setTimeout(r, 20));
      }
      // ...which no history names: it goes.
      deadline = Date.now() + 10_000;
      while (fileExists(file)) {
        assert.ok(Date.now() < deadline, `the forgotten follower's picture stays: ${file}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    });
  } finally {
    Deno.rename = rename;
    if (redis) await flushPrefix(REDIS_URL!, prefix);
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}
