// Issue 14, item 11: /readyz says "not ready" when DATA_DIR's disk is full, and ready again
// once there is room. DATA_DIR is a real 2 MiB tmpfs (this needs root: `mount -t tmpfs`).

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";

async function mountTinyDisk(): Promise<string | null> {
  const dir = await Deno.makeTempDir({ prefix: "bridge-tiny-disk-" });
  const out = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=2m", "tmpfs", dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.success) return dir;
  await Deno.remove(dir);
  // Under CI a missing capability is a failure, not a skip.
  if (Deno.env.get("CI") === "true") {
    throw new Error(`Cannot mount a tmpfs: ${new TextDecoder().decode(out.stderr)}`);
  }
  return null;
}

async function fill(path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true });
  const chunk = new Uint8Array(64 * 1024);
  try {
    while (true) await file.write(chunk);
  } catch (error) {
    if ((error as { code?: string }).code !== "ENOSPC") throw error;
  } finally {
    file.close();
  }
}

async function readyz(base: string) {
  const res = await fetch(`${base}/readyz`);
  return { status: res.status, body: await res.json() };
}

Deno.test("/readyz is 503 while DATA_DIR's disk is full", async (t) => {
  const disk = await mountTinyDisk();
  if (disk === null) return; // not root, outside CI
  const bridge = await startBridge({ env: { DATA_DIR: disk } });
  try {
    await t.step("ready with room on the disk", async () => {
      assert.deepEqual(await readyz(bridge.base), { status: 200, body: { status: "ready" } });
    });
    await t.step("503 once the disk is full", async () => {
      await fill(`${disk}/filler`);
      // The answer is kept 2 s; wait it out rather than race it.
      await new Promise((r) => setTimeout(r, 2100));
      assert.deepEqual(await readyz(bridge.base), {
        status: 503,
        body: { status: "data directory is full" },
      });
    });
    await t.step("ready again once there is room", async () => {
      await Deno.remove(`${disk}/filler`);
      await new Promise((r) => setTimeout(r, 2100));
      assert.equal((await readyz(bridge.base)).status, 200);
    });
  } finally {
    await bridge.close();
    await new Deno.Command("umount", { args: [disk] }).output();
    await Deno.remove(disk, { recursive: true }).catch(() => {});
  }
});
