// Issue 14.5: the demo routes (/demo/media, /demo/replies) exist only in demo mode, answer only an
// agent's token when AGENT_SECRET is set, and keep uploads on disk, bounded in count and bytes:
// a spawned main.ts took 20 uploads of 10 MB and grew by 440 MB, kept in memory forever.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { DEMO_MAX_FILES, DEMO_MAX_TOTAL_BYTES } from "../../src/replies/demo_media.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post } from "../helpers/agent.ts";
import { startMain } from "../helpers/main_process.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SECRET = "demo-routes-test-agent-secret-0123456789abcdef";
const MB = 1024 * 1024;

/** A PNG signature and `size` bytes that differ by `n`, so each upload is a file of its own. */
function picture(n: number, size = 64): Uint8Array {
  const bytes = new Uint8Array(size);
  bytes.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  new DataView(bytes.buffer).setUint32(8, n);
  return bytes;
}

function uploadPicture(base: string, bytes: Uint8Array, headers: HeadersInit = {}) {
  return fetch(`${base}${B}/demo/media`, {
    method: "POST",
    body: bytes as Uint8Array<ArrayBuffer>,
    headers: { "content-type": "image/png", ...headers },
  });
}

async function filesUnder(dir: string): Promise<{ count: number; bytes: number }> {
  let count = 0;
  let bytes = 0;
  try {
    for await (const shard of Deno.readDir(dir)) {
      for await (const file of Deno.readDir(`${dir}/${shard.name}`)) {
        count++;
        bytes += (await Deno.stat(`${dir}/${shard.name}/${file.name}`)).size;
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return { count, bytes };
}

Deno.test("demo routes: only in demo mode, only for agents when AGENT_SECRET is set", async (t) => {
  await t.step("with WeChat credentials they do not exist (404)", async () => {
    const fake = await startFakeWechat({ appId: "wxtest", secret: "s" });
    const server = await startBridge({
      env: { WECHAT_APPID: "wxtest", WECHAT_SECRET: "s", WECHAT_API_BASE: fake.url },
    });
    try {
      const replies = await fetch(`${server.base}${B}/demo/replies?contact_id=o1`);
      assert.equal(replies.status, 404);
      await replies.body?.cancel();
      const upload = await uploadPicture(server.base, picture(1));
      assert.equal(upload.status, 404);
      await upload.body?.cancel();
    } finally {
      await server.close();
      await fake.close();
    }
  });

  const dataDir = await Deno.makeTempDir({ prefix: "demo-routes-" });
  const server = await startBridge({ env: { AGENT_SECRET: SECRET, DATA_DIR: dataDir } });
  const token = await mintAgentToken(SECRET, "A", 3600);
  const auth = { authorization: `Bearer ${token}` };
  try {
    await t.step("an anonymous caller gets 401 and stores nothing", async () => {
      const replies = await fetch(`${server.base}${B}/demo/replies?contact_id=oDemo`);
      assert.equal(replies.status, 401);
      await replies.body?.cancel();
      const upload = await uploadPicture(server.base, picture(2));
      assert.equal(upload.status, 401);
      await upload.body?.cancel();
      assert.deepEqual(await filesUnder(`${dataDir}/demo-media`), { count: 0, bytes: 0 });
    });

    await t.step("an agent's token opens them", async () => {
      const upload = await uploadPicture(server.base, picture(3), auth);
      const body = await upload.json();
      assert.equal(upload.status, 200, JSON.stringify(body));
      assert.match(body.media_id, /^demo_/);
      const pic = await fetch(body.pic_url);
      assert.equal(pic.status, 200);
      assert.deepEqual(new Uint8Array(await pic.arrayBuffer()), picture(3));
      const replies = await fetch(`${server.base}${B}/demo/replies?contact_id=oDemo`, {
        headers: auth,
      });
      assert.equal(replies.status, 200);
      assert.deepEqual((await replies.json()).replies, []);
    });
  } finally {
    await server.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("demo uploads are bounded in count, on disk; the oldest are forgotten", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "demo-count-" });
  const server = await startBridge({ env: { DATA_DIR: dataDir } });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
  try {
    const ids: string[] = [];
    for (let n = 0; n < DEMO_MAX_FILES + 20; n++) {
      const res = await uploadPicture(server.base, picture(n));
      assert.equal(res.status, 200);
      ids.push((await res.json()).media_id);
    }
    const kept = await filesUnder(`${dataDir}/demo-media`);
    assert.equal(kept.count, DEMO_MAX_FILES);
    // The newest is still media WeChat's stand-in can give; the oldest is gone.
    for (
      const [mediaId, msgId, known] of [[ids.at(-1)!, "7100001", true], [
        ids[0]!,
        "7100002",
        false,
      ]] as const
    ) {
      const xml =
        `<xml><ToUserName><![CDATA[A]]></ToUserName><FromUserName><![CDATA[oPic]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><MediaId><![CDATA[${mediaId}]]></MediaId><MsgId>${msgId}</MsgId></xml>`;
      assert.equal((await post(`${server.base}${B}/send_xml`, xml)).text, "success");
      const got = await agent.waitFor((e) => e.data["id"] === msgId, 10_000);
      if (known) assert.match(String(got.data.msg?.["media_path"]), /\/media\//);
      else assert.match(String(got.data.msg?.["error"]), /No demo media/);
    }
  } finally {
    await agent.close();
    await server.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("25 demo uploads of 10 MB: bounded on disk, not kept in memory (spawned main.ts)", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "demo-bytes-" });
  const main = await startMain({ DATA_DIR: dataDir });
  try {
    const warm = await uploadPicture(main.base, picture(0));
    assert.equal(warm.status, 200);
    await warm.body?.cancel();
    const before = main.rss();
    for (let n = 1; n <= 25; n++) {
      const res = await uploadPicture(main.base, picture(n, 10 * MB - 1024));
      assert.equal(res.status, 200, await res.text());
    }
    // Let the runtime collect the request bodies it has finished with.
    await new Promise((r) => setTimeout(r, 1000));
    const growth = main.rss() - before;
    const kept = await filesUnder(`${dataDir}/demo-media`);
    // deno-lint-ignore no-console
    console.log(
      `RSS +${(growth / MB).toFixed(0)} MB after 250 MB of uploads; ${kept.count} files, ${
        (kept.bytes / MB).toFixed(0)
      } MB on disk`,
    );
    assert.ok(kept.bytes <= DEMO_MAX_TOTAL_BYTES, `${kept.bytes} bytes on disk`);
    // Kept in memory, the 250 MB would be all there (the old map grew by 536 MB); what remains is
    // the runtime not yet handing back bodies it freed (69-117 MB measured).
    assert.ok(growth < 200 * MB, `RSS grew by ${(growth / MB).toFixed(0)} MB`);
  } finally {
    await main.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
