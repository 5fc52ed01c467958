// An agent's socket handled its frames one at a time, whichever conversation they were for: a
// reply by media_url, whose file the bridge downloads before it answers, held every later frame
// of that socket (a text to another follower, typing, read) until the download was done, up to
// MEDIA_TIMEOUT_MS and its wait for a place among the process's downloads. Frames now wait only
// behind the same conversation's, so an agent's replies to one follower still leave in the order
// it sent them. As an agent over a real socket, a file server that holds its answer, and the
// fake WeChat.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { startHeldFileServer } from "./_reply_env.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, waitRouted } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("a media_url reply's download holds up only its own conversation on the socket", async () => {
  const files = startHeldFileServer();
  const { asked, held } = files;
  const fake = await startFakeWechat({ appId: "wxorder", secret: "s" });
  const server = await startBridge({
    env: {
      WECHAT_APPID: "wxorder",
      WECHAT_SECRET: "s",
      WECHAT_API_BASE: fake.url,
      MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}`,
    },
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=qa`);
  try {
    await waitRouted(server, "qa");
    for (const [follower, id] of [["oPic", "8860001"], ["oText", "8860002"]]) {
      const res = await post(`${server.base}${B}/send_xml`, textXml(follower!, "gh", "hi", id!));
      assert.equal(res.text, "success");
      await agent.waitFor((e) => e.data["id"] === id);
    }
    const reply = (contact: string, clientId: string, msg: Record<string, unknown>) =>
      agent.send({
        data: {
          msg_type: msg["media_url"] ? "image" : "text",
          contact_id: contact,
          client_id: clientId,
          msg,
        },
      });
    reply("oPic", "pic", { media_url: `http://127.0.0.1:${files.addr.port}/pic.png` });
    await asked.promise;
    // Behind the picture on its conversation, and on another conversation.
    reply("oPic", "after-pic", { content: "and here is the receipt" });
    reply("oText", "other", { content: "your parcel left today" });

    const sentOf = (clientId: string) =>
      agent.waitFor((e) =>
        e.data["msg"]?.["event"] === "reply_sent" && e.data["msg"]?.["client_id"] === clientId
      );
    await sentOf("other");
    held.resolve();
    await sentOf("pic");
    await sentOf("after-pic");
    const order = fake.sent.map((m) => `${m["touser"]}:${m["msgtype"]}`);
    assert.deepEqual(order, ["oText:text", "oPic:image", "oPic:text"]);
  } finally {
    held.resolve();
    await agent.close();
    await server.close();
    await fake.close();
    await files.shutdown();
  }
});
