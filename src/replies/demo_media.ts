// Demo mode's stand-in for WeChat's media: without credentials, the follower simulator's uploads
// and agents' files get local media ids, and `media/get` is answered from them. The files live on
// disk in a directory of their own, bounded in count and bytes: the oldest are forgotten and
// deleted first, so anonymous uploads (open dev mode) cannot fill the memory or the disk.

import { HttpError } from "../http/http_error.ts";
import { readBodyLimited, readStreamLimited } from "../http/limits.ts";
import { json } from "../http/router.ts";
import type { GetMedia } from "../media/pipeline.ts";
import { extensionOf } from "../media/serve.ts";
import { mediaUrlOf, type UrlSigner } from "../media/signed_url.ts";
import type { MediaStorage } from "../media/storage.ts";

/** What the demo media needs. */
export interface DemoMediaDeps {
  /** Demo files only (DATA_DIR/demo-media): evicted files are deleted from it. */
  storage: MediaStorage;
  signer: UrlSigner;
  maxBytes: number;
  /** Files kept at most; default DEMO_MAX_FILES. */
  maxFiles?: number;
  /** Bytes kept at most, all files together; default DEMO_MAX_TOTAL_BYTES. */
  maxTotalBytes?: number;
}

/** How many demo files are kept: a demo's worth of pictures. */
export const DEMO_MAX_FILES = 200;
/** How many bytes of demo files are kept, all together. */
export const DEMO_MAX_TOTAL_BYTES = 200 * 1024 * 1024;

interface DemoFile {
  key: string;
  contentType: string;
  size: number;
}

/** Creates the demo media store: `getMedia` for the pipeline, `upload` for the simulator. */
export function createDemoMedia(deps: DemoMediaDeps) {
  const maxFiles = deps.maxFiles ?? DEMO_MAX_FILES;
  const maxTotal = deps.maxTotalBytes ?? DEMO_MAX_TOTAL_BYTES;
  // Insertion order is age: the first entry is the oldest.
  const files = new Map<string, DemoFile>();
  let total = 0;

  async function keep(mediaId: string, bytes: Uint8Array, contentType: string): Promise<string> {
    const ext = extensionOf(contentType) ?? "bin";
    const key = await deps.storage.put(bytes, ext);
    const previous = files.get(mediaId);
    if (previous) {
      files.delete(mediaId);
      total -= previous.size;
    }
    files.set(mediaId, { key, contentType, size: bytes.byteLength });
    total += bytes.byteLength;
    const evicted: string[] = [];
    for (const [id, file] of files) {
      if (files.size <= maxFiles && total <= maxTotal) break;
      if (id === mediaId) continue;
      files.delete(id);
      total -= file.size;
      evicted.push(file.key);
    }
    // Content-addressed: a key another remembered id still uses stays on disk.
    const inUse = new Set([...files.values()].map((f) => f.key));
    for (const old of evicted) if (!inUse.has(old)) await deps.storage.remove?.(old);
    return key;
  }

  const getMedia: GetMedia = async (id, opts) => {
    const file = files.get(id);
    const stream = file ? await deps.storage.open(file.key) : null;
    if (!file || !stream) throw new Error(`No demo media ${id}`);
    const limit = opts?.maxBytes ?? deps.maxBytes;
    const bytes = await readStreamLimited(
      stream,
      limit,
      () => new RangeError(`Cannot read demo media ${id}: more than ${limit} bytes`),
    );
    return { kind: "file" as const, bytes, contentType: file.contentType };
  };

  return {
    getMedia,
    /** What is kept now: files and bytes. */
    usage: () => ({ files: files.size, bytes: total }),
    /** Keeps a file under a demo media id. */
    async remember(mediaId: string, bytes: Uint8Array, contentType: string): Promise<void> {
      await keep(mediaId, bytes, contentType);
    },
    /** `POST B/demo/media`: the simulator's picture, answered with its media_id and URL. */
    async upload(req: Request, publicBase: string): Promise<Response> {
      const type = req.headers.get("content-type") ?? "";
      const ext = extensionOf(type);
      if (!ext || !type.startsWith("image/")) {
        throw new HttpError(415, "Send an image (JPEG, PNG, GIF or WebP)");
      }
      const bytes = await readBodyLimited(req, Math.min(deps.maxBytes, 10 * 1024 * 1024));
      const mediaId = `demo_${crypto.randomUUID().replaceAll("-", "")}`;
      const key = await keep(mediaId, bytes, type);
      return json({ media_id: mediaId, pic_url: mediaUrlOf(deps.signer, publicBase, key) });
    },
    /** The media files served at /media/KEY: the bridge's own, then the demo's. */
    servedWith(storage: MediaStorage): MediaStorage {
      return {
        put: (bytes, ext) => storage.put(bytes, ext),
        stat: async (key, options) =>
          await storage.stat(key, options) ?? await deps.storage.stat(key, options),
        open: async (key, range) =>
          await storage.stat(key) !== null
            ? await storage.open(key, range)
            : await deps.storage.open(key, range),
      };
    },
  };
}
