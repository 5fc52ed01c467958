// Issue 14, item 11: /readyz says "not ready" when DATA_DIR's disk is full, and ready again
// once there is room; on the default store WeChat's callbacks are answered 503 meanwhile (it
// retries them) and the first retry once there is room is taken. DATA_DIR is a real tmpfs of a
// few MiB (this needs root: `mount -t tmpfs`).

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

async function mountTinyDisk(size = "2m"): Promise<string | null> {
  const dir = await Deno.makeTempDir({ prefix: "bridge-tiny-disk-" });
  const out = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (out.success) return dir;
  await Deno.remove(dir);
  const why = `Cannot mount a tmpfs: ${new TextDecoder().decode(out.stderr).trim()}`;
  // Under CI a missing capability is a failure, not a skip.
  if (Deno.env.get("CI") === "true") throw new Error(why);
  // deno-lint-ignore no-console
  console.log(`Skipping the full-disk test: ${why} (it needs root)`);
  return null;
}

/** Fills the disk to its last byte (smaller and smaller writes once a large one finds no room). */
async function fill(path: string): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true });
  try {
    for (let size = 64 * 1024; size >= 1; size >>= 1) {
      const chunk = new Uint8Array(size);
      try {
        while (true) await file.write(chunk);
      } catch (error) {
        if ((error as { code?: string }).code !== "ENOSPC") throw error;
      }
    }
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

/** WeChat's callbacks on `store` (a STORE value) while DATA_DIR's disk is full, then has room. */
async function fullDiskCallbacks(t: Deno.TestContext, store: string): Promise<void> {
  // Room for the store's file (and SQLite's journal segment), then filled to the last byte.
  const disk = await mountTinyDisk("24m");
  if (disk === null) return; // not root, outside CI
  const bridge = await startBridge({ env: { DATA_DIR: disk, STORE: store } });
  const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=DA`);
  const send = (id: string) =>
    post(`${bridge.base}${B}/send_xml`, textXml("oDisk", "gh_x", `text ${id}`, id));
  try {
    await t.step("with room, a message is taken", async () => {
      assert.deepEqual(await send("83001"), { status: 200, text: "success" });
      await agent.waitFor((e) => e.data["id"] === "83001", 5000);
    });
    await fill(`${disk}/filler`);
    // What still fits in the page the journal's segment already has is taken; then refused.
    let refused = "";
    const taken: string[] = [];
    await t.step(
      "with the disk full: 503 with Retry-After, and the process still serves",
      async () => {
        for (let i = 2; i < 100 && refused === ""; i++) {
          const id = String(83000 + i);
          const res = await fetch(`${bridge.base}${B}/send_xml`, {
            method: "POST",
            body: textXml("oDisk", "gh_x", `text ${id}`, id),
          });
          const text = await res.text();
          if (res.status === 200 && text === "success") {
            taken.push(id);
            continue;
          }
          assert.equal(res.status, 503, text);
          assert.equal(res.headers.get("retry-after"), "1");
          assert.match(JSON.parse(text).error, /Store unavailable/);
          refused = id;
        }
        assert.notEqual(refused, "", "no message was refused on a full disk");
        const health = await fetch(`${bridge.base}/healthz`);
        await health.body?.cancel();
        assert.equal(health.status, 200);
      },
    );
    await Deno.remove(`${disk}/filler`);
    await t.step(
      "once there is room, WeChat's retry is taken; every one taken is shown",
      async () => {
        assert.deepEqual(await send(refused), { status: 200, text: "success" });
        for (const id of [...taken, refused]) {
          await agent.waitFor((e) => e.data["id"] === id, 5000);
        }
      },
    );
  } finally {
    await agent.close();
    await bridge.close();
    await new Deno.Command("umount", { args: [disk] }).output();
    await Deno.remove(disk, { recursive: true }).catch(() => {});
  }
}

Deno.test("the default store on a full disk: callbacks answered 503, then taken once there is room", async (t) => {
  await fullDiskCallbacks(t, "");
});

Deno.test("STORE=kv on a full disk: callbacks answered 503, then taken once there is room", async (t) => {
  await fullDiskCallbacks(t, "kv");
});
