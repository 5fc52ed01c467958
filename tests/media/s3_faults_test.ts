// A bucket that fails now and then: a real S3-protocol server (s3rver) behind a fetch that turns
// the next requests of a method into a 500 or a network error, as a store's hiccup does.
// docs/media_storage.md promises a 5xx or a network error is tried once more, and an agent's
// browser is told plainly when the store cannot give a file.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { parseMediaStore, type S3StoreConfig } from "../../src/media/media_store_url.ts";
import { createS3Client } from "../../src/media/s3_client.ts";
import { createS3Storage } from "../../src/media/s3_storage.ts";
import { serveMedia } from "../../src/media/serve.ts";
import { createUrlSigner } from "../../src/media/signed_url.ts";
import { startS3Server } from "../helpers/s3_server.ts";

type Fault = "500" | "network";

/** A fetch that fails the next requests queued for a method, then passes them on. */
function faultyFetch() {
  const queued: Array<{ method: string; fault: Fault }> = [];
  const seen: string[] = [];
  const doFetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const req = new Request(input, init);
    seen.push(req.method);
    const at = queued.findIndex((q) => q.method === req.method);
    if (at >= 0) {
      const [{ fault }] = queued.splice(at, 1) as [{ method: string; fault: Fault }];
      await req.body?.cancel();
      if (fault === "network") throw new TypeError("error sending request: connection reset");
      return new Response("<Error><Code>InternalError</Code></Error>", { status: 500 });
    }
    return await fetch(req);
  };
  return {
    fetch: doFetch as typeof fetch,
    fail(method: string, fault: Fault) {
      queued.push({ method, fault });
    },
    seen,
  };
}

Deno.test("createS3Storage() rides out a store that fails once", async (t) => {
  const s3 = await startS3Server(["media"]);
  try {
    const faults = faultyFetch();
    const storage = createS3Storage({
      client: createS3Client(parseMediaStore(s3.mediaStore("media")) as S3StoreConfig, {
        fetch: faults.fetch,
      }),
      prefix: "",
      presign: false,
    });
    const signer = createUrlSigner("a-secret-of-enough-bytes");
    const pngLike = () => {
      const bytes = new Uint8Array(randomBytes(1000));
      bytes.set([0x89, 0x50, 0x4e, 0x47]);
      return bytes;
    };

    await t.step("a PUT answered 500 once is tried again", async () => {
      faults.fail("PUT", "500");
      const key = await storage.put(pngLike(), "png");
      assert.ok((await s3.objects("media")).includes(key));
    });

    await t.step("a HEAD before the PUT answered 500 does not cost the file", async () => {
      faults.fail("HEAD", "500");
      const key = await storage.put(pngLike(), "png");
      assert.ok((await s3.objects("media")).includes(key));
    });

    await t.step("a HEAD before the PUT lost to the network does not cost the file", async () => {
      faults.fail("HEAD", "network");
      const key = await storage.put(pngLike(), "png");
      assert.ok((await s3.objects("media")).includes(key));
    });

    await t.step("a store that fails while serving is a 502 that says so", async () => {
      const key = await storage.put(pngLike(), "png");
      const cold = createS3Storage({
        client: createS3Client(parseMediaStore(s3.mediaStore("media")) as S3StoreConfig, {
          fetch: faults.fetch,
        }),
        prefix: "",
        presign: false,
      });
      const query = new URLSearchParams(signer.query(key));
      for (const method of ["HEAD", "GET"]) {
        faults.fail(method, method === "HEAD" ? "network" : "500");
        const res = await serveMedia(
          new Request(`http://bridge/media/${key}`, { method: "GET" }),
          key,
          query,
          { storage: method === "HEAD" ? cold : storage, signer },
        );
        const body = await res.text();
        assert.equal(res.status, 502, body);
        assert.match(body, /media store/);
        assert.equal(res.headers.get("cache-control"), "no-store");
      }
    });
  } finally {
    await s3.close();
  }
});

Deno.test("createS3Storage() forgets the size of an object gone from the bucket", async () => {
  const s3 = await startS3Server(["media"]);
  try {
    const config = parseMediaStore(s3.mediaStore("media")) as S3StoreConfig;
    const storage = createS3Storage({ client: createS3Client(config), prefix: "", presign: false });
    // Another instance (or an operator) on the same bucket.
    const other = createS3Storage({ client: createS3Client(config), prefix: "", presign: false });
    const bytes = new Uint8Array(randomBytes(500));
    bytes.set([0xff, 0xd8, 0xff]);
    const key = await storage.put(bytes, "jpg");
    await other.remove!(key);
    assert.equal(await storage.open(key), null, "the object is gone");
    // The same picture sent again must be stored again, not taken for present by a stale size.
    assert.equal(await storage.put(bytes, "jpg"), key);
    assert.deepEqual(await s3.objects("media"), [key]);
    assert.equal(await storage.stat(key).then((s) => s?.size), bytes.length);
  } finally {
    await s3.close();
  }
});
