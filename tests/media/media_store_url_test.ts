import assert from "node:assert/strict";
import { parseMediaStore } from "../../src/media/media_store_url.ts";

Deno.test("parseMediaStore() reads MEDIA_STORE", async (t) => {
  await t.step("unset, empty or disk: the disk", () => {
    assert.deepEqual(parseMediaStore(undefined), { kind: "disk" });
    assert.deepEqual(parseMediaStore(""), { kind: "disk" });
    assert.deepEqual(parseMediaStore("disk"), { kind: "disk" });
  });

  await t.step("a COS bucket: virtual-hosted, region, encoded secret, prefix", () => {
    assert.deepEqual(
      parseMediaStore(
        "https://AKIDexample:a%2Fb%2Bc@cos.ap-guangzhou.myqcloud.com/media-1250000000/bridge/prod?region=ap-guangzhou",
      ),
      {
        kind: "s3",
        endpoint: "https://cos.ap-guangzhou.myqcloud.com",
        bucket: "media-1250000000",
        prefix: "bridge/prod/",
        region: "ap-guangzhou",
        accessKeyId: "AKIDexample",
        secretAccessKey: "a/b+c",
        pathStyle: false,
        presign: false,
      },
    );
  });

  await t.step("s3:// is https://; MinIO on http with path_style and presign", () => {
    const s3 = parseMediaStore("s3://K:S@s3.amazonaws.com/bucket");
    assert.equal(s3.kind === "s3" && s3.endpoint, "https://s3.amazonaws.com");
    assert.equal(s3.kind === "s3" && s3.region, "us-east-1");
    const minio = parseMediaStore("http://K:S@minio.lan:9000/media?path_style=true&presign=true");
    assert.equal(minio.kind === "s3" && minio.endpoint, "http://minio.lan:9000");
    assert.equal(minio.kind === "s3" && minio.pathStyle, true);
    assert.equal(minio.kind === "s3" && minio.presign, true);
  });

  await t.step("what is wrong is said, and the secret is never repeated", () => {
    const cases: Array<[string, RegExp]> = [
      ["ftp://K:S@host/b", /expected disk, or https:\/\//],
      ["https://host/bucket", /no credentials/],
      ["https://K:TOPSECRET@host/", /bucket "" is not a bucket name/],
      ["https://K:TOPSECRET@host/Bad_Bucket", /not a bucket name/],
      ["https://K:TOPSECRET@host/b1b?pathstyle=true", /unknown parameter "pathstyle"/],
      ["https://K:TOPSECRET@host/b1b?presign=yes", /presign must be true or false/],
      ["https://K:TOPSECRET@host/b1b?region=a%20b", /region "a b" is not a region name/],
    ];
    for (const [raw, message] of cases) {
      assert.throws(() => parseMediaStore(raw), (error: Error) => {
        assert.ok(error instanceof SyntaxError, raw);
        assert.match(error.message, message);
        assert.ok(!error.message.includes("TOPSECRET"), error.message);
        return true;
      });
    }
  });
});
