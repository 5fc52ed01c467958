// Every reply type an agent can send, compared with what another library sends for the same
// message: node-webot's wechat-api calls the fake WeChat API, the bridge calls it too, and the
// two request bodies must be equal. Types wechat-api predates (msgmenu, mpnewsarticle, wxcard
// without card_ext) are compared with the JSON printed in WeChat's 客服消息 documentation.

import assert from "node:assert/strict";
import WechatAPI from "wechat-api";
import { type FakeUpload, startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { ffmpeg, makeFixtures, skipWithoutFfmpeg } from "../media/_media_tools.ts";

const B = "/im_component/wx_official_account";
const APPID = "wxreplytypes";
const SECRET = "secret";
const KF = "kf2001@gh_account";

let n = 8_300_000;

/** Calls a wechat-api method (node callback style) and waits for its answer. */
function viaWechatApi(api: WechatAPI, method: string, ...args: unknown[]): Promise<unknown> {
  return new Promise((resolve, reject) =>
    api[method](
      ...args,
      (error: unknown, result: unknown) => error ? reject(error) : resolve(result),
    )
  );
}

Deno.test({
  name: "reply bodies equal what wechat-api (and WeChat's docs) send for the same message",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const fake = await startFakeWechat({ appId: APPID, secret: SECRET });
    const dir = await Deno.makeTempDir({ prefix: "reply-types-" });
    const { mp4 } = await makeFixtures(dir);
    // A portrait video whose first frame is noise: at the usual quality its cover is 76 KB.
    await ffmpeg(
      ...["-f", "lavfi", "-i", "life=size=1080x1920:mold=10:ratio=0.5:seed=1:rate=5", "-t", "0.4"],
      ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", `${dir}/noisy.mp4`],
    );
    const videos: Record<string, Uint8Array> = {
      "/files/clip": mp4,
      "/files/noisy": await Deno.readFile(`${dir}/noisy.mp4`),
    };
    const files = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      const video = videos[new URL(req.url).pathname];
      return video
        ? new Response(new Uint8Array(video), { headers: { "content-type": "video/mp4" } })
        : new Response("not found", { status: 404 });
    });
    const server = await startBridge({
      env: {
        WECHAT_APPID: APPID,
        WECHAT_SECRET: SECRET,
        WECHAT_API_BASE: fake.url,
        AGENT_KF_ACCOUNTS: `K=${KF}`,
        // The test's own file server, on loopback like an intranet one.
        MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}`,
      },
    });
    const agentA = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
    const agentK = await connectAgent(`${server.wsBase}${B}/msg?userid=K`);
    const api = new WechatAPI(APPID, SECRET);
    api.endpoint = fake.url;

    /** The follower writes to `agent` (binding it there), so the next replies are allowed. */
    async function write(follower: string, agent: string, content = "hi") {
      const id = String(++n);
      const res = await post(`${server.base}${B}/send_xml`, textXml(follower, agent, content, id));
      assert.equal(res.text, "success");
      await (agent === "K" ? agentK : agentA).waitFor((e) => e.data["id"] === id);
    }
    /** The bridge's body for an agent's reply. */
    async function bridgeSends(agent: string, follower: string, msgType: string, msg: unknown) {
      const before = fake.sent.length;
      const body = { data: { msg_type: msgType, contact_id: follower, msg } };
      const res = await post(`${server.base}${B}/send?userid=${agent}`, JSON.stringify(body), {
        "content-type": "application/json",
      });
      assert.equal(res.status, 200, res.text);
      assert.equal(fake.sent.length, before + 1);
      return fake.sent.at(-1)!;
    }
    async function libSends(method: string, ...args: unknown[]) {
      const before = fake.sent.length;
      await viaWechatApi(api, method, ...args);
      assert.equal(fake.sent.length, before + 1);
      return fake.sent.at(-1)!;
    }

    try {
      await write("oA", "A");
      await write("oK", "K");

      await t.step("music", async () => {
        const music = {
          title: "小夜曲",
          description: "舒伯特",
          musicurl: "http://music.example.com/a.mp3",
          hqmusicurl: "http://music.example.com/a-hq.mp3",
          thumb_media_id: "THUMB_1",
        };
        assert.deepEqual(
          await bridgeSends("A", "oA", "music", music),
          await libSends("sendMusic", "oA", music),
        );
      });
      await t.step("mpnews", async () => {
        assert.deepEqual(
          await bridgeSends("A", "oA", "mpnews", { media_id: "MPNEWS_1" }),
          await libSends("sendMpNews", "oA", "MPNEWS_1"),
        );
      });
      // Media on WeChat, uploaded by wechat-api: the fake checks every media_id it is sent.
      const uploaded = async (file: string, type: string) => {
        const answer = await viaWechatApi(api, "uploadMedia", `${dir}/${file}`, type) as Record<
          string,
          string
        >;
        return answer["media_id"] ?? answer["thumb_media_id"]!;
      };
      const videoId = await uploaded("video.mp4", "video");
      const thumbId = await uploaded("image.jpg", "thumb");
      const imageId = await uploaded("image.jpg", "image");
      await t.step("video with its thumb", async () => {
        await write("oA", "A");
        assert.deepEqual(
          await bridgeSends("A", "oA", "video", { media_id: videoId, thumb_media_id: thumbId }),
          await libSends("sendVideo", "oA", videoId, thumbId),
        );
      });
      await t.step("news", async () => {
        const article = {
          title: "Happy Day",
          description: "Is Really A Happy Day",
          url: "https://example.com/happy",
          picurl: "https://example.com/happy.jpg",
        };
        assert.deepEqual(
          await bridgeSends("A", "oA", "news", article),
          await libSends("sendNews", "oA", [article]),
        );
      });
      await t.step("an agent mapped to a kf account: customservice.kf_account", async () => {
        await write("oK", "K");
        assert.deepEqual(
          await bridgeSends("K", "oK", "text", { content: "您好，我是客服小王" }),
          await libSends("sendTextFromCs", "oK", KF, "您好，我是客服小王"),
        );
        assert.deepEqual(
          await bridgeSends("K", "oK", "image", { media_id: imageId }),
          await libSends("sendImageFromCs", "oK", KF, imageId),
        );
      });

      // The JSON of WeChat's 客服消息 page (发送菜单消息, 发送图文消息（点击跳转到图文消息页面）
      // 使用通过 "发布" 系列接口得到的 article_id, 发送卡券).
      await t.step("msgmenu, as WeChat's documentation prints it", async () => {
        await write("oA", "A");
        const msgmenu = {
          head_content: "您对本次服务是否满意呢? ",
          list: [{ id: "101", content: "满意" }, { id: "102", content: "不满意" }],
          tail_content: "欢迎再次光临",
        };
        assert.deepEqual(await bridgeSends("A", "oA", "msgmenu", msgmenu), {
          touser: "oA",
          msgtype: "msgmenu",
          msgmenu,
        });
      });
      await t.step("the follower's tap comes back with bizmsgmenuid", async () => {
        const id = String(++n);
        const tap = textXml("oA", "gh_account", "满意", id).replace(
          "</xml>",
          "<bizmsgmenuid>101</bizmsgmenuid></xml>",
        );
        assert.equal((await post(`${server.base}${B}/send_xml`, tap)).text, "success");
        const e = await agentA.waitFor((e) => e.data["id"] === id);
        assert.equal(e.data.msg?.["bizmsgmenuid"], "101");
        assert.equal(e.data.msg?.["content"], "满意");
      });
      await t.step("mpnewsarticle and wxcard, as WeChat's documentation prints them", async () => {
        assert.deepEqual(await bridgeSends("A", "oA", "mpnewsarticle", { article_id: "ART_1" }), {
          touser: "oA",
          msgtype: "mpnewsarticle",
          mpnewsarticle: { article_id: "ART_1" },
        });
        assert.deepEqual(
          await bridgeSends("A", "oA", "wxcard", { card_id: "123dsdajkasd231jhksad" }),
          {
            touser: "oA",
            msgtype: "wxcard",
            wxcard: { card_id: "123dsdajkasd231jhksad" },
          },
        );
      });
      await t.step("a video reply without a thumb gets one, made from the video", async () => {
        await write("oA", "A");
        const before = fake.calls.length;
        const url = `http://127.0.0.1:${files.addr.port}/files/clip`;
        const sent = await bridgeSends("A", "oA", "video", { media_url: url, title: "片段" });
        const uploads = fake.calls.slice(before).filter((c) => c.path === "cgi-bin/media/upload");
        const thumb = uploads.find((c) => c.query["type"] === "thumb");
        assert.ok(thumb, `a thumb upload among ${uploads.map((c) => c.query["type"])}`);
        const jpeg = (thumb.body as FakeUpload).media!.bytes;
        assert.deepEqual([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff], "a JPEG");
        assert.ok(jpeg.byteLength <= 64 * 1024);
        const video = sent["video"] as Record<string, unknown>;
        assert.match(String(video["media_id"]), /^fake-video-/);
        assert.match(String(video["thumb_media_id"]), /^fake-thumb-/);
        assert.equal(video["title"], "片段");
      });
      await t.step("a noisy portrait video's cover is made to fit WeChat's 64 KB", async () => {
        await write("oA", "A");
        const before = fake.calls.length;
        const url = `http://127.0.0.1:${files.addr.port}/files/noisy`;
        const sent = await bridgeSends("A", "oA", "video", { media_url: url });
        const thumb = fake.calls.slice(before).find((c) =>
          c.path === "cgi-bin/media/upload" && c.query["type"] === "thumb"
        );
        assert.ok(thumb, "no thumb upload: the video went without a cover");
        assert.ok((thumb.body as FakeUpload).media!.bytes.byteLength <= 64 * 1024);
        assert.match(
          String((sent["video"] as Record<string, unknown>)["thumb_media_id"]),
          /^fake-thumb-/,
        );
      });
      await t.step("a malformed msgmenu is refused before anything is sent", async () => {
        const before = fake.sent.length;
        const body = { data: { msg_type: "msgmenu", contact_id: "oA", msg: { list: [] } } };
        const res = await post(`${server.base}${B}/send?userid=A`, JSON.stringify(body), {
          "content-type": "application/json",
        });
        assert.equal(res.status, 400, res.text);
        assert.match(res.text, /msg\.list/);
        assert.equal(fake.sent.length, before);
      });
    } finally {
      await agentA.close();
      await agentK.close();
      await server.close();
      await files.shutdown();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
