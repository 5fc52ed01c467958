// Compressed answers for the console's text files: Brotli or gzip, whichever the client
// accepts (Brotli first: smaller for the same text), each variant made once per file version.

import { brotliCompressSync, constants, gzipSync } from "node:zlib";

/** An encoding the bridge makes. */
export type Encoding = "br" | "gzip";

/** Smaller than this, a file goes as it is: the headers would cost more than they save. */
const MIN_BYTES = 512;
/** Variants kept; a few dozen files in two encodings fit many times over. */
const MAX_CACHED = 256;

/** The encoding to use for `accept` (an Accept-Encoding header), or null for none. */
export function negotiateEncoding(accept: string | null): Encoding | null {
  if (!accept) return null;
  const q = new Map<string, number>();
  for (const part of accept.toLowerCase().split(",")) {
    const [name, ...params] = part.trim().split(";");
    if (!name) continue;
    const qParam = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    const value = qParam === undefined ? 1 : Number(qParam.slice(2));
    q.set(name.trim(), Number.isFinite(value) ? value : 0);
  }
  const weight = (name: string) => q.get(name) ?? (q.has("*") ? q.get("*")! : 0);
  if (weight("br") > 0) return "br";
  if (weight("gzip") > 0) return "gzip";
  return null;
}

/** Makes and keeps compressed variants, keyed by the file's ETag. */
export function createCompressor() {
  const cache = new Map<string, Uint8Array>();
  return {
    /** `body` in `encoding`, or null when the file is too small to gain from it. */
    compress(body: Uint8Array, encoding: Encoding, etag: string): Uint8Array | null {
      if (body.byteLength < MIN_BYTES) return null;
      const key = `${encoding}:${etag}`;
      let out = cache.get(key);
      if (!out) {
        out = encoding === "br"
          ? new Uint8Array(brotliCompressSync(body, {
            params: { [constants.BROTLI_PARAM_QUALITY]: 9 },
          }))
          : new Uint8Array(gzipSync(body, { level: 9 }));
        if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value!);
        cache.set(key, out);
      }
      return out;
    },
  };
}
