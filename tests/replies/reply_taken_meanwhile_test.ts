// A reply with a `client_id` whose follower another agent took while its `media_url` downloaded
// (an agent coming online takes the waiting followers) is refused by the store as it is recorded.
// That refusal was answered 409, but the client_id's bookkeeping left it unhandled as well, and an
// unhandled rejection stops Deno: one reply could end the bridge for every agent. Through the real
// bridge, a file server on loopback that holds the download, and the fake WeChat.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { startHeldFileServer } from "./_reply_env.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("a reply whose follower was taken during its download is 409, and the bridge goes on", async () => {
  const files = startHeldFileServer();
  const { asked, held } = files;
  const fake = await startFakeWechat({ appId: "wxtaken", secret: "s" });
  const server = await startBridge({
    env: {
      WECHAT_APPID: "wxtaken",
      WECHAT_SECRET: "s",
      WECHAT_API_BASE: fake.url,
      MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}`,
    },
  });
  const send = (agent: string, clientId: string) =>
    fetch(`${server.base}${B}/send?userid=${agent}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        data: {
          msg_type: "image",
          contact_id: "oTaken",
          client_id: clientId,
          msg: { media_url: `http://127.0.0.1:${files.addr.port}/pic.png` },
        },
      }),
    });
  let taker: Awaited<ReturnType<typeof connectAgent>> | null = null;
  try {
    // The follower wrote while no agent was online: it waits, and any agent may answer.
    const wrote = await post(`${server.base}${B}/send_xml`, textXml("oTaken", "gh", "hi", "7701"));
    assert.equal(wrote.text, "success");
    const answer = send("A", "c1");
    await asked.promise;
    taker = await connectAgent(`${server.wsBase}${B}/msg?userid=D`);
    const deadline = Date.now() + 3000;
    while ((await server.store.getContact("oTaken"))?.agent_id !== "D") {
      assert.ok(Date.now() < deadline, "D never took the waiting follower");
      await new Promise((r) => setTimeout(r, 10));
    }
    held.resolve();
    const res = await answer;
    const body = await res.json();
    assert.equal(res.status, 409, JSON.stringify(body));
    assert.equal(body.data.served_by, "D");
    assert.equal(body.data.client_id, "c1");
    assert.deepEqual(fake.sent, [], "nothing sent");
    // The bridge goes on, and D's reply goes.
    const mine = await send("D", "c2");
    assert.equal(mine.status, 200, await mine.text());
    assert.equal(fake.sent.length, 1);
  } finally {
    held.resolve();
    await taker?.close();
    await server.close();
    await fake.close();
    await files.shutdown();
  }
});
