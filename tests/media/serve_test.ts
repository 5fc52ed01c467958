import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { contentTypeOf, parseRange } from "../../src/media/serve.ts";
import { createUrlSigner } from "../../src/media/signed_url.ts";
import { createDiskStorage, type MediaStorage } from "../../src/media/storage.ts";
import { startMediaServer } from "./_media_tools.ts";

Deno.test("parseRange() reads single byte ranges", () => {
  assert.deepEqual(parseRange("bytes=0-99", 1000), { start: 0, end: 99 });
  assert.deepEqual(parseRange("bytes=900-", 1000), { start: 900, end: 999 });
  assert.deepEqual(parseRange("bytes=-100", 1000), { start: 900, end: 999 });
  assert.deepEqual(parseRange("bytes=-5000", 1000), { start: 0, end: 999 });
  assert.deepEqual(parseRange("bytes=990-2000", 1000), { start: 990, end: 999 });
  assert.deepEqual(parseRange("Bytes = 1-1", 1000), { start: 1, end: 1 });
  assert.equal(parseRange("bytes=1000-", 1000), "unsatisfiable");
  assert.equal(parseRange("bytes=5-2", 1000), "unsatisfiable");
  assert.equal(parseRange("bytes=-0", 1000), "unsatisfiable");
  assert.equal(parseRange("bytes=-", 1000), "unsatisfiable");
  assert.equal(parseRange("bytes=abc", 1000), "unsatisfiable");
  assert.equal(parseRange("bytes=0-", 0), "unsatisfiable");
  assert.equal(parseRange("items=0-5", 1000), null);
  assert.equal(parseRange("bytes=0-1,5-6", 1000), null);
});

Deno.test("contentTypeOf() maps extensions to media types", () => {
  assert.equal(contentTypeOf(`${"a".repeat(64)}.mp3`), "audio/mpeg");
  assert.equal(contentTypeOf(`${"a".repeat(64)}.mp4`), "video/mp4");
  assert.equal(contentTypeOf(`${"a".repeat(64)}.jpg`), "image/jpeg");
  assert.equal(contentTypeOf(`${"a".repeat(64)}.amr`), "audio/amr");
  assert.equal(contentTypeOf(`${"a".repeat(64)}.html`), "application/octet-stream");
});

Deno.test("serveMedia() serves signed media over HTTP", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "serve-test-" });
  const storage = createDiskStorage(dir);
  const signer = createUrlSigner("serve test secret, long enough");
  const server = startMediaServer({ storage, signer });
  const bytes = new Uint8Array(randomBytes(100_000));
  const key = await storage.put(bytes, "mp4");
  const url = `${server.base}/media/${key}?${signer.query(key)}`;

  await t.step("GET gives the bytes with type, length and caching headers", async () => {
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("Content-Type"), "video/mp4");
    assert.equal(res.headers.get("Content-Length"), "100000");
    // Cached as long as the URL is valid (a day by default, expiries rounded up to the hour).
    const maxAge = Number(
      /^private, max-age=(\d+), immutable$/.exec(res.headers.get("Cache-Control") ?? "")?.[1],
    );
    assert.ok(maxAge > 23 * 3600 && maxAge <= 25 * 3600, String(maxAge));
    assert.equal(res.headers.get("ETag"), `"${key}"`);
    assert.equal(res.headers.get("Accept-Ranges"), "bytes");
    assert.equal(res.headers.get("X-Content-Type-Options"), "nosniff");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
  });

  await t.step("a byte range is 206 with Content-Range and just those bytes", async () => {
    const res = await fetch(url, { headers: { Range: "bytes=1000-1999" } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get("Content-Range"), "bytes 1000-1999/100000");
    assert.equal(res.headers.get("Content-Length"), "1000");
    assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes.subarray(1000, 2000));
  });

  await t.step("open-ended and suffix ranges, as players send them", async () => {
    const open = await fetch(url, { headers: { Range: "bytes=99990-" } });
    assert.equal(open.status, 206);
    assert.equal(open.headers.get("Content-Range"), "bytes 99990-99999/100000");
    assert.deepEqual(new Uint8Array(await open.arrayBuffer()), bytes.subarray(99_990));
    const suffix = await fetch(url, { headers: { Range: "bytes=-10" } });
    assert.equal(suffix.status, 206);
    assert.deepEqual(new Uint8Array(await suffix.arrayBuffer()), bytes.subarray(99_990));
  });

  await t.step("a range past the end is 416 with the size", async () => {
    const res = await fetch(url, { headers: { Range: "bytes=100000-100010" } });
    assert.equal(res.status, 416);
    assert.equal(res.headers.get("Content-Range"), "bytes */100000");
    await res.body?.cancel();
  });

  await t.step("If-Range with another ETag asks for the whole file", async () => {
    const res = await fetch(url, { headers: { Range: "bytes=0-9", "If-Range": '"other"' } });
    assert.equal(res.status, 200);
    assert.equal((await res.arrayBuffer()).byteLength, 100_000);
    const same = await fetch(url, { headers: { Range: "bytes=0-9", "If-Range": `"${key}"` } });
    assert.equal(same.status, 206);
    assert.equal((await same.arrayBuffer()).byteLength, 10);
  });

  await t.step("HEAD gives the headers and no body", async () => {
    const res = await fetch(url, { method: "HEAD" });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("Content-Length"), "100000");
    assert.equal(res.headers.get("Content-Type"), "video/mp4");
    assert.equal((await res.arrayBuffer()).byteLength, 0);
    const ranged = await fetch(url, { method: "HEAD", headers: { Range: "bytes=0-99" } });
    assert.equal(ranged.status, 206);
    assert.equal(ranged.headers.get("Content-Range"), "bytes 0-99/100000");
    await ranged.body?.cancel();
  });

  await t.step("If-None-Match with the ETag is 304", async () => {
    const res = await fetch(url, { headers: { "If-None-Match": `"${key}"` } });
    assert.equal(res.status, 304);
    await res.body?.cancel();
  });

  await t.step("a tampered, missing or borrowed token is 403", async () => {
    const query = new URLSearchParams(signer.query(key));
    const token = query.get("t")!;
    const e = query.get("e")!;
    const flipped = token[5] === "A" ? "B" : "A";
    const otherKey = await storage.put(new Uint8Array([1, 2, 3]), "jpg");
    const tampered = [
      `${server.base}/media/${key}?e=${e}&t=${token.slice(0, 5)}${flipped}${token.slice(6)}`,
      `${server.base}/media/${key}`,
      `${server.base}/media/${key}?e=${e}&t=`,
      `${server.base}/media/${key}?t=${token}`,
      `${server.base}/media/${key}?e=${Number(e) + 3600}&t=${token}`,
      `${server.base}/media/${otherKey}?e=${e}&t=${token}`,
      `${server.base}/media/${key.replace(".mp4", ".jpg")}?e=${e}&t=${token}`,
    ];
    for (const bad of tampered) {
      const res = await fetch(bad);
      assert.equal(res.status, 403, bad);
      assert.equal(res.headers.get("Cache-Control"), "no-store");
      await res.body?.cancel();
    }
  });

  await t.step("a signed key that is not stored is 404", async () => {
    const missing = `${"0".repeat(64)}.mp4`;
    const res = await fetch(`${server.base}/media/${missing}?${signer.query(missing)}`);
    assert.equal(res.status, 404);
    await res.body?.cancel();
  });

  await t.step("other methods are 405 with Allow", async () => {
    const res = await fetch(url, { method: "POST", body: "x" });
    assert.equal(res.status, 405);
    assert.equal(res.headers.get("Allow"), "GET, HEAD");
    await res.body?.cancel();
  });

  await t.step("a client that hangs up mid-file leaves nothing open", async () => {
    // Counts the file streams the server has open: each must end when its client goes.
    let open = 0;
    const counting: MediaStorage = {
      ...storage,
      async open(key, range) {
        const source = await storage.open(key, range);
        if (!source) return source;
        open++;
        const reader = source.getReader();
        let ended = false;
        const end = () => {
          if (!ended) open--;
          ended = true;
        };
        return new ReadableStream<Uint8Array>({
          async pull(controller) {
            const { done, value } = await reader.read();
            if (done) {
              end();
              controller.close();
            } else controller.enqueue(value);
          },
          async cancel(reason) {
            end();
            await reader.cancel(reason);
          },
        });
      },
    };
    const watched = startMediaServer({ storage: counting, signer });
    try {
      const big = new Uint8Array(randomBytes(3_000_000));
      const bigKey = await storage.put(big, "mp4");
      const controller = new AbortController();
      const res = await fetch(`${watched.base}/media/${bigKey}?${signer.query(bigKey)}`, {
        signal: controller.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      assert.equal(open, 1, "the file is being sent");
      controller.abort();
      await reader.closed.catch(() => {});
      for (let i = 0; i < 200 && open > 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(open, 0, "the server closed the file when the client hung up");
    } finally {
      await watched.close();
    }
  });

  await server.close();
  await Deno.remove(dir, { recursive: true });
});
