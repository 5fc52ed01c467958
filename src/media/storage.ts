// Content-addressed media storage: keys are `sha256hex.ext`, so the same bytes are stored once
// and a key names its content forever. `MediaStorage` is the seam: disk here (the default), an
// S3-compatible bucket in s3_storage.ts; nothing outside this file touches the disk layout.

import { createHash } from "node:crypto";
import { join } from "node:path";

/** An inclusive byte range, as HTTP `Range: bytes=start-end` means it. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Where media files live; keys come from `put` and are checked by `isMediaKey`. */
export interface MediaStorage {
  /** Stores bytes (idempotent for the same content) and returns the key `sha256hex.ext`. */
  put(bytes: Uint8Array, ext: string): Promise<string>;
  /** Size of a stored file, or null when the key is unknown or malformed; `fresh` asks the
   * store itself, not what this instance remembers (another may have deleted the file). */
  stat(key: string, options?: { fresh?: boolean }): Promise<{ size: number } | null>;
  /** A stream of the file (or of an inclusive range of it), or null when unknown. */
  open(key: string, range?: ByteRange): Promise<ReadableStream<Uint8Array> | null>;
  /** Local file path, for tools (ffprobe) that need one; only disk storage has it. */
  path?(key: string): string;
  /** Deletes a stored file (nothing when it is not there). */
  remove?(key: string): Promise<void>;
  /**
   * A URL of the store's own, valid `expiresS` seconds, that browsers are sent to instead of
   * the bridge streaming the bytes; only an object store configured with `presign=true` has it.
   */
  presignedUrl?(key: string, expiresS: number): Promise<string>;
}

const KEY_PATTERN = /^[0-9a-f]{64}\.[a-z0-9]{1,8}$/;
const EXT_PATTERN = /^[a-z0-9]{1,8}$/;
const READ_CHUNK = 64 * 1024;

/** True for a well-formed key (`sha256hex.ext`); anything else could escape the directory. */
export function isMediaKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

/** The key `put` gives these bytes: lowercase SHA-256 hex, a dot, the extension. */
export function mediaKeyOf(bytes: Uint8Array, ext: string): string {
  if (!EXT_PATTERN.test(ext)) {
    throw new TypeError(`Cannot store media: extension "${ext}" is not 1-8 of [a-z0-9]`);
  }
  return `${createHash("sha256").update(bytes).digest("hex")}.${ext}`;
}

/**
 * Storage in a local directory: files sharded by the first two hex digits
 * (`dir/ab/abcd….ext`) so no directory grows huge; written to a temp file then renamed, so a
 * reader never sees half a file and a crash leaves at most a stray `.tmp`.
 */
export function createDiskStorage(dir: string): MediaStorage {
  const pathOf = (key: string): string => {
    if (!isMediaKey(key)) throw new TypeError(`Cannot use media key "${key}": malformed`);
    return join(dir, key.slice(0, 2), key);
  };

  const stat = async (key: string): Promise<{ size: number } | null> => {
    if (!isMediaKey(key)) return null;
    try {
      const info = await Deno.stat(pathOf(key));
      return info.isFile ? { size: info.size } : null;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return null;
      throw err;
    }
  };

  return {
    async put(bytes, ext) {
      const key = mediaKeyOf(bytes, ext);
      const path = pathOf(key);
      if ((await stat(key))?.size === bytes.length) return key;
      await Deno.mkdir(join(dir, key.slice(0, 2)), { recursive: true });
      const tmp = `${path}.${crypto.randomUUID()}.tmp`;
      try {
        await Deno.writeFile(tmp, bytes);
        await Deno.rename(tmp, path);
      } catch (err) {
        await Deno.remove(tmp).catch(() => {});
        throw err;
      }
      return key;
    },

    stat,

    async open(key, range) {
      if (!isMediaKey(key)) return null;
      let file: Deno.FsFile;
      try {
        file = await Deno.open(pathOf(key), { read: true });
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) return null;
        throw err;
      }
      try {
        const size = (await file.stat()).size;
        const start = range?.start ?? 0;
        const end = Math.min(range?.end ?? size - 1, size - 1);
        if (start < 0 || start > end + 1 || !Number.isInteger(start) || !Number.isInteger(end)) {
          throw new RangeError(`Cannot read media range ${start}-${end} of ${size} bytes`);
        }
        if (start > 0) await file.seek(start, Deno.SeekMode.Start);
        return fileStream(file, end - start + 1);
      } catch (err) {
        file.close();
        throw err;
      }
    },

    path: pathOf,

    async remove(key) {
      if (!isMediaKey(key)) return;
      await Deno.remove(pathOf(key)).catch((err) => {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      });
    },
  };
}

/** Streams `length` bytes from the file's current position and closes it when done or cancelled. */
function fileStream(file: Deno.FsFile, length: number): ReadableStream<Uint8Array> {
  let remaining = length;
  let closed = false;
  const close = () => {
    if (!closed) {
      closed = true;
      file.close();
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (remaining <= 0) {
        close();
        controller.close();
        return;
      }
      const buf = new Uint8Array(Math.min(READ_CHUNK, remaining));
      let n: number | null;
      try {
        n = await file.read(buf);
      } catch (err) {
        close();
        throw err;
      }
      if (n === null) {
        // The file shrank under us; end the stream rather than hang.
        close();
        controller.close();
        return;
      }
      remaining -= n;
      controller.enqueue(buf.subarray(0, n));
      if (remaining <= 0) {
        close();
        controller.close();
      }
    },
    cancel() {
      close();
    },
  });
}
