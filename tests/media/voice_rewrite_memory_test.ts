// A follower's voice with a pause is written for ffmpeg from its own bytes: its silent frames
// in front of the rest, not a copy of it whole (20 MB more for MEDIA_MAX_BYTES of AMR). Measured
// in a fresh process, so the peak is this conversion's alone.

import assert from "node:assert/strict";
import { transcodeVoice } from "../../src/media/transcode.ts";
import { createToolLimiter } from "../../src/media/tool_limiter.ts";
import {
  amrFrames,
  amrOf,
  peakRss,
  reportToParent,
  runAsChild,
  skipWithoutFfmpeg,
  VOICE_AMR,
} from "./_media_tools.ts";

const MB = 1024 * 1024;

if (import.meta.main) {
  const limiter = createToolLimiter();
  const frames = amrFrames(await Deno.readFile(VOICE_AMR));
  // 20 MB of speech (hours of it) whose first frame is a pause: over the cap, refused.
  const voice = amrOf([Uint8Array.of(0x7c), ...frames.slice(0, 1023)], (20 * MB) / 32);
  await transcodeVoice(amrOf(frames, 50), { limiter, timeoutMs: 30_000 });
  const before = peakRss();
  const error = await transcodeVoice(voice, { limiter, timeoutMs: 30_000 }).catch(String);
  reportToParent({ error, growth: peakRss() - before });
}

Deno.test({
  name: "a 20 MB voice with a pause is not copied whole to put silence in it",
  ignore: skipWithoutFfmpeg || Deno.build.os !== "linux",
  async fn() {
    const { error, growth } = await runAsChild<{
      error: string;
      growth: number;
    }>(import.meta.url);
    assert.match(error, /lasts longer than 75 s/);
    assert.ok(growth < 10 * MB, `peak RSS grew by ${(growth / MB).toFixed(1)} MB`);
  },
});
