// parseMp3() against files ffmpeg's encoders made from the real voice recording (LAME MP3 at
// WeChat's 8 kHz and at 44.1 kHz, AAC in ADTS, MPEG layer II), and the tag-only and tag-and-noise
// files an editor or a broken export leaves.

import assert from "node:assert/strict";
import { parseMp3 } from "../../src/media/mp3.ts";
import { ffmpeg, noiseAmr, skipWithoutFfmpeg, VOICE_AMR, voiceMp3 } from "./_media_tools.ts";

const ascii = (text: string) => new TextEncoder().encode(text);
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
};
/** An ID3v2.4 tag of `size` bytes of frames (zeros: padding, as the format allows). */
const id3 = (size: number, flags = 0) =>
  concat(
    Uint8Array.of(0x49, 0x44, 0x33, 4, 0, flags),
    Uint8Array.of((size >> 21) & 0x7f, (size >> 14) & 0x7f, (size >> 7) & 0x7f, size & 0x7f),
    new Uint8Array(size + ((flags & 0x10) !== 0 ? 10 : 0)),
  );

/** The real voice, encoded by ffmpeg with `args` into a file named `name`. */
async function encoded(dir: string, name: string, ...args: string[]): Promise<Uint8Array> {
  await ffmpeg("-i", VOICE_AMR, ...args, "-y", `${dir}/${name}`);
  return await Deno.readFile(`${dir}/${name}`);
}

Deno.test({
  name: "parseMp3() finds an MP3's audio and refuses a file with none to play",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "mp3-" });
    try {
      const lame8k = await voiceMp3(dir);
      const lame44k = await encoded(dir, "44k.mp3", "-ar", "44100", "-c:a", "libmp3lame");
      const aac = await encoded(dir, "voice.aac", "-c:a", "aac", "-f", "adts");
      const mp2 = await encoded(dir, "voice.mp2", "-ar", "16000", "-c:a", "mp2");
      // ffmpeg writes an ID3v2 tag (its encoder's name) before the frames.
      const tagSize = 10 + [6, 7, 8, 9].reduce((n, i) => n * 128 + lame8k[i]!, 0);
      const tag = lame8k.subarray(0, tagSize);
      const frames = lame8k.subarray(tagSize);

      await t.step(
        "LAME's MP3s, MPEG 2.5 at 8 kHz and MPEG 1 at 44.1 kHz: audio after the tag",
        () => {
          assert.deepEqual(parseMp3(lame8k), { audioStart: tagSize });
          assert.ok(parseMp3(lame44k).audioStart > 0);
          assert.deepEqual(parseMp3(frames), { audioStart: 0 });
        },
      );
      await t.step("two tags, a tag with a footer, or noise before the frames: skipped", () => {
        assert.equal(parseMp3(concat(id3(100), tag, frames)).audioStart, 110 + tagSize);
        assert.equal(parseMp3(concat(id3(20, 0x10), frames)).audioStart, 40);
        const junk = concat(tag, ascii("junk an editor left".repeat(10)), frames);
        assert.equal(parseMp3(junk).audioStart, tagSize + 190);
      });
      await t.step("only an ID3 tag: SyntaxError", () => {
        assert.throws(() => parseMp3(tag), SyntaxError);
        assert.throws(() => parseMp3(id3(4096)), /an ID3 tag and no audio after it/);
      });
      await t.step("an ID3 tag and text or noise: SyntaxError", () => {
        assert.throws(
          () => parseMp3(concat(tag, ascii("this is not audio, only text\n".repeat(100)))),
          new RegExp(`no two MPEG layer III frames in a row after byte ${tagSize} \\(the end of`),
        );
        assert.throws(() => parseMp3(concat(tag, noiseAmr(64 * 1024))), SyntaxError);
      });
      await t.step(
        "ffmpeg's MP3 of no sound (its tag and LAME's Info frame alone): SyntaxError",
        async () => {
          await ffmpeg(
            ...["-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "0", "-c:a", "libmp3lame"],
            ...["-y", `${dir}/empty.mp3`],
          );
          const empty = await Deno.readFile(`${dir}/empty.mp3`);
          assert.ok(empty.length < 300, `${empty.length} bytes`);
          assert.throws(
            () => parseMp3(empty),
            /no two MPEG layer III frames in a row after byte 45/,
          );
        },
      );
      await t.step("one frame and part of the next: SyntaxError", () => {
        // At 8 kHz (MPEG 2.5) LAME's first frame, its Info frame, is 216 bytes (24 kb/s), the
        // next 144 (16 kb/s).
        assert.throws(() => parseMp3(concat(tag, frames.subarray(0, 359))), SyntaxError);
        assert.equal(parseMp3(concat(tag, frames.subarray(0, 360))).audioStart, tagSize);
      });
      await t.step("what only looks like MP3 by its first byte: ADTS AAC, MPEG layer II", () => {
        assert.equal(aac[0], 0xff);
        assert.throws(() => parseMp3(aac), /no two MPEG layer III frames/);
        assert.equal(mp2[0], 0xff);
        assert.throws(() => parseMp3(mp2), /no two MPEG layer III frames/);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
