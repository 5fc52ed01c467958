// The console's files from `static/`: read from disk (once, when `cache` is set), served with their type and an ETag, and
// never from outside that folder.

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

/** Serves files from `dir`; `name` is relative to it. */
export function createStaticFiles(dir: string, options: { cache?: boolean } = {}) {
  const cache = new Map<string, { body: Uint8Array; etag: string }>();
  return {
    async serve(req: Request, name: string): Promise<Response> {
      if (!/^[\w-]+(\/[\w-]+)*\.[a-z0-9]+$/i.test(name)) throw new HttpError(404, "No such file");
      let file = cache.get(name);
      if (!file) {
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
        file = { body, etag };
        if (options.cache) cache.set(name, file);
      }
      const headers = {
        "content-type": TYPES[name.split(".").pop()!.toLowerCase()] ?? "application/octet-stream",
        etag: file.etag,
        "cache-control": "no-cache",
      };
      if (req.headers.get("if-none-match") === file.etag) {
        return new Response(null, { status: 304, headers });
      }
      return new Response(req.method === "HEAD" ? null : file.body as Uint8Array<ArrayBuffer>, {
        headers,
      });
    },
  };
}
