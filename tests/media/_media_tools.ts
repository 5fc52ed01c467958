// Shared by the media tests: whether ffmpeg and ffprobe are here (skip locally when absent,
// fail under CI=true), fixture files made with ffmpeg, and a server for signed media URLs.

import { serveMedia, type ServeMediaDeps } from "../../src/media/serve.ts";

export const VOICE_AMR = new URL("../fixtures/media/voice.amr", import.meta.url).pathname;

async function works(cmd: string): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, { args: ["-version"], stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

const present = (await works("ffmpeg")) && (await works("ffprobe"));

/** True when a test needing ffmpeg should be skipped: tools absent and not under CI. */
export const skipWithoutFfmpeg = !present && Deno.env.get("CI") !== "true";
if (skipWithoutFfmpeg) {
  // deno-lint-ignore no-console
  console.warn("ffmpeg/ffprobe not found on PATH: skipping tests that need them (CI is not true)");
}

/** Runs ffmpeg with the given arguments, throwing with its stderr on failure. */
export async function ffmpeg(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ffmpeg", {
    args: ["-hide_banner", "-nostdin", "-v", "error", ...args],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`ffmpeg failed: ${new TextDecoder().decode(out.stderr)}`);
}

/** ffprobe's view of a file: format duration, first stream's codec and type. */
export async function ffprobe(
  path: string,
): Promise<{ duration: number; codec: string; codecType: string }> {
  const out = await new Deno.Command("ffprobe", {
    args: [
      "-v",
      "error",
      "-show_entries",
      "format=duration:stream=codec_name,codec_type",
      "-of",
      "json",
      path,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`ffprobe failed: ${new TextDecoder().decode(out.stderr)}`);
  const json = JSON.parse(new TextDecoder().decode(out.stdout));
  return {
    duration: Number(json.format?.duration),
    codec: json.streams?.[0]?.codec_name ?? "",
    codecType: json.streams?.[0]?.codec_type ?? "",
  };
}

/** Makes a 2 s H.264 mp4, a PNG and a JPEG in `dir`; returns their bytes. */
export async function makeFixtures(
  dir: string,
): Promise<{ mp4: Uint8Array; png: Uint8Array; jpeg: Uint8Array }> {
  const src = ["-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=15"];
  await ffmpeg(
    ...src,
    ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    ...["-movflags", "+faststart", "-y", `${dir}/video.mp4`],
  );
  await ffmpeg(...src, "-frames:v", "1", "-y", `${dir}/image.png`);
  await ffmpeg(...src, "-frames:v", "1", "-y", `${dir}/image.jpg`);
  return {
    mp4: await Deno.readFile(`${dir}/video.mp4`),
    png: await Deno.readFile(`${dir}/image.png`),
    jpeg: await Deno.readFile(`${dir}/image.jpg`),
  };
}

/** The real voice (VOICE_AMR) as LAME encodes it, 16 kb/s at its 8 kHz, made in `dir`. */
export async function voiceMp3(dir: string): Promise<Uint8Array> {
  await ffmpeg("-i", VOICE_AMR, "-c:a", "libmp3lame", "-b:a", "16k", "-y", `${dir}/voice.mp3`);
  return await Deno.readFile(`${dir}/voice.mp3`);
}

/**
 * Duration of an AMR-NB file computed from its frame headers (20 ms a frame), independent of
 * ffmpeg, whose header-less estimate for AMR is off by most of a second.
 */
export function amrDurationSeconds(bytes: Uint8Array): number {
  const magic = "#!AMR\n";
  const head = new TextDecoder().decode(bytes.subarray(0, magic.length));
  if (head !== magic) throw new Error("Cannot parse AMR: no #!AMR header");
  // Speech bytes per frame type 0-15 (AMR-NB, RFC 4867 section 5.3), plus the header byte.
  const sizes = [12, 13, 15, 17, 19, 20, 26, 31, 5, 6, 5, 5, 0, 0, 0, 0];
  let frames = 0;
  for (let i = magic.length; i < bytes.length; frames++) {
    i += 1 + sizes[(bytes[i]! >> 3) & 0x0f]!;
  }
  return frames * 0.02;
}

/** A real HTTP server on port 0 mounting `serveMedia` at `/media/:key?e=EXPIRES&t=TOKEN`. */
export function startMediaServer(deps: ServeMediaDeps): { base: string; close(): Promise<void> } {
  const pattern = new URLPattern({ pathname: "/media/:key" });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
    const url = new URL(req.url);
    const match = pattern.exec(url);
    if (!match) return new Response("Not found", { status: 404 });
    return serveMedia(req, match.pathname.groups.key ?? "", url.searchParams, deps);
  });
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    close: () => server.shutdown(),
  };
}

/** AMR-NB speech bytes after each frame's header byte, by frame type (RFC 4867 section 5.3). */
const AMR_NB_FRAME_BYTES = [12, 13, 15, 17, 19, 20, 26, 31, 5, 6, 5, 5, 0, 0, 0, 0];

/** The frames of an AMR-NB file (its `#!AMR\n` header dropped), each header byte first. */
export function amrFrames(bytes: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  for (let i = 6; i < bytes.length;) {
    const size = 1 + AMR_NB_FRAME_BYTES[(bytes[i]! >> 3) & 0x0f]!;
    frames.push(bytes.subarray(i, i + size));
    i += size;
  }
  return frames;
}

/** An AMR-NB file of `count` frames (20 ms each) taken from `frames` over and over. */
export function amrOf(frames: Uint8Array[], count: number): Uint8Array {
  const parts = Array.from({ length: count }, (_, i) => frames[i % frames.length]!);
  const out = new Uint8Array(6 + parts.reduce((n, f) => n + f.length, 0));
  out.set(new TextEncoder().encode("#!AMR\n"));
  let at = 6;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** `size` bytes of noise (xorshift32, the same every run) behind an AMR-NB header. */
export function noiseAmr(size: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = 2463534242;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  out.set(new TextEncoder().encode("#!AMR\n"));
  return out;
}

/** A wrapper of `tool` that appends "+" to `log` as it starts and "-" as it ends. */
export async function countingTool(dir: string, tool: string, log: string): Promise<string> {
  const path = `${dir}/${tool}-counted`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh
echo + >> "${log}"
sleep 0.3
${tool} "$@"
code=$?
echo - >> "${log}"
exit $code
`,
  );
  await Deno.chmod(path, 0o755);
  return path;
}

/** The most processes the log shows running at once, and how many ran. */
export async function peakOf(log: string): Promise<{ peak: number; runs: number }> {
  let running = 0;
  let peak = 0;
  let runs = 0;
  for (const line of (await Deno.readTextFile(log)).split("\n")) {
    if (line === "+") {
      runs++;
      peak = Math.max(peak, ++running);
    } else if (line === "-") running--;
  }
  return { peak, runs };
}

/** This process's peak resident memory, bytes (Linux: VmHWM). */
export function peakRss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) * 1024;
}

/** The child's half of a memory test: what it measured, written to its stdout as JSON. */
export function reportToParent(result: unknown): void {
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(result)));
}

/** Runs the test file at `moduleUrl` as a fresh process (its `import.meta.main` part, so a peak
 * is that part's alone) and gives back what it reported. */
export async function runAsChild<T>(moduleUrl: string): Promise<T> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(moduleUrl).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`${moduleUrl} failed as a child (${out.code})`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim()) as T;
}
