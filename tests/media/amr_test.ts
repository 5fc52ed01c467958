import assert from "node:assert/strict";
import { amrPackets, amrPartsWithSilentPauses, parseAmr } from "../../src/media/amr.ts";
import {
  amrDurationSeconds,
  amrFrames,
  amrOf,
  noiseAmr,
  skipWithoutFfmpeg,
  VOICE_AMR,
} from "./_media_tools.ts";

const ascii = (text: string) => new TextEncoder().encode(text);
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
};
/** amrPartsWithSilentPauses()'s pieces as one file (the bytes given when there is one piece). */
const amrWithSilentPauses = (bytes: Uint8Array, maxFrames: number) => {
  const parts = amrPartsWithSilentPauses(bytes, maxFrames);
  return parts.length === 1 ? parts[0]! : concat(...parts);
};

Deno.test("parseAmr() reads an AMR file's frames and refuses one with none to play", async (t) => {
  const voice = await Deno.readFile(VOICE_AMR);
  const first = amrFrames(voice)[0]!;

  await t.step("a real voice: every frame, as many as its length says", () => {
    const info = parseAmr(voice);
    assert.equal(info.wideband, false);
    assert.equal(info.frames * 0.02, amrDurationSeconds(voice));
  });
  await t.step("a last frame cut short is dropped, the rest kept", () => {
    const cut = amrOf(amrFrames(voice), 10).subarray(0, -5);
    assert.equal(parseAmr(cut).frames, 9);
  });
  await t.step("NO_DATA and SID frames are frames, not speech", () => {
    const sid = Uint8Array.of(0x44, 1, 2, 3, 4, 5); // type 8, 5 bytes
    const info = parseAmr(concat(ascii("#!AMR\n"), first, sid, Uint8Array.of(0x7c)));
    assert.equal(info.frames, 3);
    assert.equal(info.speechFrames, 1);
    assert.equal(parseAmr(concat(ascii("#!AMR\n"), sid, Uint8Array.of(0x7c))).speechFrames, 0);
    assert.equal(parseAmr(voice).speechFrames, parseAmr(voice).frames);
  });
  await t.step("AMR-WB by its own frame sizes", () => {
    // Type 8 (23.85 kb/s) is 60 bytes of speech behind its header.
    const frame = new Uint8Array(61);
    frame[0] = (8 << 3) | 0x04;
    assert.deepEqual(parseAmr(concat(ascii("#!AMR-WB\n"), frame, frame)), {
      wideband: true,
      frames: 2,
      speechFrames: 2,
    });
    // WB's SID (9), SPEECH_LOST (14) and NO_DATA (15) carry no speech.
    const pauses = [9, 14, 15].map((type) => {
      const pause = new Uint8Array(type === 9 ? 6 : 1);
      pause[0] = (type << 3) | 0x04;
      return pause;
    });
    assert.deepEqual(parseAmr(concat(ascii("#!AMR-WB\n"), ...pauses)), {
      wideband: true,
      frames: 3,
      speechFrames: 0,
    });
  });
  await t.step("only the #!AMR line: SyntaxError", () => {
    assert.throws(() => parseAmr(ascii("#!AMR\n")), SyntaxError);
    assert.throws(() => parseAmr(ascii("#!AMR-WB\n")), /no complete frame/);
  });
  await t.step("its only frame cut short: SyntaxError", () => {
    assert.throws(() => parseAmr(concat(ascii("#!AMR\n"), first.subarray(0, 20))), SyntaxError);
  });
  await t.step("text or noise behind the #!AMR line: SyntaxError", () => {
    assert.throws(
      () => parseAmr(ascii("#!AMR\nthis is not a voice at all")),
      /byte 6 \(0x74\) after 0 frames is not a frame header/,
    );
    assert.throws(() => parseAmr(noiseAmr(4096)), SyntaxError);
  });
  await t.step(
    "what follows the frames (an ID3v1 tag, a stray byte) is left out, as ffmpeg plays it",
    () => {
      const tag = concat(ascii("TAG"), new Uint8Array(125));
      assert.equal(parseAmr(concat(voice, tag)).frames, parseAmr(voice).frames);
      // A real frame, then a byte with its padding bit set.
      assert.equal(parseAmr(concat(ascii("#!AMR\n"), first, Uint8Array.of(0xbc))).frames, 1);
    },
  );
  await t.step("no #!AMR line: SyntaxError", () => {
    assert.throws(() => parseAmr(ascii("ID3")), /no #!AMR/);
  });
});

Deno.test("amrWithSilentPauses() puts 20 ms of silence where a frame would be dropped", async (t) => {
  const voice = await Deno.readFile(VOICE_AMR);
  const first = amrFrames(voice)[0]!;
  const noData = Uint8Array.of(0x7c);
  const sid = Uint8Array.of(0x44, 1, 2, 3, 4, 5);
  const silent = Uint8Array.of(0x04, ...new Uint8Array(12));

  await t.step("a voice without pauses comes back as the same bytes", () => {
    assert.equal(amrWithSilentPauses(voice, 5000), voice);
  });
  await t.step("NO_DATA and SID frames become 4.75 kb/s silent frames, speech stays", () => {
    const out = amrWithSilentPauses(concat(ascii("#!AMR\n"), first, noData, sid, first), 10);
    assert.deepEqual(out, concat(ascii("#!AMR\n"), first, silent, silent, first));
    assert.equal(parseAmr(out).frames, 4);
  });
  await t.step("past maxFrames, or past a byte that is no frame header, bytes stay as sent", () => {
    const many = concat(ascii("#!AMR\n"), noData, noData, noData);
    assert.deepEqual(
      amrWithSilentPauses(many, 2),
      concat(ascii("#!AMR\n"), silent, silent, noData),
    );
    const tail = concat(ascii("#!AMR\n"), noData, ascii("text"), noData);
    assert.deepEqual(
      amrWithSilentPauses(tail, 10),
      concat(ascii("#!AMR\n"), silent, ascii("text"), noData),
    );
  });
  await t.step("AMR-WB: SID and lost frames become silence, its NO_DATA (decoded) stays", () => {
    const wbSilent = new Uint8Array(33);
    wbSilent[0] = (2 << 3) | 0x04;
    const wbSid = Uint8Array.of((9 << 3) | 0x04, 1, 2, 3, 4, 5);
    const wbLost = Uint8Array.of((14 << 3) | 0x04);
    const out = amrWithSilentPauses(concat(ascii("#!AMR-WB\n"), wbSid, wbLost, noData), 10);
    assert.deepEqual(out, concat(ascii("#!AMR-WB\n"), wbSilent, wbSilent, noData));
  });
  await t.step("as parts: silent frames, then views of the bytes sent, none copied", () => {
    const voiceWithPause = concat(ascii("#!AMR\n"), first, noData, first, first);
    const parts = amrPartsWithSilentPauses(voiceWithPause, 10);
    assert.deepEqual(parts, [concat(ascii("#!AMR\n"), first), silent, concat(first, first)]);
    assert.equal(parts[0]!.buffer, voiceWithPause.buffer);
    assert.equal(parts[2]!.buffer, voiceWithPause.buffer);
  });
  await t.step("anything but AMR comes back as it is", () => {
    const mp3 = ascii("ID3 not amr");
    assert.equal(amrWithSilentPauses(mp3, 10), mp3);
  });
});

/** How many packets ffprobe reads in the AMR file `bytes`. */
async function ffprobePackets(bytes: Uint8Array): Promise<number> {
  const path = await Deno.makeTempFile({ suffix: ".amr" });
  try {
    await Deno.writeFile(path, bytes);
    const out = await new Deno.Command("ffprobe", {
      args: ["-v", "quiet", "-count_packets", "-show_entries", "stream=nb_read_packets"]
        .concat(["-of", "csv=p=0", "-f", "amr", path]),
      stdout: "piped",
    }).output();
    return Number(new TextDecoder().decode(out.stdout).trim());
  } finally {
    await Deno.remove(path);
  }
}

Deno.test({
  name: "amrPackets() counts the frames ffprobe reads: noise behind a voice too",
  ignore: skipWithoutFfmpeg,
  async fn(t) {
    const voice = await Deno.readFile(VOICE_AMR);
    const noise = noiseAmr(1_000_006).subarray(6);
    const cases: Array<[string, Uint8Array]> = [
      ["the real voice", voice],
      ["the real voice and 1 MB of noise", concat(voice, noise)],
      ["the real voice and an ID3v1 tag", concat(voice, ascii("TAG"), new Uint8Array(125))],
      ["the real voice and a frame cut short", concat(voice, voice.subarray(6, 26))],
      ["NO_DATA frames", concat(ascii("#!AMR\n"), new Uint8Array(150).fill(0x7c))],
      ["noise behind #!AMR", noiseAmr(50_000)],
      ["noise behind #!AMR-WB", concat(ascii("#!AMR-WB\n"), noise.subarray(0, 50_000))],
    ];
    for (const [what, bytes] of cases) {
      await t.step(what, async () => {
        assert.equal(amrPackets(bytes), await ffprobePackets(bytes));
      });
    }
    await t.step("not an AMR: none", () => {
      assert.equal(amrPackets(ascii("ID3 not amr")), 0);
    });
  },
});
