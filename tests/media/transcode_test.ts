import assert from "node:assert/strict";
import {
  probeDuration,
  sniffDemuxer,
  transcodeVoice,
  videoThumbnail,
  VOICE_CAP_SECONDS,
} from "../../src/media/transcode.ts";
import { createToolLimiter } from "../../src/media/tool_limiter.ts";
import {
  amrDurationSeconds,
  amrFrames,
  amrOf,
  ffmpeg,
  ffprobe,
  makeFixtures,
  noiseAmr,
  skipWithoutFfmpeg,
  VOICE_AMR,
} from "./_media_tools.ts";

const ascii = (text: string) => new TextEncoder().encode(text);
const limiter = createToolLimiter();

Deno.test("sniffDemuxer() names the demuxer from magic numbers", () => {
  assert.equal(sniffDemuxer(ascii("#!AMR\n\x3c")), "amr");
  assert.equal(sniffDemuxer(ascii("#!AMR-WB\n")), "amr");
  assert.equal(sniffDemuxer(ascii("OggS\0\x02")), "ogg");
  assert.equal(sniffDemuxer(ascii("ID3\x04")), "mp3");
  assert.equal(sniffDemuxer(new Uint8Array([0xff, 0xfb, 0x90, 0x00])), "mp3");
  assert.equal(sniffDemuxer(ascii("RIFF\0\0\0\0WAVEfmt ")), "wav");
  assert.equal(sniffDemuxer(ascii("\0\0\0\x20ftypisom")), "mov");
  // A playlist must never reach ffmpeg's auto-probing.
  assert.equal(sniffDemuxer(ascii("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\nfile:///etc/passwd\n")), null);
  assert.equal(sniffDemuxer(new Uint8Array(0)), null);
});

Deno.test({
  name: "transcodeVoice() turns WeChat AMR into MP3 of the same length",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "transcode-test-" });
    const amr = await Deno.readFile(VOICE_AMR);
    const amrSeconds = amrDurationSeconds(amr);

    await t.step("the MP3 plays for as long as the AMR (ffprobe, within 0.2 s)", async () => {
      const mp3 = await transcodeVoice(amr, { limiter, timeoutMs: 30_000 });
      await Deno.writeFile(`${dir}/voice.mp3`, mp3);
      const info = await ffprobe(`${dir}/voice.mp3`);
      assert.equal(info.codec, "mp3");
      assert.equal(info.codecType, "audio");
      // Decodes from start to end without a single error.
      await ffmpeg("-xerror", "-i", `${dir}/voice.mp3`, "-f", "null", "-");
      assert.ok(
        Math.abs(info.duration - amrSeconds) < 0.2,
        `mp3 ${info.duration} s vs amr ${amrSeconds} s`,
      );
    });

    await t.step(
      "probeDuration() measures from packets, matching the AMR frame count",
      async () => {
        assert.ok(Math.abs((await probeDuration(amr, { limiter })) - amrSeconds) < 0.05);
        assert.ok(
          Math.abs((await probeDuration(`${dir}/voice.mp3`, { limiter })) - amrSeconds) < 0.2,
        );
      },
    );

    await t.step("a short AMR cut by stream copy converts too", async () => {
      await ffmpeg("-i", VOICE_AMR, "-t", "3", "-c", "copy", "-y", `${dir}/short.amr`);
      const short = await Deno.readFile(`${dir}/short.amr`);
      const mp3 = await transcodeVoice(short, { limiter, timeoutMs: 30_000 });
      const seconds = await probeDuration(mp3, { limiter });
      assert.ok(Math.abs(seconds - amrDurationSeconds(short)) < 0.2, `${seconds} s`);
      assert.ok(seconds < 4);
    });

    await t.step("ffmpeg is killed at the time limit", async () => {
      const started = performance.now();
      await assert.rejects(
        transcodeVoice(amr, { limiter, timeoutMs: 1 }),
        /Cannot transcode voice: ffmpeg took longer than 1 ms/,
      );
      assert.ok(performance.now() - started < 5_000);
    });

    await t.step("garbage behind an AMR header fails with ffmpeg's reason", async () => {
      const garbage = new Uint8Array(4000);
      garbage.set(ascii("#!AMR\n"));
      for (let i = 6; i < garbage.length; i++) garbage[i] = (i * 7919) & 0xff;
      await assert.rejects(
        transcodeVoice(garbage, { limiter, timeoutMs: 30_000 }),
        /^Error: Cannot transcode voice: ffmpeg (exited with code \d+|produced no audio)/,
      );
    });

    await t.step("bytes that are not audio are refused before ffmpeg runs", async () => {
      await assert.rejects(
        transcodeVoice(ascii("#EXTM3U\nhttp://169.254.169.254/\n"), {
          limiter,
          timeoutMs: 30_000,
          ffmpeg: "/nonexistent/ffmpeg",
        }),
        /Cannot transcode voice: the bytes are not AMR/,
      );
    });

    await t.step("a missing ffmpeg binary is a clear error", async () => {
      await assert.rejects(
        transcodeVoice(amr, { limiter, timeoutMs: 30_000, ffmpeg: "/nonexistent/ffmpeg" }),
        /Cannot transcode voice: \/nonexistent\/ffmpeg is not installed/,
      );
    });

    await t.step("videoThumbnail() gives a JPEG of an mp4's first frame", async () => {
      const { mp4 } = await makeFixtures(dir);
      const jpeg = await videoThumbnail(mp4, { limiter, timeoutMs: 30_000 });
      assert.deepEqual([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff]);
      await Deno.writeFile(`${dir}/thumb.jpg`, jpeg);
      assert.equal((await ffprobe(`${dir}/thumb.jpg`)).codec, "mjpeg");
      await assert.rejects(videoThumbnail(amr, { limiter, timeoutMs: 30_000 }), /not MP4/);
    });

    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "transcodeVoice() converts what a real voice can be and stops a hostile one at the cap",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const amr = await Deno.readFile(VOICE_AMR);
    const frames = amrFrames(amr);
    const overCap = new RegExp(
      `Cannot transcode voice: it lasts longer than ${VOICE_CAP_SECONDS} s`,
    );

    await t.step("a real voice with one bad frame converts whole", async () => {
      const damaged = amr.slice();
      // Frame 400's header says "bad frame" (Q bit clear) and its speech bits are noise: the
      // decoder conceals it, as it would a frame lost on the way.
      const offset = 6 + frames.slice(0, 400).reduce((n, f) => n + f.length, 0);
      damaged[offset] = damaged[offset]! & ~0x04;
      for (let i = 1; i < frames[400]!.length; i++) damaged[offset + i] = (i * 151) & 0xff;
      const mp3 = await transcodeVoice(damaged, { limiter, timeoutMs: 30_000 });
      const seconds = await probeDuration(mp3, { limiter });
      assert.ok(Math.abs(seconds - amrDurationSeconds(amr)) < 0.2, `${seconds} s`);
    });

    await t.step("a voice a margin over WeChat's 60 s (70 s) still converts whole", async () => {
      const long = amrOf(frames, 3500);
      const mp3 = await transcodeVoice(long, { limiter, timeoutMs: 30_000 });
      const seconds = await probeDuration(mp3, { limiter });
      assert.ok(Math.abs(seconds - 70) < 0.2, `${seconds} s`);
    });

    // 20 ms frames: 3745 are 74.9 s, 3750 the cap itself, 3775 are 75.5 s.
    for (const probe of ["ffprobe", "/nonexistent/ffprobe"]) {
      const how = probe === "ffprobe" ? "measured first" : "by ffmpeg's caps alone";
      const options = { limiter, timeoutMs: 30_000, ffprobe: probe };
      for (const count of [3745, 3750]) {
        await t.step(`${count / 50} s of speech converts whole (${how})`, async () => {
          const mp3 = await transcodeVoice(amrOf(frames, count), options);
          const seconds = await probeDuration(mp3, { limiter });
          assert.ok(Math.abs(seconds - count / 50) < 0.2, `${seconds} s`);
        });
      }
      await t.step(`75.5 s of speech is over the cap (${how})`, async () => {
        await assert.rejects(transcodeVoice(amrOf(frames, 3775), options), overCap);
      });
    }

    // A second of speech, a second of pause, a second of speech: the pause as a phone with DTX
    // sends it (NO_DATA, SID, or a SID update every 8 frames), or as 4.75 kb/s silence.
    const speech = frames.slice(100, 150);
    const noData = Uint8Array.of(0x7c);
    const sid = Uint8Array.of(0x44, 0x12, 0x34, 0x56, 0x78, 0x10);
    const pauses: Record<string, Uint8Array[]> = {
      "NO_DATA": Array(50).fill(noData),
      "SID": Array(50).fill(sid),
      "DTX": Array.from({ length: 50 }, (_, i) => i % 8 === 0 ? sid : noData),
    };
    for (const [name, pause] of Object.entries(pauses)) {
      await t.step(`a voice's ${name} pause keeps its second, silent`, async () => {
        const voice = amrOf([...speech, ...pause, ...speech], 150);
        const mp3 = await transcodeVoice(voice, { limiter, timeoutMs: 30_000 });
        const seconds = await probeDuration(mp3, { limiter });
        assert.ok(Math.abs(seconds - 3) < 0.1, `${seconds} s`);
        const pcm = await decodePcm(mp3);
        const loud = rms(pcm, 0.2, 0.8);
        const quiet = rms(pcm, 1.3, 1.9);
        assert.ok(loud > 500, `speech at ${loud}`);
        assert.ok(quiet < loud / 100, `the pause at ${quiet}, speech at ${loud}`);
        assert.ok(rms(pcm, 2.2, 2.8) > 500, "the speech after the pause");
      });
    }

    await t.step("real speech past the cap (80 s) is an error, not an MP3", async () => {
      await assert.rejects(
        transcodeVoice(amrOf(frames, 4000), { limiter, timeoutMs: 30_000 }),
        overCap,
      );
    });

    await t.step("20 MB of noise behind an AMR header stops at the cap", async () => {
      // Unbounded, this made a 110 MB MP3 in 3 minutes; here the 30 s deadline would say so.
      await assert.rejects(
        transcodeVoice(noiseAmr(20 * 1024 * 1024), { limiter, timeoutMs: 30_000 }),
        overCap,
      );
    });

    await t.step("without ffprobe to measure it first, ffmpeg's own caps stop it", async () => {
      await assert.rejects(
        transcodeVoice(noiseAmr(2 * 1024 * 1024), {
          limiter,
          timeoutMs: 30_000,
          ffprobe: "/nonexistent/ffprobe",
        }),
        overCap,
      );
    });
  },
});

/** An MP3 decoded to 8 kHz mono 16-bit samples. */
async function decodePcm(mp3: Uint8Array): Promise<Int16Array> {
  const child = new Deno.Command("ffmpeg", {
    args: [
      "-v",
      "error",
      "-f",
      "mp3",
      "-i",
      "pipe:0",
      "-ac",
      "1",
      "-ar",
      "8000",
      "-f",
      "s16le",
      "-",
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(mp3);
  await writer.close();
  const { stdout } = await child.output();
  return new Int16Array(stdout.buffer, stdout.byteOffset, stdout.length >> 1);
}

/** The root mean square of 8 kHz samples from `from` to `to` seconds. */
function rms(pcm: Int16Array, from: number, to: number): number {
  const part = pcm.subarray(from * 8000, to * 8000);
  return Math.sqrt(part.reduce((sum, v) => sum + v * v, 0) / part.length);
}

/** Width and height of a picture or a video's first stream, by ffprobe. */
async function dimensions(path: string): Promise<[number, number]> {
  const out = await new Deno.Command("ffprobe", {
    args: ["-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", path],
    stdout: "piped",
  }).output();
  const [w, h] = new TextDecoder().decode(out.stdout).trim().split(",").map(Number);
  return [w!, h!];
}

Deno.test({
  name: "videoThumbnail() fits any video's first frame in 320x640 and, asked, in a byte size",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "thumb-test-" });
    const video = async (name: string, source: string) => {
      await ffmpeg(
        ...["-f", "lavfi", "-i", source, "-t", "0.4"],
        ...[
          "-c:v",
          "libx264",
          "-preset",
          "ultrafast",
          "-pix_fmt",
          "yuv420p",
          "-y",
          `${dir}/${name}`,
        ],
      );
      return await Deno.readFile(`${dir}/${name}`);
    };
    const thumbOf = async (mp4: Uint8Array, maxBytes?: number) => {
      const jpeg = await videoThumbnail(mp4, {
        limiter,
        timeoutMs: 30_000,
        ...(maxBytes ? { maxBytes } : {}),
      });
      await Deno.writeFile(`${dir}/thumb.jpg`, jpeg);
      return { jpeg, size: await dimensions(`${dir}/thumb.jpg`) };
    };
    try {
      /** 1080x1920 scaled to 320 wide is 568.9 high: 568 or 569, as the scaler rounds. */
      const portrait = ([w, h]: [number, number]) =>
        assert.ok(w === 320 && Math.abs(h - 568.9) < 1, `${w}x${h}`);
      await t.step("a phone's portrait video keeps its shape: 320x569", async () => {
        const { size } = await thumbOf(
          await video("portrait.mp4", "testsrc2=size=1080x1920:rate=5"),
        );
        portrait(size);
      });
      await t.step("a 320x8192 video is cut down to the box, not 320x8192", async () => {
        const { size } = await thumbOf(await video("tall.mp4", "testsrc2=size=320x8192:rate=5"));
        assert.ok(size[0] <= 320 && size[1] <= 640, `${size}`);
      });
      await t.step("a noisy frame over WeChat's 64 KB at first is made to fit it", async () => {
        const noisy = await video(
          "noisy.mp4",
          "life=size=1080x1920:mold=10:ratio=0.5:seed=1:rate=5",
        );
        const first = await thumbOf(noisy);
        assert.ok(first.jpeg.length > 64 * 1024, `the test's frame is ${first.jpeg.length} bytes`);
        const fitted = await thumbOf(noisy, 64 * 1024);
        assert.ok(fitted.jpeg.length <= 64 * 1024, `${fitted.jpeg.length} bytes`);
        portrait(fitted.size);
        assert.deepEqual([...fitted.jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff]);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
