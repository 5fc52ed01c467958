// Issue 14.13 (media part): media URLs handed to agents expire (MEDIA_URL_TTL_S), an agent renews
// one with GET B/media_url, and history hands out fresh ones. A real bridge with a fake clock.

import assert from "node:assert/strict";
import { mintAgentToken } from "../../src/agents/auth.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SECRET = "lifetime-test-agent-secret-0123456789abcdef";
const HOUR = 3600_000;
const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);

async function status(url: string, headers: HeadersInit = {}): Promise<number> {
  const res = await fetch(url, { headers });
  await res.body?.cancel();
  return res.status;
}

Deno.test("media URLs expire, and agents renew them", async (t) => {
  let offset = 0;
  const now = () => Date.now() + offset;
  const server = await startBridge({
    env: { AGENT_SECRET: SECRET, MEDIA_URL_TTL_S: String(2 * 3600) },
    now,
  });
  const token = await mintAgentToken(SECRET, "A", 3600 * 100);
  const auth = { authorization: `Bearer ${token}` };
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A&token=${token}`);
  try {
    const up = await fetch(`${server.base}${B}/upload?filename=pic.png`, {
      method: "POST",
      body: PNG,
      headers: { "content-type": "image/png", ...auth },
    });
    const uploaded = await up.json();
    assert.equal(up.status, 201, JSON.stringify(uploaded));
    const first: string = uploaded.media_url;

    await t.step("a fresh URL opens the file; its expiry is MEDIA_URL_TTL_S away", async () => {
      assert.equal(await status(first), 200);
      const e = Number(new URL(first).searchParams.get("e"));
      const left = e * 1000 - now();
      assert.ok(left > 2 * HOUR - 1000 && left <= 3 * HOUR, String(left));
    });

    await t.step("past its lifetime the URL is refused, with how to renew it", async () => {
      offset += 3 * HOUR;
      const res = await fetch(first);
      assert.equal(res.status, 403);
      assert.match(await res.text(), /expired; renew it with GET .*\/media_url/);
    });

    const renew = (url: string, headers: HeadersInit = auth) =>
      fetch(`${server.base}${B}/media_url?url=${encodeURIComponent(url)}`, { headers });

    await t.step("GET media_url renews it for an authenticated agent", async () => {
      const res = await renew(first);
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.notEqual(body.media_url, first);
      assert.equal(new URL(body.media_url).pathname, new URL(first).pathname);
      assert.equal(body.expires_at, Number(new URL(body.media_url).searchParams.get("e")));
      const copy = await fetch(body.media_url);
      assert.equal(copy.status, 200);
      assert.deepEqual(new Uint8Array(await copy.arrayBuffer()), PNG);
    });

    await t.step(
      "without a token, or for a URL the bridge did not sign, it is refused",
      async () => {
        assert.equal(
          (await renew(first, {}).then(async (r) => (await r.body?.cancel(), r))).status,
          401,
        );
        const forged = first.replace(/t=[^&]+$/, `t=${"A".repeat(43)}`);
        const res = await renew(forged);
        assert.equal(res.status, 403);
        await res.body?.cancel();
        const missing = await fetch(`${server.base}${B}/media_url`, { headers: auth });
        assert.equal(missing.status, 400);
        await missing.body?.cancel();
      },
    );

    await t.step("history hands out media URLs with a fresh lifetime", async () => {
      const xml = textXml("oLife", "A", "hi", "5100001");
      assert.equal((await post(`${server.base}${B}/send_xml`, xml)).text, "success");
      await agent.waitFor((e) => e.data["id"] === "5100001");
      const sent = await post(
        `${server.base}${B}/send`,
        JSON.stringify({
          data: {
            msg_type: "image",
            contact_id: "oLife",
            client_id: "l1",
            msg: { media_url: first },
          },
          result: { code: 1002, message: "common" },
        }),
        { "content-type": "application/json", ...auth },
      );
      assert.ok(sent.status < 300, sent.text);
      offset += 5 * HOUR;
      const res = await fetch(`${server.base}${B}/history?contact_id=oLife`, { headers: auth });
      const history = await res.json();
      assert.equal(res.status, 200, JSON.stringify(history));
      const item = history.messages.find((m: { client_id?: string }) => m.client_id === "l1");
      const url: string = item.msg.media_url;
      assert.notEqual(url, first);
      assert.equal(await status(url), 200);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});
