// Media storage in an S3-compatible bucket, shared by every instance: the same content-addressed
// keys as on disk (`prefix` + `sha256hex.ext`), ranged GETs for players that seek, and, when
// configured, presigned URLs so browsers fetch the bytes from the store itself.

import { contentTypeOf } from "./serve.ts";
import type { S3Client } from "./s3_client.ts";
import { isMediaKey, mediaKeyOf, type MediaStorage } from "./storage.ts";

/** What `createS3Storage` needs. */
export interface S3StorageOptions {
  client: S3Client;
  /** Prepended to every key: `""` or `folder/`. */
  prefix: string;
  /** Send browsers to the store's presigned URLs (see `presignedUrl`). */
  presign: boolean;
}

/** Media storage whose files are objects; `check` says at start whether the bucket answers. */
export interface ObjectStorage extends MediaStorage {
  /** Throws an Error saying what is wrong when the bucket cannot be reached or read. */
  check(): Promise<void>;
}

// Keys name content, so a size once seen never changes: remembered to spare a HEAD per request.
const SIZE_CACHE_ENTRIES = 10_000;
const PUT_ATTEMPTS = 2;

/** A bucket as media storage. */
export function createS3Storage(options: S3StorageOptions): ObjectStorage {
  const { client, prefix } = options;
  const sizes = new Map<string, number>();
  const remember = (key: string, size: number) => {
    if (sizes.size >= SIZE_CACHE_ENTRIES) sizes.delete(sizes.keys().next().value!);
    sizes.set(key, size);
  };

  async function stat(key: string, fresh = false): Promise<{ size: number } | null> {
    if (!isMediaKey(key)) return null;
    const known = fresh ? undefined : sizes.get(key);
    if (known !== undefined) return { size: known };
    const res = await client.request("HEAD", prefix + key);
    await res.body?.cancel();
    if (res.status === 404) {
      sizes.delete(key);
      return null;
    }
    if (!res.ok) throw await storeError("HEAD", key, res);
    const size = Number(res.headers.get("content-length"));
    if (!Number.isInteger(size) || size < 0) {
      throw new Error(`Cannot stat media ${key}: the object store sent no Content-Length`);
    }
    remember(key, size);
    return { size };
  }

  const storage: ObjectStorage = {
    async put(bytes, ext) {
      const key = mediaKeyOf(bytes, ext);
      // The HEAD only spares a PUT: when it fails the PUT is made anyway (same key, same bytes),
      // and its own retry decides, rather than a hiccup on the HEAD costing the picture.
      // Asked afresh: another instance may have deleted a forgotten follower's file since.
      const known = await stat(key, true).catch(() => null);
      if (known?.size === bytes.length) return key;
      const headers: Record<string, string> = {
        "content-type": contentTypeOf(key),
        // The key is the content's SHA-256: the store checks the body against it.
        "x-amz-content-sha256": key.slice(0, 64),
      };
      // What serve.ts says for a file no browser should render, the store says on presigned GETs.
      if (headers["content-type"] === "application/octet-stream") {
        headers["content-disposition"] = "attachment";
      }
      // One more try after a network error or a 5xx: a store's hiccup should not cost a picture.
      let failure: Error | undefined;
      for (let attempt = 1; attempt <= PUT_ATTEMPTS; attempt++) {
        let res: Response;
        try {
          res = await client.request("PUT", prefix + key, {
            body: bytes as Uint8Array<ArrayBuffer>,
            headers,
          });
        } catch (error) {
          failure = new Error(`Cannot PUT media ${key}: ${(error as Error).message}`);
          continue;
        }
        if (res.ok) {
          await res.body?.cancel();
          remember(key, bytes.length);
          return key;
        }
        failure = await storeError("PUT", key, res);
        if (res.status < 500) break;
      }
      throw failure!;
    },

    stat: (key, options) => stat(key, options?.fresh === true),

    async open(key, range) {
      if (!isMediaKey(key)) return null;
      const headers: Record<string, string> = {};
      if (range) headers["range"] = `bytes=${range.start}-${range.end}`;
      const res = await client.request("GET", prefix + key, { headers });
      if (res.status === 404) {
        await res.body?.cancel();
        // Gone from the bucket (another instance, an operator): the next put must upload it.
        sizes.delete(key);
        return null;
      }
      // A store that ignores Range would send the whole file where a part was promised.
      if (!res.ok || (range && res.status !== 206)) throw await storeError("GET", key, res);
      return res.body ?? new ReadableStream({ start: (c) => c.close() });
    },

    async remove(key) {
      if (!isMediaKey(key)) return;
      sizes.delete(key);
      const res = await client.request("DELETE", prefix + key);
      if (!res.ok && res.status !== 404) throw await storeError("DELETE", key, res);
      await res.body?.cancel();
    },

    async check() {
      let res: Response;
      try {
        res = await client.request("HEAD", null);
      } catch (error) {
        throw new Error(
          `Cannot use MEDIA_STORE: cannot reach ${client.objectUrl("")}: ${
            (error as Error).message
          }`,
        );
      }
      await res.body?.cancel();
      if (res.ok) return;
      const why = res.status === 404
        ? "no such bucket"
        : res.status === 403
        ? "access denied (check the key, the secret and the region)"
        : `HTTP ${res.status}`;
      throw new Error(`Cannot use MEDIA_STORE: the bucket answered ${why}`);
    },
  };
  if (options.presign) {
    storage.presignedUrl = (key, expiresS) => client.presign(prefix + key, expiresS);
  }
  return storage;
}

/** An Error naming the operation, the key and what the store said (its XML `Code`). */
async function storeError(method: string, key: string, res: Response): Promise<Error> {
  const body = method === "HEAD" ? "" : await res.text().catch(() => "");
  const code = /<Code>([^<]{1,80})<\/Code>/.exec(body)?.[1];
  return new Error(
    `Cannot ${method} media ${key}: the object store answered HTTP ${res.status}${
      code ? ` ${code}` : ""
    }`,
  );
}
