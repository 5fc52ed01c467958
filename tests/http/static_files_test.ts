// The console's files: Brotli or gzip as the client accepts, an ETag per encoding that answers
// 304, caching headers, and the favicon, through the real server's handler.

import assert from "node:assert/strict";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { negotiateEncoding } from "../../src/http/compression.ts";
import { startBridge } from "../helpers/server.ts";

Deno.test("negotiateEncoding() takes Brotli first, honours q=0 and *", () => {
  assert.equal(negotiateEncoding("gzip, deflate, br, zstd"), "br");
  assert.equal(negotiateEncoding("gzip"), "gzip");
  assert.equal(negotiateEncoding("br;q=0, gzip;q=0.5"), "gzip");
  assert.equal(negotiateEncoding("identity"), null);
  assert.equal(negotiateEncoding("*"), "br");
  assert.equal(negotiateEncoding(null), null);
});

Deno.test("static files are compressed, revalidated and cached", async (t) => {
  const server = await startBridge();
  const original = await Deno.readFile(new URL("../../static/console.js", import.meta.url));
  // The handler itself: fetch() would decode the body before the test could weigh it.
  const get = (path: string, headers: Record<string, string>) =>
    server.bridge.handler(new Request(`${server.base}${path}`, { headers }));
  try {
    await t.step("Brotli when accepted, the same bytes once decoded", async () => {
      const res = await get("/static/console.js", { "accept-encoding": "br" });
      assert.equal(res.headers.get("content-encoding"), "br");
      assert.equal(res.headers.get("vary"), "accept-encoding");
      const raw = new Uint8Array(await res.arrayBuffer());
      assert.ok(raw.byteLength < original.byteLength / 3, `${raw.byteLength} bytes`);
      assert.deepEqual(new Uint8Array(brotliDecompressSync(raw)), original);
    });
    await t.step("gzip when only gzip is accepted", async () => {
      const res = await get("/static/console.css", { "accept-encoding": "gzip" });
      assert.equal(res.headers.get("content-encoding"), "gzip");
      const raw = new Uint8Array(await res.arrayBuffer());
      const css = await Deno.readFile(new URL("../../static/console.css", import.meta.url));
      assert.deepEqual(new Uint8Array(gunzipSync(raw)), css);
    });
    await t.step("each encoding has its ETag, and a matching one is a 304", async () => {
      const br = await get("/static/console.js", { "accept-encoding": "br" });
      await br.body?.cancel();
      const plain = await get("/static/console.js", { "accept-encoding": "identity" });
      await plain.body?.cancel();
      const tag = br.headers.get("etag")!;
      assert.notEqual(tag, plain.headers.get("etag"));
      assert.equal(br.headers.get("cache-control"), "no-cache");
      const again = await get("/static/console.js", {
        "accept-encoding": "br",
        "if-none-match": tag,
      });
      assert.equal(again.status, 304);
      await again.body?.cancel();
    });
    await t.step("the vendored library, named by its version, is cached for good", async () => {
      const res = await get("/static/vendor/preact-htm-3-1-1.js", { "accept-encoding": "br" });
      assert.equal(res.headers.get("cache-control"), "public, max-age=31536000, immutable");
      assert.equal(res.headers.get("content-encoding"), "br");
      await res.body?.cancel();
    });
    await t.step("a favicon, at /favicon.ico too", async () => {
      for (const path of ["/static/favicon.svg", "/favicon.ico"]) {
        const res = await get(path, {});
        assert.equal(res.status, 200);
        assert.equal(res.headers.get("content-type"), "image/svg+xml");
        assert.match(await res.text(), /^<svg/);
      }
    });
  } finally {
    await server.close();
  }
});
