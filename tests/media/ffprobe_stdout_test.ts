// An agent's voice of 2 MB of one-byte AMR frames is 2 million packets: ffprobe writes 45 MB of
// lines for its duration. probeDuration reads them as they come, so a process probing it does
// not grow by them (VmHWM, read by the process itself, which runs this file as its main).

import assert from "node:assert/strict";
import { probeDuration } from "../../src/media/transcode.ts";
import { createToolLimiter } from "../../src/media/tool_limiter.ts";
import { peakRss, reportToParent, runAsChild, skipWithoutFfmpeg } from "./_media_tools.ts";

const MB = 1024 * 1024;
/** Holding the output whole grew the process by 250 MB; read as it comes, by about 24 MB. */
const MAX_GROWTH = 80 * MB;

/** `#!AMR\n` and then `frames` one-byte NO_DATA frames (frame type 15), 20 ms each. */
function noDataAmr(frames: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(6 + frames).fill(0x7c);
  bytes.set(new TextEncoder().encode("#!AMR\n"));
  return bytes;
}

if (import.meta.main) {
  // The child: a fresh process, so the peak is this probe's alone.
  const voice = noDataAmr(2 * MB);
  await probeDuration(noDataAmr(10), { limiter: createToolLimiter() }).catch(() => {});
  const before = peakRss();
  const seconds = await probeDuration(voice, { timeoutMs: 60_000, limiter: createToolLimiter() });
  reportToParent({ seconds, growth: peakRss() - before });
}

Deno.test({
  name: "probeDuration of a voice with 2 million packets does not hold ffprobe's output",
  ignore: skipWithoutFfmpeg || Deno.build.os !== "linux",
  async fn() {
    const { seconds, growth } = await runAsChild<{
      seconds: number;
      growth: number;
    }>(import.meta.url);
    // Every packet was read: 2,097,152 frames of 20 ms.
    assert.ok(Math.abs(seconds - 2 * MB * 0.02) < 1, `${seconds} s`);
    assert.ok(growth < MAX_GROWTH, `peak RSS grew by ${(growth / MB).toFixed(1)} MB`);
  },
});
