// The console's files from `static/`: read from disk on each request (they are few and small,
// and an edited file shows at once), served with their type and an ETag, never from outside it;
// HTML pages with their Content-Security-Policy.

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

/** Serves files from `dir`; `name` is relative to it. */
export function createStaticFiles(dir: string, options: { mediaOrigins?: string[] } = {}) {
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
      const headers: Record<string, string> = {
        "content-type": TYPES[name.split(".").pop()!.toLowerCase()] ?? "application/octet-stream",
        etag,
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
      };
      if (name.endsWith(".html")) {
        headers["content-security-policy"] = await contentSecurityPolicy(
          new TextDecoder().decode(body),
          { mediaOrigins: options.mediaOrigins, host: req.headers.get("host") },
        );
      }
      if (req.headers.get("if-none-match") === etag) {
        return new Response(null, { status: 304, headers });
      }
      return new Response(req.method === "HEAD" ? null : body as Uint8Array<ArrayBuffer>, {
        headers,
      });
    },
  };
}
