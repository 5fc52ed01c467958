// WeChat's rules for temporary media (`media/upload`): which formats each upload type takes and
// how large, checked before uploading; the format is read from the bytes, so the upload is named
// by what it is. WeChat names the file's type after its extension and refuses a name without one
// (errcode 40005), which is what a `media_url` like `…/download?id=7` used to produce.

import { getLogger } from "@logtape/logtape";
import { AMR_FRAME_SECONDS, amrPackets, parseAmr } from "../media/amr.ts";
import { parseMp3 } from "../media/mp3.ts";
import { probeDuration, VOICE_MAX_SECONDS } from "../media/transcode.ts";
import type { ToolLimiter } from "../media/tool_limiter.ts";
import { MediaUrlError } from "./public_get.ts";

const log = getLogger(["bridge", "replies"]);

/** `media/upload`'s `type`. */
export type UploadType = "image" | "voice" | "video" | "thumb";

/** A file format WeChat takes: its extension and Content-Type. */
export interface MediaFormat {
  ext: string;
  contentType: string;
}

const FORMATS: Record<string, MediaFormat> = {
  jpg: { ext: "jpg", contentType: "image/jpeg" },
  png: { ext: "png", contentType: "image/png" },
  gif: { ext: "gif", contentType: "image/gif" },
  amr: { ext: "amr", contentType: "audio/amr" },
  mp3: { ext: "mp3", contentType: "audio/mpeg" },
  mp4: { ext: "mp4", contentType: "video/mp4" },
};

/** WeChat's documented limits for temporary media ("新增临时素材"). */
export const UPLOAD_RULES: Record<
  UploadType,
  { formats: string[]; maxBytes: number; maxSeconds?: number; label: string }
> = {
  image: { formats: ["jpg", "png", "gif"], maxBytes: 10 * 1024 * 1024, label: "JPEG, PNG or GIF" },
  voice: {
    formats: ["amr", "mp3"],
    maxBytes: 2 * 1024 * 1024,
    maxSeconds: VOICE_MAX_SECONDS,
    label: "AMR or MP3",
  },
  video: { formats: ["mp4"], maxBytes: 10 * 1024 * 1024, label: "MP4" },
  thumb: { formats: ["jpg"], maxBytes: 64 * 1024, label: "JPEG" },
};

/** The format of the bytes from their magic numbers, or null when WeChat takes none like it. */
export function sniffFormat(b: Uint8Array): MediaFormat | null {
  const ascii = (at: number, text: string) =>
    b.length >= at + text.length && [...text].every((c, i) => b[at + i] === c.charCodeAt(0));
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return FORMATS.jpg!;
  if (b[0] === 0x89 && ascii(1, "PNG\r\n\x1a\n")) return FORMATS.png!;
  if (ascii(0, "GIF87a") || ascii(0, "GIF89a")) return FORMATS.gif!;
  if (ascii(0, "#!AMR")) return FORMATS.amr!;
  if (ascii(0, "ID3") || (b[0] === 0xff && ((b[1] ?? 0) & 0xe0) === 0xe0)) return FORMATS.mp3!;
  // ISO base media: mp4 and its brands; m4a (audio) is not a video WeChat plays.
  if (ascii(4, "ftyp") && !ascii(8, "M4A ")) return FORMATS.mp4!;
  return null;
}

/** The upload's name and type, or a MediaUrlError (413, 415) saying what WeChat would refuse. */
export function checkUpload(
  type: UploadType,
  bytes: Uint8Array,
  options: { declaredType: string; stem: string },
): { filename: string; contentType: string } {
  const rule = UPLOAD_RULES[type];
  if (bytes.byteLength === 0) throw new MediaUrlError(415, "The media_url file is empty");
  const format = sniffFormat(bytes);
  const declared = options.declaredType.split(";")[0]?.trim() || "no Content-Type";
  if (format === null || !rule.formats.includes(format.ext)) {
    throw new MediaUrlError(
      415,
      `WeChat takes a ${type} as ${rule.label}; the media_url file is ${
        format ? format.contentType : `not one (declared ${declared})`
      }`,
    );
  }
  if (bytes.byteLength > rule.maxBytes) {
    throw new MediaUrlError(
      413,
      `WeChat takes a ${type} of at most ${rule.maxBytes} bytes; the file is ${bytes.byteLength}`,
    );
  }
  const unplayable = type === "voice" ? voiceFault(bytes, format.ext) : null;
  if (unplayable !== null) {
    throw new MediaUrlError(415, `The media_url file is not a playable voice: ${unplayable}`);
  }
  return { filename: `${safeStem(options.stem)}.${format.ext}`, contentType: format.contentType };
}

/**
 * Why a voice (`amr` or `mp3`, by its bytes) holds nothing to hear, or null when it has speech
 * or audio frames: an AMR of only its magic line, of noise, or of pauses alone (NO_DATA, SID),
 * an MP3 that is only an ID3 tag, a tag and noise, or AAC or MPEG layer II frames behind its
 * MP3-like first bytes. Refused before WeChat sees it: WeChat gave an AMR of its magic line
 * alone a media_id all the same, and the follower would get a voice that plays nothing.
 */
export function voiceFault(bytes: Uint8Array, ext: string): string | null {
  try {
    if (ext === "mp3") {
      parseMp3(bytes);
      return null;
    }
    const { frames, speechFrames } = parseAmr(bytes);
    if (speechFrames > 0) return null;
    // ffmpeg decodes such a file to no sound at all; the reference decoder (opencore-amr, as in
    // Android) to 20 ms of silence a frame, peaking at 24 of 32768.
    return `Cannot play AMR: its ${frames} frames (${
      (frames * AMR_FRAME_SECONDS).toFixed(2)
    } s) are all pauses (NO_DATA or SID), none speech`;
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    return error.message;
  }
}

/** The URL's last path segment without its extension, as a plain file name ("media" if none). */
export function stemOf(url: string): string {
  let segment = "";
  try {
    segment = decodeURIComponent(new URL(url).pathname.split("/").pop() ?? "");
  } catch {
    segment = "";
  }
  return segment.replace(/\.[^.]*$/, "");
}

function safeStem(stem: string): string {
  const clean = stem.replace(/[^A-Za-z0-9_-]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 40);
  return clean === "" ? "media" : clean;
}

/**
 * How a voice is too long for `maxSeconds` ("lasts 80.0 s"), or null when it is not (or cannot
 * be measured: WeChat judges the length itself then). An AMR's frames say its length, 20 ms
 * each, pauses too, counted as ffprobe counts them (amrPackets), so it waits for no ffprobe run
 * in the queue behind followers' voices. An MP3's packets are read by ffprobe only to just past
 * the limit, so its length is a floor ("or more"): 2 MB of one-byte AMR frames claimed 11 hours,
 * which took ffprobe 8 s to list whole.
 */
export async function voiceTooLong(
  bytes: Uint8Array,
  maxSeconds: number,
  options: { limiter: ToolLimiter; ffprobe?: string; timeoutMs?: number },
): Promise<string | null> {
  // Half a second of slack: an MP3's last frame, or an encoder's padding, is not the agent's.
  const over = (seconds: number) => seconds > maxSeconds + 0.5;
  if (sniffFormat(bytes)?.ext === "amr") {
    // Counted as ffmpeg reads it, noise behind the frames too, which it decodes to sound.
    const seconds = amrPackets(bytes) * AMR_FRAME_SECONDS;
    return over(seconds) ? `lasts ${seconds.toFixed(1)} s` : null;
  }
  const readSeconds = maxSeconds + 1;
  let seconds: number;
  try {
    seconds = await probeDuration(bytes, {
      timeoutMs: options.timeoutMs ?? 10_000,
      limiter: options.limiter,
      readSeconds,
      ...(options.ffprobe ? { ffprobe: options.ffprobe } : {}),
    });
  } catch (error) {
    log.warn("Cannot measure a voice reply's length: {error}", { error });
    return null;
  }
  if (!over(seconds)) return null;
  return `lasts ${seconds.toFixed(1)} s${seconds >= readSeconds ? " or more" : ""}`;
}
