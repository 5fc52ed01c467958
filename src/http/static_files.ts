// The console's files from `static/`: read from disk on each request (they are few and small,
// and an edited file shows at once), served with their type and an ETag, compressed when the
// client accepts it, never from outside it; HTML pages with their Content-Security-Policy.

import { createCompressor, negotiateEncoding } from "./compression.ts";
import { contentSecurityPolicy } from "./csp.ts";
import { HttpError } from "./http_error.ts";

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  png: "image/png",
  ico: "image/x-icon",
  json: "application/json; charset=utf-8",
};

/** Text types that compress well. */
const COMPRESSIBLE = new Set(["html", "js", "css", "svg", "json"]);

/** How long a browser keeps a file: a vendored file's name carries its version, so it never
 * changes; every other file is revalidated with its ETag (a 304, no body, when unchanged). */
function cacheControlOf(name: string): string {
  return name.startsWith("vendor/") ? "public, max-age=31536000, immutable" : "no-cache";
}

/** Serves files from `dir`; `name` is relative to it. */
export function createStaticFiles(dir: string, options: { mediaOrigins?: string[] } = {}) {
  const compressor = createCompressor();
  return {
    async serve(req: Request, name: string): Promise<Response> {
      if (!/^[\w-]+(\/[\w-]+)*\.[a-z0-9]+$/i.test(name)) throw new HttpError(404, "No such file");
      let body: Uint8Array;
      try {
        body = await Deno.readFile(`${dir.replace(/\/$/, "")}/${name}`);
      } catch {
        throw new HttpError(404, `No such file: ${name}`);
      }
      const hash = await crypto.subtle.digest("SHA-1", body as Uint8Array<ArrayBuffer>);
      const etag = `"${
        [...new Uint8Array(hash)].slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("")
      }"`;
      const ext = name.split(".").pop()!.toLowerCase();
      const encoding = COMPRESSIBLE.has(ext)
        ? negotiateEncoding(req.headers.get("accept-encoding"))
        : null;
      const compressed = encoding ? compressor.compress(body, encoding, etag) : null;
      // Each encoding is its own representation, with its own ETag (RFC 9110, 8.8.3).
      const tag = compressed ? `${etag.slice(0, -1)}-${encoding}"` : etag;
      const headers: Record<string, string> = {
        "content-type": TYPES[ext] ?? "application/octet-stream",
        etag: tag,
        "cache-control": cacheControlOf(name),
        "x-content-type-options": "nosniff",
      };
      if (COMPRESSIBLE.has(ext)) headers["vary"] = "accept-encoding";
      if (compressed) headers["content-encoding"] = encoding!;
      if (ext === "html") {
        headers["content-security-policy"] = await contentSecurityPolicy(
          new TextDecoder().decode(body),
          { mediaOrigins: options.mediaOrigins, host: req.headers.get("host") },
        );
      }
      if (req.headers.get("if-none-match") === tag) {
        return new Response(null, { status: 304, headers });
      }
      const out = compressed ?? body;
      return new Response(req.method === "HEAD" ? null : out as Uint8Array<ArrayBuffer>, {
        headers,
      });
    },
  };
}
