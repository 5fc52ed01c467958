// What an attached file is, read from its bytes: the console trusts them over its name.

import assert from "node:assert/strict";
import { formatSize, kindOf, sniffType, uploadTypeOf } from "../../static/console/upload_types.js";

const file = (bytes: number[] | string, type = "") =>
  new File([typeof bytes === "string" ? bytes : new Uint8Array(bytes)], "f", { type });

Deno.test("sniffType() reads pictures, voice and video from their first bytes", async () => {
  assert.equal(await sniffType(file([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10])), "image/png");
  assert.equal(await sniffType(file([0xff, 0xd8, 0xff, 0xe0])), "image/jpeg");
  assert.equal(await sniffType(file("GIF89a")), "image/gif");
  assert.equal(await sniffType(file("#!AMR\n")), "audio/amr");
  assert.equal(await sniffType(file("ID3\u0004")), "audio/mpeg");
  assert.equal(await sniffType(file("\u0000\u0000\u0000\u0018ftypisom")), "video/mp4");
  assert.equal(await sniffType(file("hello")), null);
});

Deno.test("uploadTypeOf() does not pass text named .png as a picture", async () => {
  assert.equal(await uploadTypeOf(file("my notes", "image/png")), "application/octet-stream");
  assert.equal(await uploadTypeOf(file("%PDF-1.7", "application/pdf")), "application/pdf");
  assert.equal(await uploadTypeOf(file("GIF89a", "text/plain")), "image/gif");
  assert.equal(kindOf("audio/mpeg"), "voice");
  assert.equal(kindOf("image/webp"), "image");
  assert.equal(kindOf("application/pdf"), "file");
  assert.deepEqual([formatSize(900), formatSize(12_345), formatSize(3_500_000)], [
    "900 B",
    "12 KB",
    "3.3 MB",
  ]);
});
