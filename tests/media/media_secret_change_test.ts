// Media URLs are signed with a key derived from AGENT_SECRET (else kept in DATA_DIR). The docs
// tell operators to change AGENT_SECRET to revoke every token at once, and to set one before
// going to production: either way every picture, voice and video already in the histories was
// refused (403) for good, since a history item's URL was renewed only when the current key had
// signed it. And a bridge started behind a proxy without PUBLIC_URL hands out `http://` URLs an
// `https://` console does not load: once PUBLIC_URL is set, history kept the old base for good.
// A real bridge on one DATA_DIR (SQLite), restarted with the new setting.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, type Received } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const APPID = "wxsecretchange";
const SECRET = "secret";
const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);
const OLD_SECRET = "media-secret-change-old-0123456789abcdef";
const NEW_SECRET = "media-secret-change-new-0123456789abcdef";

/** The agent's socket URL and HTTP headers under `secret` (none: open mode). */
async function agentAuth(secret: string | undefined) {
  if (secret === undefined) return { query: "", headers: {} as Record<string, string> };
  const token = await mintAgentToken(secret, "A", 3600);
  return { query: `&token=${token}`, headers: { authorization: `Bearer ${token}` } };
}

const PUBLIC_URL = "https://bridge.example.com";

for (
  const [change, before, after, publicUrl] of [
    ["AGENT_SECRET changed", OLD_SECRET, NEW_SECRET, undefined],
    ["AGENT_SECRET set for the first time", undefined, NEW_SECRET, undefined],
    ["PUBLIC_URL set for the first time", OLD_SECRET, OLD_SECRET, PUBLIC_URL],
  ] as const
) {
  Deno.test(`${change}: the pictures already in a history still open`, async (t) => {
    const dataDir = await Deno.makeTempDir({ prefix: "media-secret-change-" });
    const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
    const envOf = (secret: string | undefined, base?: string) => ({
      DATA_DIR: dataDir,
      STORE: "sqlite",
      WECHAT_APPID: APPID,
      WECHAT_SECRET: SECRET,
      WECHAT_API_BASE: fake.url,
      ...(secret === undefined ? {} : { AGENT_SECRET: secret }),
      ...(base === undefined ? {} : { PUBLIC_URL: base }),
    });
    try {
      let oldUrl = "";
      await t.step("a follower's picture reaches the agent and opens", async () => {
        const server = await startBridge({ env: envOf(before) });
        const auth = await agentAuth(before);
        const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A${auth.query}`);
        try {
          fake.addMedia("img-secret", PNG, "image/png", "photo.png");
          const res = await post(
            `${server.base}${B}/send_xml`,
            `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><FromUserName><![CDATA[oPic]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[image]]></MsgType><MediaId><![CDATA[img-secret]]></MediaId><MsgId>8300001</MsgId></xml>`,
          );
          assert.equal(res.text, "success");
          const got: Received = await agent.waitFor((e) => e.data["id"] === "8300001", 10_000);
          oldUrl = got.data.msg!["media_path"] as string;
          const served = await fetch(oldUrl);
          assert.equal(served.status, 200, oldUrl);
          assert.deepEqual(new Uint8Array(await served.arrayBuffer()), PNG);
        } finally {
          await agent.close();
          await server.close();
        }
      });

      await t.step(
        "after a restart with the new setting, history gives a URL that opens",
        async () => {
          const server = await startBridge({ env: envOf(after, publicUrl) });
          const auth = await agentAuth(after);
          try {
            const res = await fetch(`${server.base}${B}/history?userid=A&contact_id=oPic`, {
              headers: auth.headers,
            });
            const body = await res.json();
            assert.equal(res.status, 200, JSON.stringify(body));
            const item = body.messages.find((m: Received["data"]) => m.id === "8300001");
            const url = new URL(item.msg.media_path as string);
            assert.equal(url.pathname, new URL(oldUrl).pathname);
            assert.equal(url.origin, publicUrl ?? new URL(oldUrl).origin);
            // Each start listens on a port of its own: the file is asked of this one.
            const served = await fetch(new URL(url.pathname + url.search, server.base));
            const bytes = new Uint8Array(await served.arrayBuffer());
            assert.equal(served.status, 200, new TextDecoder().decode(bytes));
            assert.deepEqual(bytes, PNG);
          } finally {
            await server.close();
          }
        },
      );
    } finally {
      await fake.close();
      await Deno.remove(dataDir, { recursive: true });
    }
  });
}
