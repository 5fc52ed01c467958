// The AMR file format (RFC 4867 section 5, "storage format"): a magic line, then frames, each a
// header byte and a payload whose size the frame type fixes. Read without ffmpeg, so a file that
// is only the magic line, or noise behind it, is refused before it is uploaded anywhere, and
// the pauses ffmpeg's decoders would drop are made silence before it converts a voice.

/** What an AMR file holds. */
export interface AmrInfo {
  /** AMR-WB (`#!AMR-WB\n`, 16 kHz) rather than AMR-NB (`#!AMR\n`, 8 kHz). */
  wideband: boolean;
  /** Complete frames, 20 ms each, of every type (speech, comfort noise, no data). */
  frames: number;
  /** Of those, the frames that carry speech (NB types 0-7, WB 0-8): the rest are pauses. */
  speechFrames: number;
}

/** An AMR frame's length, in every mode of both codecs. */
export const AMR_FRAME_SECONDS = 0.02;

const NB_MAGIC = "#!AMR\n";
const WB_MAGIC = "#!AMR-WB\n";

/**
 * Payload bytes after the header byte, by frame type; null for a type the codec does not have
 * (RFC 4867 tables: NB 0-7 speech, 8 SID, 15 NO_DATA; WB 0-8 speech, 9 SID, 14 SPEECH_LOST,
 * 15 NO_DATA). NB's 9-11 are other codecs' SIDs, which no AMR decoder reads.
 */
const NB_PAYLOAD = [12, 13, 15, 17, 19, 20, 26, 31, 5, null, null, null, null, null, null, 0];
const WB_PAYLOAD = [17, 23, 32, 36, 40, 46, 50, 58, 60, 5, null, null, null, null, 0, 0];

/**
 * Reads an AMR file's frames. Throws SyntaxError when it has no AMR magic line, a byte where a
 * frame header belongs that is none (its padding bits set, or a type the codec lacks), or no
 * complete frame at all; a last frame cut short is dropped, as decoders drop it.
 */
export function parseAmr(bytes: Uint8Array): AmrInfo {
  const wideband = startsWith(bytes, WB_MAGIC);
  if (!wideband && !startsWith(bytes, NB_MAGIC)) {
    throw new SyntaxError("Cannot parse AMR: no #!AMR or #!AMR-WB line at the start");
  }
  const payload = wideband ? WB_PAYLOAD : NB_PAYLOAD;
  const lastSpeech = wideband ? 8 : 7;
  let frames = 0;
  let speechFrames = 0;
  let at = (wideband ? WB_MAGIC : NB_MAGIC).length;
  while (at < bytes.length) {
    const header = bytes[at]!;
    const size = payloadOf(header, payload);
    if (size === null) {
      // What follows whole frames (an ID3 tag an editor appended) is not played, as ffmpeg
      // plays the frames before it: only a file with no frame at all is refused.
      if (frames > 0) break;
      throw new SyntaxError(
        `Cannot parse AMR: byte ${at} (0x${
          header.toString(16).padStart(2, "0")
        }) after ${frames} ` +
          `frames is not a frame header`,
      );
    }
    if (at + 1 + size > bytes.length) break;
    frames++;
    if (((header >> 3) & 0x0f) <= lastSpeech) speechFrames++;
    at += 1 + size;
  }
  if (frames === 0) {
    throw new SyntaxError("Cannot parse AMR: no complete frame after the #!AMR line");
  }
  return { wideband, frames, speechFrames };
}

/**
 * Frames ffmpeg's AMR demuxer reads, header byte included, by frame type: it takes every byte
 * where a frame begins for a header, its padding bits ignored, and the types without a size
 * for a header alone (libavformat/amr.c, `amrnb_packed_size`, `amrwb_packed_size`).
 */
const NB_PACKET = [13, 14, 16, 18, 20, 21, 27, 32, 6, 1, 1, 1, 1, 1, 1, 1];
const WB_PACKET = [18, 24, 33, 37, 41, 47, 51, 59, 61, 6, 1, 1, 1, 1, 1, 1];

/**
 * How many 20 ms frames ffmpeg reads in an AMR file (0 when it is none), as ffprobe counts its
 * packets: noise behind the frames counts too, as frames it decodes (a real 24 s voice with
 * 1 MB of noise behind it decoded to 943 s of sound), and so does a last frame cut short.
 * parseAmr() says what a file holds; this, how long WeChat may find it.
 */
export function amrPackets(bytes: Uint8Array): number {
  const wideband = startsWith(bytes, WB_MAGIC);
  if (!wideband && !startsWith(bytes, NB_MAGIC)) return 0;
  const sizes = wideband ? WB_PACKET : NB_PACKET;
  let packets = 0;
  for (let at = (wideband ? WB_MAGIC : NB_MAGIC).length; at < bytes.length; packets++) {
    at += sizes[(bytes[at]! >> 3) & 0x0f]!;
  }
  return packets;
}

/**
 * 20 ms of silence for each codec: a speech frame whose parameters are all zero. NB's 4.75 kb/s
 * one decodes to exact zeros; WB's lowest modes hum (peak 252 of 32768), its 12.65 kb/s one
 * peaks at 13.
 */
const NB_SILENT_FRAME = new Uint8Array(1 + NB_PAYLOAD[0]!).fill(0x04, 0, 1);
const WB_SILENT_FRAME = new Uint8Array(1 + WB_PAYLOAD[2]!).fill((2 << 3) | 0x04, 0, 1);
/** Frame types ffmpeg's decoders drop without output: NB SID and NO_DATA, WB SID and lost. */
const NB_DROPPED = new Set([8, 15]);
const WB_DROPPED = new Set([9, 14]);

/**
 * The AMR with each frame ffmpeg would drop (comfort noise, no data: the pauses of a voice sent
 * with DTX) replaced by a silent speech frame, so the pauses keep their length: dropped, a 3 s
 * voice with a 1 s pause decoded to 2 s of speech run together. Only the first `maxFrames` are
 * read, and from a byte that is no frame header on the rest is kept as it is, so noise behind
 * an AMR line is not made larger. Returned as the pieces to write one after another, each but
 * the silent frames a view of `bytes` (`[bytes]` when there is nothing to replace): a 20 MB
 * voice with one pause in its first frames is not copied whole.
 */
export function amrPartsWithSilentPauses(bytes: Uint8Array, maxFrames: number): Uint8Array[] {
  const wideband = startsWith(bytes, WB_MAGIC);
  if (!wideband && !startsWith(bytes, NB_MAGIC)) return [bytes];
  const payload = wideband ? WB_PAYLOAD : NB_PAYLOAD;
  const dropped = wideband ? WB_DROPPED : NB_DROPPED;
  const silent = wideband ? WB_SILENT_FRAME : NB_SILENT_FRAME;
  const parts: Uint8Array[] = [];
  let start = 0; // bytes from here to `at` are kept as they are
  let at = (wideband ? WB_MAGIC : NB_MAGIC).length;
  for (let frames = 0; frames < maxFrames && at < bytes.length; frames++) {
    const header = bytes[at]!;
    const size = payloadOf(header, payload);
    if (size === null || at + 1 + size > bytes.length) break;
    if (dropped.has((header >> 3) & 0x0f)) {
      parts.push(bytes.subarray(start, at), silent);
      start = at + 1 + size;
    }
    at += 1 + size;
  }
  if (parts.length === 0) return [bytes];
  parts.push(bytes.subarray(start));
  return parts;
}

/** The payload size of the frame `header` begins; null for a byte that is no frame header. */
function payloadOf(header: number, payload: ReadonlyArray<number | null>): number | null {
  // Bit 7 and bits 1-0 are padding, zero in every encoder's output.
  if ((header & 0x83) !== 0) return null;
  return payload[(header >> 3) & 0x0f] ?? null;
}

function startsWith(bytes: Uint8Array, text: string): boolean {
  return bytes.length >= text.length && [...text].every((c, i) => bytes[i] === c.charCodeAt(0));
}
