// An agent's file for a reply (issue #4, "the agent uploads a file"): POST B/upload, then a
// reply with the media_id, against the fake WeChat and in demo mode.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { amrFrames, amrOf, skipWithoutFfmpeg, VOICE_AMR } from "../media/_media_tools.ts";

const B = "/im_component/wx_official_account";
// The smallest valid PNG: one transparent pixel.
const PNG = Uint8Array.from(
  atob(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  ),
  (c) => c.charCodeAt(0),
);

const upload = (base: string, query: string, body: Uint8Array, type: string) =>
  fetch(`${base}${B}/upload?${query}`, {
    method: "POST",
    body: body as Uint8Array<ArrayBuffer>,
    headers: { "content-type": type },
  });

Deno.test("POST upload gives an agent's file a WeChat media_id for its reply", async (t) => {
  const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
  const server = await startBridge({
    env: { WECHAT_APPID: "wxtest", WECHAT_SECRET: "secret", WECHAT_API_BASE: fake.url },
  });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=up`);
  try {
    await post(`${server.base}${B}/send_xml`, textXml("oUp", "gh_account", "hi", "8100001"));
    await agent.waitFor((e) => e.data["id"] === "8100001");

    let mediaId = "";
    await t.step("the file goes to media/upload and its media_id comes back", async () => {
      const res = await upload(server.base, "userid=up&filename=receipt.png", PNG, "image/png");
      const body = await res.json();
      assert.equal(res.status, 201, JSON.stringify(body));
      assert.equal(body.type, "image");
      const call = fake.calls.find((c) => c.path.endsWith("cgi-bin/media/upload"));
      assert.ok(call, "media/upload was not called");
      mediaId = body.media_id;
      assert.ok(mediaId.length > 0);
      const copy = await fetch(body.media_url);
      assert.deepEqual(new Uint8Array(await copy.arrayBuffer()), PNG);
    });
    await t.step("a reply with that media_id reaches WeChat as an image", async () => {
      agent.send({
        data: {
          msg_type: "image",
          contact_id: "oUp",
          client_id: "img-1",
          msg: { media_id: mediaId },
        },
        result: { code: 1002, message: "common" },
      });
      await agent.waitFor((e) => e.result.code === 102 && e.data.msg?.["client_id"] === "img-1");
      const sent = fake.sent.at(-1) as { msgtype: string; image: { media_id: string } };
      assert.equal(sent.msgtype, "image");
      assert.equal(sent.image.media_id, mediaId);
    });
    await t.step("a type WeChat does not take is 415, an oversized voice 413", async () => {
      const text = await upload(
        server.base,
        "userid=up",
        new TextEncoder().encode("hi"),
        "text/plain",
      );
      assert.equal(text.status, 415);
      await text.body?.cancel();
      const big = await upload(
        server.base,
        "userid=up",
        new Uint8Array(2 * 1024 * 1024 + 1),
        "audio/amr",
      );
      assert.equal(big.status, 413);
      await big.body?.cancel();
    });
    await t.step("a text file declared as an image is 415", async () => {
      const res = await upload(
        server.base,
        "userid=up&filename=notes.png",
        new TextEncoder().encode("These are my notes\n"),
        "image/png",
      );
      assert.equal(res.status, 415);
      assert.match((await res.json()).error, /not image\/png/);
    });
    await t.step("an upload without an agent is refused", async () => {
      const res = await upload(server.base, "", PNG, "image/png");
      assert.equal(res.status, 400);
      await res.body?.cancel();
    });
  } finally {
    await agent.close();
    await server.close();
    await fake.close();
  }
});

Deno.test("POST upload in demo mode keeps the file for the simulator", async () => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=demo`);
  try {
    await post(`${server.base}${B}/send_xml`, textXml("oDemo", "gh_demo", "hi", "8100002"));
    await agent.waitFor((e) => e.data["id"] === "8100002");
    const res = await upload(server.base, "userid=demo", PNG, "image/png");
    const body = await res.json();
    assert.equal(res.status, 201);
    assert.match(body.media_id, /^demo_/);
    agent.send({
      data: {
        msg_type: "image",
        contact_id: "oDemo",
        client_id: "d-1",
        msg: { media_id: body.media_id, media_url: body.media_url },
      },
      result: { code: 1002, message: "common" },
    });
    await agent.waitFor((e) => e.result.code === 102 && e.data.msg?.["client_id"] === "d-1");
    const replies = await (await fetch(`${server.base}${B}/demo/replies?contact_id=oDemo&since=0`))
      .json();
    assert.equal(replies.replies.at(-1).msg_type, "image");
    assert.equal(replies.replies.at(-1).msg.media_url, body.media_url);
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test({
  name: "POST upload measures a voice: over WeChat's 60 s is 415 before WeChat sees it",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const frames = amrFrames(await Deno.readFile(VOICE_AMR));
    const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
    const server = await startBridge({
      env: { WECHAT_APPID: "wxtest", WECHAT_SECRET: "secret", WECHAT_API_BASE: fake.url },
    });
    const uploads = () => fake.calls.filter((c) => c.path.endsWith("cgi-bin/media/upload"));
    try {
      await t.step("a real 58 s voice goes to WeChat", async () => {
        const res = await upload(server.base, "userid=up", amrOf(frames, 2900), "audio/amr");
        const body = await res.json();
        assert.equal(res.status, 201, JSON.stringify(body));
        assert.equal(body.type, "voice");
        assert.equal(uploads().length, 1);
      });
      await t.step("a real 2-minute voice is refused, with its length", async () => {
        const res = await upload(server.base, "userid=up", amrOf(frames, 6000), "audio/amr");
        assert.equal(res.status, 415);
        assert.match((await res.json()).error, /voice of at most 60 s; the file lasts 6\d\.\d s/);
        assert.equal(uploads().length, 1);
      });
      await t.step(
        "an AMR with no frame to play is refused, and WeChat never sees it",
        async () => {
          const magic = new TextEncoder().encode("#!AMR\n");
          const cut = amrOf(frames, 1).subarray(0, 20);
          const garbage = new TextEncoder().encode("#!AMR\nthis is not a voice, only text");
          for (
            const [file, reason] of [
              [magic, /no complete frame/],
              [cut, /no complete frame/],
              [garbage, /is not a frame header/],
            ] as const
          ) {
            const res = await upload(server.base, "userid=up", file, "audio/amr");
            assert.equal(res.status, 415);
            const { error } = await res.json();
            assert.match(
              error,
              /^Cannot upload: the file is not a playable voice: Cannot parse AMR/,
            );
            assert.match(error, reason);
          }
          assert.equal(uploads().length, 1);
        },
      );
      await t.step("2 MB of one-byte frames (11 hours by their count) is refused", async () => {
        const noData = new Uint8Array(2 * 1024 * 1024).fill(0x7c);
        noData.set(new TextEncoder().encode("#!AMR\n"));
        const res = await upload(server.base, "userid=up", noData, "audio/amr");
        assert.equal(res.status, 415);
        assert.match((await res.json()).error, /at most 60 s/);
        assert.equal(uploads().length, 1);
      });
    } finally {
      await server.close();
      await fake.close();
    }
  },
});
