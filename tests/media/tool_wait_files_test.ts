// A conversion waiting for the limiter's slot holds nothing on disk yet: the temp copy of its
// input (up to MEDIA_MAX_BYTES, 20 MB, for a follower's voice; 10 MB for a video reply) is made
// in the slot. Made before it, 100 voices waiting behind two slots were 100 copies in TMPDIR.
// The child runs with a TMPDIR of its own, so only its files are counted.

import assert from "node:assert/strict";
import { probeDuration, transcodeVoice, videoThumbnail } from "../../src/media/transcode.ts";
import { createToolLimiter, type ToolLimiter } from "../../src/media/tool_limiter.ts";
import { amrFrames, amrOf, makeFixtures, skipWithoutFfmpeg, VOICE_AMR } from "./_media_tools.ts";

if (import.meta.main) {
  const tmp = Deno.env.get("TMPDIR")!;
  const mp4 = await Deno.readFile(Deno.args[0]!);
  const voice = amrOf(amrFrames(await Deno.readFile(VOICE_AMR)), 250);
  const slots = createToolLimiter(2);
  // As each run starts, the temp dirs in TMPDIR: its own is not counted, it is made in the slot.
  const seen: number[] = [];
  const limiter: ToolLimiter = {
    run: (task) => slots.run(() => (seen.push([...Deno.readDirSync(tmp)].length), task())),
  };
  const options = { limiter, timeoutMs: 30_000 };
  await Promise.all([
    ...Array.from({ length: 4 }, () => transcodeVoice(voice, options)),
    ...Array.from({ length: 2 }, () => probeDuration(voice, options)),
    ...Array.from({ length: 2 }, () => videoThumbnail(mp4, options)),
  ]);
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(seen)));
}

Deno.test({
  name: "a conversion waiting for a tool slot has no temp files yet: at most the other slot's",
  ignore: skipWithoutFfmpeg,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "tool-wait-" });
    try {
      await makeFixtures(dir);
      const tmp = await Deno.makeTempDir({ dir, prefix: "tmp-" });
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL(import.meta.url).pathname, `${dir}/video.mp4`],
        env: { TMPDIR: tmp },
        stdout: "piped",
        stderr: "inherit",
      }).output();
      assert.ok(out.success);
      const seen = JSON.parse(new TextDecoder().decode(out.stdout)) as number[];
      assert.ok(seen.length >= 8, `${seen.length} runs`);
      assert.ok(Math.max(...seen) <= 1, `temp dirs as runs started: ${seen.join(" ")}`);
      assert.deepEqual([...Deno.readDirSync(tmp)], [], "every temp dir is removed");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
