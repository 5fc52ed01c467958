// The MP3 file format: ID3v2 tags, then MPEG audio layer III frames, each a 4-byte header that
// fixes its length (ISO/IEC 11172-3 and 13818-3, and the MPEG 2.5 extension). Read without
// ffprobe, so a file that is only a tag, or a tag and noise, or another codec's frames behind
// an MP3-looking first byte (ADTS AAC, MPEG layer II) is refused before it is uploaded anywhere.

/** Where an MP3 file's audio is. */
export interface Mp3Info {
  /** The byte its first frame begins at, after its ID3v2 tags and anything unreadable. */
  audioStart: number;
}

/** Kilobits a second by bitrate index, layer III: MPEG 1, then MPEG 2 and 2.5. */
const MPEG1_KBPS = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
const MPEG2_KBPS = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
/** Sample rates by index, MPEG 1; MPEG 2 halves them and MPEG 2.5 quarters them. */
const MPEG1_RATES = [44100, 48000, 32000];

/**
 * Finds an MP3 file's audio: two layer III frames in a row, of one version and sample rate, as
 * ffmpeg's MP3 demuxer looks for before it reads on (one header turns up about once in 16,000
 * random bytes, two in a row once in 10^9). What lies between the tags and those frames is
 * skipped, as ffmpeg skips it. Throws SyntaxError when there are no such frames.
 */
export function parseMp3(bytes: Uint8Array): Mp3Info {
  const tagsEnd = afterId3Tags(bytes);
  if (tagsEnd >= bytes.length) {
    throw new SyntaxError("Cannot parse MP3: the file is an ID3 tag and no audio after it");
  }
  for (let at = bytes.indexOf(0xff, tagsEnd); at !== -1; at = bytes.indexOf(0xff, at + 1)) {
    const size = frameSize(bytes, at);
    if (size === null) continue;
    const next = frameSize(bytes, at + size);
    if (next !== null && sameStream(bytes, at, at + size)) return { audioStart: at };
  }
  throw new SyntaxError(
    `Cannot parse MP3: no two MPEG layer III frames in a row after byte ${tagsEnd}` +
      (tagsEnd > 0 ? " (the end of its ID3 tag)" : ""),
  );
}

/** The byte after the ID3v2 tags at the start of `bytes` (0 when it has none). */
function afterId3Tags(bytes: Uint8Array): number {
  let at = 0;
  // An editor may write a tag before the one already there: ffmpeg skips each in turn.
  while (
    at + 10 <= bytes.length && bytes[at] === 0x49 && bytes[at + 1] === 0x44 &&
    bytes[at + 2] === 0x33 && bytes[at + 3] !== 0xff && bytes[at + 4] !== 0xff &&
    [6, 7, 8, 9].every((i) => bytes[at + i]! < 0x80)
  ) {
    // The size is "syncsafe", 7 bits a byte; a footer (flag 0x10) adds 10 bytes more.
    const size = [6, 7, 8, 9].reduce((n, i) => n * 128 + bytes[at + i]!, 0);
    at += 10 + size + ((bytes[at + 5]! & 0x10) !== 0 ? 10 : 0);
  }
  return at;
}

/** The length of the layer III frame whose header is at `at`; null if none is there whole. */
function frameSize(bytes: Uint8Array, at: number): number | null {
  if (at + 4 > bytes.length) return null;
  const b1 = bytes[at + 1]!;
  const b2 = bytes[at + 2]!;
  if (bytes[at] !== 0xff || (b1 & 0xe0) !== 0xe0) return null;
  const version = (b1 >> 3) & 0x03; // 0 MPEG 2.5, 1 reserved, 2 MPEG 2, 3 MPEG 1
  const layer = (b1 >> 1) & 0x03; // 1 layer III; ADTS AAC has 0 here, MPEG layer II 2
  const bitrateIndex = b2 >> 4;
  const rateIndex = (b2 >> 2) & 0x03;
  // Bitrate 0 is "free format", whose length no header says: ffmpeg does not sync on it either.
  if (version === 1 || layer !== 1 || bitrateIndex === 0 || bitrateIndex === 15) return null;
  if (rateIndex === 3) return null;
  const kbps = (version === 3 ? MPEG1_KBPS : MPEG2_KBPS)[bitrateIndex]!;
  const rate = MPEG1_RATES[rateIndex]! / (version === 3 ? 1 : version === 2 ? 2 : 4);
  // 1152 samples a frame in MPEG 1, 576 in MPEG 2 and 2.5: 144 or 72 bytes per kb/s per Hz.
  const size = Math.floor(((version === 3 ? 144 : 72) * kbps * 1000) / rate) + ((b2 >> 1) & 1);
  return at + size <= bytes.length ? size : null;
}

/** Whether the frames at `a` and `b` have one MPEG version and one sample rate. */
function sameStream(bytes: Uint8Array, a: number, b: number): boolean {
  return (bytes[a + 1]! & 0x18) === (bytes[b + 1]! & 0x18) &&
    (bytes[a + 2]! & 0x0c) === (bytes[b + 2]! & 0x0c);
}
