// The bridge's S3 requests signed as AWS's own documentation signs its examples: s3rver checks
// only the key id, so the signature itself is checked here, against material we did not write.

import assert from "node:assert/strict";
import { createS3Client } from "../../src/media/s3_client.ts";
import { parseMediaStore } from "../../src/media/media_store_url.ts";

const examples = JSON.parse(
  await Deno.readTextFile(new URL("../fixtures/s3/sigv4_examples.json", import.meta.url)),
);
const c = examples.credentials;
const at = Date.UTC(2013, 4, 24, 0, 0, 0);

/** The example bucket as MEDIA_STORE would name it (virtual-hosted, like AWS's examples). */
function exampleClient(capture: Request[]) {
  const config = parseMediaStore(
    `https://${c.accessKeyId}:${
      encodeURIComponent(c.secretAccessKey)
    }@s3.amazonaws.com/${c.bucket}?region=${c.region}`,
  );
  return createS3Client(config as Exclude<typeof config, { kind: "disk" }>, {
    now: () => at,
    fetch: (input) => {
      capture.push(input as Request);
      return Promise.resolve(new Response(null, { status: 200 }));
    },
  });
}

function authorization(req: Request) {
  const header = req.headers.get("authorization") ?? "";
  return {
    credential: /Credential=([^,]+)/.exec(header)?.[1],
    signedHeaders: /SignedHeaders=([^,]+)/.exec(header)?.[1],
    signature: /Signature=([0-9a-f]+)/.exec(header)?.[1],
  };
}

Deno.test("createS3Client() signs as AWS's SigV4 examples do", async (t) => {
  await t.step("GET Object with a Range: AWS's signature, virtual-hosted URL", async () => {
    const seen: Request[] = [];
    const ex = examples.get_object;
    await exampleClient(seen).request("GET", ex.key, { headers: ex.headers });
    const req = seen[0]!;
    assert.equal(req.url, "https://examplebucket.s3.amazonaws.com/test.txt");
    assert.equal(req.headers.get("x-amz-date"), c.datetime);
    assert.deepEqual(authorization(req), {
      credential: `${c.accessKeyId}/20130524/us-east-1/s3/aws4_request`,
      signedHeaders: ex.signed_headers,
      signature: ex.signature,
    });
  });

  await t.step("PUT Object with a key that needs encoding ($)", async () => {
    const seen: Request[] = [];
    const ex = examples.put_object;
    await exampleClient(seen).request("PUT", ex.key, { headers: ex.headers, body: ex.body });
    const req = seen[0]!;
    assert.equal(req.url, "https://examplebucket.s3.amazonaws.com/test%24file.text");
    assert.equal(authorization(req).signedHeaders, ex.signed_headers);
    assert.equal(authorization(req).signature, ex.signature);
  });

  await t.step("a presigned GET URL: AWS's signature for 86400 s", async () => {
    const ex = examples.presigned_get;
    const url = new URL(await exampleClient([]).presign(ex.key, ex.expires_s));
    const expected = new URL(ex.url);
    assert.equal(url.origin + url.pathname, expected.origin + expected.pathname);
    const params = (u: URL) => Object.fromEntries([...u.searchParams].sort());
    assert.deepEqual(params(url), params(expected));
  });

  await t.step("path-style puts the bucket in the path", async () => {
    const seen: Request[] = [];
    const config = parseMediaStore("http://K:S@127.0.0.1:9000/media/bridge?path_style=true");
    assert.equal(config.kind, "s3");
    const client = createS3Client(config as Exclude<typeof config, { kind: "disk" }>, {
      fetch: (input) => {
        seen.push(input as Request);
        return Promise.resolve(new Response(null));
      },
    });
    await client.request("HEAD", "bridge/ab.jpg");
    assert.equal(seen[0]!.url, "http://127.0.0.1:9000/media/bridge/ab.jpg");
  });
});
