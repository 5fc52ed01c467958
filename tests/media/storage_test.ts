import assert from "node:assert/strict";
import { createHash, randomBytes as nodeRandomBytes } from "node:crypto";
import { createDiskStorage, isMediaKey, mediaKeyOf } from "../../src/media/storage.ts";

function randomBytes(n: number): Uint8Array {
  return new Uint8Array(nodeRandomBytes(n));
}

async function readAll(stream: ReadableStream<Uint8Array> | null): Promise<Uint8Array> {
  assert.ok(stream, "expected a stream");
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function listFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) {
      for (const sub of await listFiles(`${dir}/${entry.name}`)) names.push(`${entry.name}/${sub}`);
    } else names.push(entry.name);
  }
  return names.sort();
}

Deno.test("createDiskStorage() stores content-addressed files", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "storage-test-" });
  const storage = createDiskStorage(`${dir}/media`);
  const bytes = randomBytes(200_000);
  const sha = createHash("sha256").update(bytes).digest("hex");

  await t.step("put() returns sha256hex.ext and the file holds the bytes", async () => {
    const key = await storage.put(bytes, "mp4");
    assert.equal(key, `${sha}.mp4`);
    assert.ok(isMediaKey(key));
    assert.equal(mediaKeyOf(bytes, "mp4"), key);
    assert.deepEqual(await Deno.readFile(storage.path!(key)), bytes);
    assert.deepEqual(await listFiles(`${dir}/media`), [`${sha.slice(0, 2)}/${sha}.mp4`]);
  });

  await t.step("the same content twice, even at once, is one file and no temp file", async () => {
    assert.equal(await storage.put(bytes, "mp4"), `${sha}.mp4`);
    const fresh = randomBytes(50_000);
    const freshKey = mediaKeyOf(fresh, "jpg");
    const keys = await Promise.all([storage.put(fresh, "jpg"), storage.put(fresh, "jpg")]);
    assert.deepEqual(keys, [freshKey, freshKey]);
    assert.deepEqual(await Deno.readFile(storage.path!(freshKey)), fresh);
    const expected = [`${sha.slice(0, 2)}/${sha}.mp4`, `${freshKey.slice(0, 2)}/${freshKey}`];
    assert.deepEqual(await listFiles(`${dir}/media`), expected.sort());
    await Deno.remove(storage.path!(freshKey));
  });

  await t.step("stat() gives the size; unknown keys give null", async () => {
    assert.deepEqual(await storage.stat(`${sha}.mp4`), { size: bytes.length });
    assert.equal(await storage.stat(`${"0".repeat(64)}.mp4`), null);
    assert.equal(await storage.stat(`${sha}.mp3`), null);
  });

  await t.step("open() streams the whole file or an inclusive range", async () => {
    assert.deepEqual(await readAll(await storage.open(`${sha}.mp4`)), bytes);
    const range = await readAll(await storage.open(`${sha}.mp4`, { start: 70_000, end: 140_001 }));
    assert.deepEqual(range, bytes.subarray(70_000, 140_002));
    const last = await readAll(await storage.open(`${sha}.mp4`, { start: 199_999, end: 199_999 }));
    assert.deepEqual(last, bytes.subarray(199_999));
    assert.equal(await storage.open(`${"0".repeat(64)}.mp4`), null);
  });

  await t.step("a cancelled stream closes its file (the resource sanitizer checks)", async () => {
    const stream = await storage.open(`${sha}.mp4`);
    assert.ok(stream);
    const reader = stream.getReader();
    const first = await reader.read();
    assert.equal(first.done, false);
    await reader.cancel();
  });

  await t.step("open() refuses a range outside the file", async () => {
    await assert.rejects(storage.open(`${sha}.mp4`, { start: 300_000, end: 300_010 }), RangeError);
  });

  await t.step("keys that could leave the directory are refused", async () => {
    for (const key of ["../etc/passwd", `${sha}.mp4/../../x`, `../${sha}.mp4`, `${sha}.MP4`, ""]) {
      assert.equal(isMediaKey(key), false, key);
      assert.equal(await storage.stat(key), null, key);
      assert.equal(await storage.open(key), null, key);
      assert.throws(() => storage.path!(key), TypeError, key);
    }
    await assert.rejects(storage.put(bytes, "../x"), TypeError);
    await assert.rejects(storage.put(bytes, ""), TypeError);
  });

  await t.step("an empty file is stored and streams as empty", async () => {
    const key = await storage.put(new Uint8Array(0), "bin");
    assert.deepEqual(await storage.stat(key), { size: 0 });
    assert.equal((await readAll(await storage.open(key))).length, 0);
  });

  await Deno.remove(dir, { recursive: true });
});
