// Issue 14.5: ffmpeg runs with a memory bound. A follower's video of under 500 KB whose frames are
// 8192x8192 made one thumbnail run peak at 542 MB; through the real bridge, that run is now
// refused by the kernel at the bound (the message still arrives, without a thumbnail), while an
// ordinary 720p video still gets one. ffmpeg's peak is read from its own /proc entry.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { MEMORY_LIMIT_BYTES } from "../../src/media/transcode.ts";
import { connectAgent, post } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { ffmpeg, skipWithoutFfmpeg } from "./_media_tools.ts";

const B = "/im_component/wx_official_account";
const MB = 1024 * 1024;

/** An ffmpeg that records its peak resident memory (VmHWM, kB) in `log`, polled every 10 ms. */
async function measuringFfmpeg(dir: string, log: string): Promise<string> {
  const path = `${dir}/ffmpeg-measured`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh
ffmpeg "$@" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sed -n 's/^VmHWM:[[:space:]]*\\([0-9]*\\) kB/\\1/p' "/proc/$pid/status" >> "${log}" 2>/dev/null
  sleep 0.01
done
wait "$pid"
`,
  );
  await Deno.chmod(path, 0o755);
  return path;
}

async function peakOf(log: string): Promise<number> {
  const text = await Deno.readTextFile(log).catch(() => "");
  return Math.max(0, ...text.split("\n").filter(Boolean).map(Number)) * 1024;
}

Deno.test({
  name: "ffmpeg runs under a memory bound (a 494 KB 8192x8192 video)",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "ffmpeg-memory-" });
    const log = `${dir}/peak.log`;
    await ffmpeg(
      ...["-f", "lavfi", "-i", "color=c=red:size=8192x8192:rate=1", "-frames:v", "3"],
      ...["-c:v", "libx264", "-preset", "ultrafast", "-crf", "51", "-y", `${dir}/huge.mp4`],
    );
    await ffmpeg(
      ...["-f", "lavfi", "-i", "testsrc=size=1280x720:rate=25", "-t", "2"],
      ...["-c:v", "libx264", "-preset", "ultrafast", "-y", `${dir}/hd.mp4`],
    );
    const huge = await Deno.readFile(`${dir}/huge.mp4`);
    const hd = await Deno.readFile(`${dir}/hd.mp4`);
    const fake = await startFakeWechat({ appId: "wxtest", secret: "s" });
    const server = await startBridge({
      env: {
        WECHAT_APPID: "wxtest",
        WECHAT_SECRET: "s",
        WECHAT_API_BASE: fake.url,
        MEDIA_ALLOWED_HOSTS: new URL(fake.url).host,
      },
      ffmpeg: await measuringFfmpeg(dir, log),
    });
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=A`);
    let n = 0;
    async function sendVideo(bytes: Uint8Array) {
      const id = `video-${++n}`;
      fake.addVideo(id, bytes);
      await Deno.writeTextFile(log, "");
      const xml =
        `<xml><ToUserName><![CDATA[A]]></ToUserName><FromUserName><![CDATA[oVid]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[video]]></MsgType><MediaId><![CDATA[${id}]]></MediaId><MsgId>${
          6_100_000 + n
        }</MsgId></xml>`;
      assert.equal((await post(`${server.base}${B}/send_xml`, xml)).text, "success");
      const got = await agent.waitFor((e) => e.data["id"] === String(6_100_000 + n), 60_000);
      return { msg: got.data.msg!, peak: await peakOf(log) };
    }
    try {
      assert.ok(huge.byteLength < 600 * 1024, `${huge.byteLength} bytes`);
      await t.step(
        "the huge-frame video: no thumbnail, ffmpeg stopped under the bound",
        async () => {
          const { msg, peak } = await sendVideo(huge);
          // deno-lint-ignore no-console
          console.log(`8192x8192 video: ffmpeg peak ${(peak / MB).toFixed(0)} MB`);
          assert.ok(String(msg["media_path"]).includes("/media/"), "the video itself is served");
          assert.equal(msg["thumb_path"], undefined);
          assert.ok(peak > 0, "ffmpeg ran");
          assert.ok(peak < MEMORY_LIMIT_BYTES + 32 * MB, `ffmpeg peaked at ${peak / MB} MB`);
        },
      );
      await t.step("an ordinary 720p video still gets its thumbnail", async () => {
        const { msg, peak } = await sendVideo(hd);
        // deno-lint-ignore no-console
        console.log(`720p video: ffmpeg peak ${(peak / MB).toFixed(0)} MB`);
        assert.ok(String(msg["thumb_path"]).includes("/media/"), JSON.stringify(msg));
      });
    } finally {
      await agent.close();
      await server.close();
      await fake.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
