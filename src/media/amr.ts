// The AMR file format (RFC 4867 section 5, "storage format"): a magic line, then frames, each a
// header byte and a payload whose size the frame type fixes. Read without ffmpeg, so a file that
// is only the magic line, or noise behind it, is refused before it is uploaded anywhere.

/** What an AMR file holds. */
export interface AmrInfo {
  /** AMR-WB (`#!AMR-WB\n`, 16 kHz) rather than AMR-NB (`#!AMR\n`, 8 kHz). */
  wideband: boolean;
  /** Complete frames, 20 ms each, of every type (speech, comfort noise, no data). */
  frames: number;
}

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
  let frames = 0;
  let at = (wideband ? WB_MAGIC : NB_MAGIC).length;
  while (at < bytes.length) {
    const header = bytes[at]!;
    const type = (header >> 3) & 0x0f;
    const size = payload[type];
    // Bit 7 and bits 1-0 are padding, zero in every encoder's output.
    if ((header & 0x83) !== 0 || size === null || size === undefined) {
      throw new SyntaxError(
        `Cannot parse AMR: byte ${at} (0x${
          header.toString(16).padStart(2, "0")
        }) after ${frames} ` +
          `frames is not a frame header`,
      );
    }
    if (at + 1 + size > bytes.length) break;
    frames++;
    at += 1 + size;
  }
  if (frames === 0) {
    throw new SyntaxError("Cannot parse AMR: no complete frame after the #!AMR line");
  }
  return { wideband, frames };
}

function startsWith(bytes: Uint8Array, text: string): boolean {
  return bytes.length >= text.length && [...text].every((c, i) => bytes[i] === c.charCodeAt(0));
}
