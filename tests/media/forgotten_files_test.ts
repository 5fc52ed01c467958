// The deletion of a forgotten follower's files against the puts around it: a job storing the same
// bytes for another follower, a put during the removal, an agent's upload waiting for its reply.

import assert from "node:assert/strict";
import { createForgottenFiles, mediaKeysIn } from "../../src/media/forgotten_files.ts";
import { mediaKeyOf, type MediaStorage } from "../../src/media/storage.ts";

/** Storage in a Map; `onRemove` runs inside each removal, before the file goes. */
function mapStorage(onRemove: (key: string) => Promise<void> = () => Promise.resolve()) {
  const files = new Map<string, Uint8Array>();
  const storage: MediaStorage = {
    put(bytes, ext) {
      const key = mediaKeyOf(bytes, ext);
      if (!files.has(key)) files.set(key, bytes);
      return Promise.resolve(key);
    },
    stat: (key) => Promise.resolve(files.has(key) ? { size: files.get(key)!.length } : null),
    open: () => Promise.resolve(null),
    async remove(key) {
      await onRemove(key);
      files.delete(key);
    },
  };
  return { files, storage };
}

Deno.test("createForgottenFiles() decides each key against the puts around it", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "forgotten-files-" });
  const bytes = new TextEncoder().encode("a picture two followers sent");
  const key = mediaKeyOf(bytes, "png");
  try {
    await t.step("mediaKeysIn() finds every key in the bridge's media URLs", () => {
      const text = JSON.stringify({
        media_path: `http://h/media/${key}?e=1&t=x`,
        thumb_path: `https://h/p/media/${"b".repeat(64)}.jpg?t=y`,
        content: `not a URL: ${"c".repeat(64)}.png`,
      });
      assert.deepEqual(mediaKeysIn(text), [key, `${"b".repeat(64)}.jpg`]);
    });

    await t.step(
      "a job running at the sweep stores the file for another follower: kept",
      async () => {
        const { files, storage } = mapStorage();
        let named = false;
        const forgotten = createForgottenFiles({
          dir: `${dir}/a`,
          storage,
          named: () => Promise.resolve(new Set(named ? [key] : [])),
          // The job puts while the sweep waits for it (its put must not wait for the sweep),
          // then writes its history.
          settled: async () => {
            await guarded.put(bytes, "png");
            named = true;
          },
          now: Date.now,
        });
        const guarded = forgotten.guard(storage);
        await storage.put(bytes, "png");
        await forgotten.remember([key]);
        await forgotten.sweep();
        assert.ok(files.has(key));
        assert.deepEqual([...Deno.readDirSync(`${dir}/a`)], []);
        await forgotten.stop();
      },
    );

    await t.step("a put begun after the sweep's mark keeps the file for the next try", async () => {
      const { files, storage } = mapStorage();
      const forgotten = createForgottenFiles({
        dir: `${dir}/b`,
        storage,
        named: () => Promise.resolve(new Set()),
        settled: () => guarded.put(bytes, "png").then(() => {}),
        now: Date.now,
      });
      const guarded = forgotten.guard(storage);
      await storage.put(bytes, "png");
      await forgotten.remember([key]);
      await forgotten.sweep();
      assert.ok(files.has(key), "its history is not written yet");
      const [record] = [...Deno.readDirSync(`${dir}/b`)];
      assert.deepEqual(JSON.parse(Deno.readTextFileSync(`${dir}/b/${record!.name}`)), {
        keys: [key],
      });
      await forgotten.stop();
    });

    await t.step("a put while the file is being removed writes it again", async () => {
      let putDuringRemoval: Promise<string> | undefined;
      const { files, storage } = mapStorage(async () => {
        putDuringRemoval = guarded.put(bytes, "png");
        await new Promise((r) => setTimeout(r, 0));
      });
      const forgotten = createForgottenFiles({
        dir: `${dir}/c`,
        storage,
        named: () => Promise.resolve(new Set()),
        settled: () => Promise.resolve(),
        now: Date.now,
      });
      const guarded = forgotten.guard(storage);
      await storage.put(bytes, "png");
      await forgotten.remember([key]);
      await forgotten.sweep();
      assert.equal(await putDuringRemoval, key);
      assert.ok(files.has(key), "the put's file is there after it returned");
      await forgotten.stop();
    });

    await t.step("an agent's upload is kept for its reply, then goes", async () => {
      const { files, storage } = mapStorage();
      let now = 1_000_000;
      const forgotten = createForgottenFiles({
        dir: `${dir}/d`,
        storage,
        named: () => Promise.resolve(new Set()),
        settled: () => Promise.resolve(),
        now: () => now,
      });
      forgotten.uploaded(key);
      await storage.put(bytes, "png");
      await forgotten.remember([key]);
      await forgotten.sweep();
      assert.ok(files.has(key));
      now += 2 * 3600_000;
      await forgotten.sweep();
      assert.ok(!files.has(key));
      assert.deepEqual([...Deno.readDirSync(`${dir}/d`)], []);
      await forgotten.stop();
    });

    // 100 revokes at once were 100 scans of every history, one after the other (SQLite,
    // 200,000 rows and 20 keys: 0.6 to 0.9 s each), and the last follower's files waited for all.
    await t.step(
      "a flood of forgets is one look at the histories, its files all gone",
      async () => {
        const { files, storage } = mapStorage();
        const looks: number[] = [];
        let now = 1_000_000;
        const forgotten = createForgottenFiles({
          dir: `${dir}/e`,
          storage,
          named: (keys) => {
            looks.push(keys.length);
            return Promise.resolve(new Set(keys.filter((k) => k.startsWith(shared.slice(0, 64)))));
          },
          settled: () => Promise.resolve(),
          now: () => now++,
        });
        const shared = await storage.put(new TextEncoder().encode("shared"), "png");
        const own: string[] = [];
        for (let i = 0; i < 30; i++) {
          own.push(await storage.put(new TextEncoder().encode(`follower ${i}`), "png"));
          await forgotten.remember([own[i]!, shared]);
        }
        await forgotten.sweep();
        assert.deepEqual(looks, [31]);
        assert.deepEqual(own.filter((k) => files.has(k)), []);
        assert.ok(files.has(shared), "another history names it");
        assert.deepEqual([...Deno.readDirSync(`${dir}/e`)], []);
        await forgotten.stop();
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
