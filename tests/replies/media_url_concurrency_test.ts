// An agent's `media_url` is read whole into memory, up to 10 MB, and held until its upload to
// WeChat is done: 20 at once took the bridge from 80 MB to 254 MB, and nothing bounded how many
// started (8 sockets of one agent allow about 160). Downloads run 6 at once for the process,
// beside followers' media jobs, which they do not hold up; one agent has at most 4 files under way, uploads and
// media_url replies together, and a fifth is 429 with Retry-After. Counted at a file server on
// loopback that holds every answer, through the real bridge and the fake WeChat.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { imageXml } from "../media/_forget_media.ts";

const B = "/im_component/wx_official_account";
const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);

Deno.test("media_url downloads are bounded for the process and per agent", async () => {
  let inFlight = 0;
  let most = 0;
  let release = () => {};
  const held = new Promise<void>((r) => release = r);
  const files = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
    most = Math.max(most, ++inFlight);
    await held;
    inFlight--;
    return new Response(PNG, { headers: { "content-type": "image/png" } });
  });
  const fake = await startFakeWechat({ appId: "wxmany", secret: "s" });
  const server = await startBridge({
    env: {
      WECHAT_APPID: "wxmany",
      WECHAT_SECRET: "s",
      WECHAT_API_BASE: fake.url,
      MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}`,
    },
  });
  const reply = (agent: string, follower: string, n: number) =>
    fetch(`${server.base}${B}/send?userid=${agent}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        data: {
          msg_type: "image",
          contact_id: follower,
          client_id: `c${n}`,
          msg: { media_url: `http://127.0.0.1:${files.addr.port}/pic-${n}.png` },
        },
      }),
    });
  try {
    // Followers who wrote while no agent was online: any agent may answer them.
    const followers = Array.from({ length: 13 }, (_, i) => `oMany${i}`);
    for (const [i, follower] of followers.entries()) {
      const res = await post(
        `${server.base}${B}/send_xml`,
        textXml(follower, "gh", "hi", `77${i}`),
      );
      assert.equal(res.text, "success");
    }
    // Three agents, four replies each: twelve files wanted at once.
    const agents = ["A", "B", "C"];
    const first = followers.slice(0, 12).map((f, i) => reply(agents[i % 3]!, f, i));
    const deadline = Date.now() + 5000;
    while (inFlight < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    // Time for any more to start, were they let.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(most, 6, "downloads at once for the process");
    // Followers' media are not held up behind them: a follower's picture is still stored.
    fake.addMedia("pic-from-follower", PNG, "image/png", "photo.png");
    const picture = await post(
      `${server.base}${B}/send_xml`,
      imageXml("oPicture", "pic-from-follower", "7799"),
    );
    assert.equal(picture.text, "success");
    const stored = Date.now() + 5000;
    for (;;) {
      // It is written once its media job is done.
      const { items } = await server.store.readHistory("oPicture", null, 10);
      const msg = items.find((m) => m.id === "7799")?.msg;
      if (typeof msg?.["media_path"] === "string") break;
      assert.ok(Date.now() < stored, `the follower's picture waits: ${JSON.stringify(items)}`);
      await new Promise((r) => setTimeout(r, 50));
    }

    const fifth = await reply("A", followers[12]!, 12);
    const refusal = await fifth.json();
    assert.equal(fifth.status, 429, JSON.stringify(refusal));
    assert.equal(fifth.headers.get("retry-after"), "1");
    assert.match(refusal.result.message, /agent A has 4 uploads and media_url replies under way/);
    assert.equal(refusal.data.client_id, "c12");

    release();
    for (const res of await Promise.all(first)) assert.equal(res.status, 200, await res.text());
    assert.equal(fake.sent.length, 12);
    assert.equal(most, 6);
    // A's places are given back once its replies are done: the same client_id goes now.
    const again = await reply("A", followers[12]!, 12);
    assert.equal(again.status, 200, await again.text());
    assert.equal(fake.sent.length, 13);
  } finally {
    release();
    await server.close();
    await fake.close();
    await files.shutdown();
  }
});
