// DATA_DIR's file system remounted read-only under a running bridge, as ext4 does on a disk error
// (errors=remount-ro): Deno KV, and SQLite once its journal was refused, said "disk I/O error",
// and WeChat's callbacks were answered 500 with a stack trace a request, where a full disk gets
// 503 with Retry-After, which WeChat retries. A real ext4 on a loop device, its error triggered
// through /sys (this needs root and loop devices; without them the test says so and is skipped).

import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { connectAgent, fullHistory, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

/** Runs `cmd`; its stderr when it fails. */
async function run(cmd: string, ...args: string[]): Promise<{ ok: boolean; err: string }> {
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output()
    .catch((error) => ({ success: false, stderr: new TextEncoder().encode(String(error)) }));
  return { ok: out.success, err: new TextDecoder().decode(out.stderr).trim() };
}

/** An ext4 file system on a loop device that goes read-only on its first error. */
interface LoopDisk {
  dir: string;
  /** Makes the kernel take an ext4 error: the file system is read-only from then on. */
  fail(): Promise<void>;
  /** Unmounts, repairs (e2fsck) and mounts it again, writable. */
  repair(): Promise<void>;
  remove(): Promise<void>;
}

async function mountLoopDisk(): Promise<LoopDisk | null> {
  const root = await Deno.makeTempDir({ prefix: "bridge-ro-disk-" });
  const image = `${root}/disk.img`;
  const dir = `${root}/data`;
  await Deno.mkdir(dir);
  const mount = () => run("mount", "-o", "loop,errors=remount-ro", image, dir);
  await Deno.truncate(image, 64 * 1024 * 1024).catch(async () => {
    await Deno.writeFile(image, new Uint8Array(0));
    await Deno.truncate(image, 64 * 1024 * 1024);
  });
  const made = await run("mkfs.ext4", "-q", "-F", image);
  const mounted = made.ok ? await mount() : made;
  // The loop device, whose ext4 can be told to fail.
  const source = mounted.ok
    ? (await new Deno.Command("findmnt", { args: ["-n", "-o", "SOURCE", dir], stdout: "piped" })
      .output().then((o) => new TextDecoder().decode(o.stdout).trim(), () => ""))
    : "";
  const trigger = `/sys/fs/ext4/${source.replace(/^\/dev\//, "")}/trigger_fs_error`;
  // Through a shell: /sys needs --allow-all of Deno itself.
  const canFail = source !== "" && (await run("test", "-w", trigger)).ok;
  if (!mounted.ok || !canFail) {
    if (mounted.ok) await run("umount", dir);
    await Deno.remove(root, { recursive: true });
    // deno-lint-ignore no-console
    console.log(
      `Skipping the read-only disk test: cannot mount an ext4 that can be failed (${
        mounted.err || trigger
      }); it needs root and loop devices`,
    );
    return null;
  }
  return {
    dir,
    async fail() {
      // What the bridge answered `success` for is on the disk before the error.
      await run("sync", "-f", dir);
      const failed = await run("sh", "-c", 'echo 1 > "$1"', "sh", trigger);
      assert.ok(failed.ok, failed.err);
      const probe = await Deno.writeTextFile(`${dir}/probe`, "x").then(() => "", (e) => e.code);
      assert.equal(probe, "EROFS", "the file system went read-only");
    },
    async repair() {
      assert.ok((await run("umount", dir)).ok, "unmounted");
      // 1: errors corrected.
      const fsck = await new Deno.Command("e2fsck", { args: ["-fy", image], stdout: "null" })
        .output();
      assert.ok(fsck.code <= 1, `e2fsck exited ${fsck.code}`);
      const again = await mount();
      assert.ok(again.ok, again.err);
    },
    async remove() {
      await run("umount", dir);
      await Deno.remove(root, { recursive: true }).catch(() => {});
    },
  };
}

/** WeChat's callbacks on `store` (a STORE value) while DATA_DIR is read-only, then repaired. */
async function readOnlyCallbacks(t: Deno.TestContext, store: string): Promise<void> {
  const disk = await mountLoopDisk();
  if (disk === null) return;
  const env = { DATA_DIR: disk.dir, STORE: store };
  // What the operator reads: why callbacks are refused, not a stack trace a request.
  const lines: string[] = [];
  await configure({
    sinks: { keep: (record: LogRecord) => lines.push(record.message.map(String).join("")) },
    loggers: [
      { category: ["bridge", "http"], sinks: ["keep"], lowestLevel: "warning" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  let bridge = await startBridge({ env });
  const send = (id: string) =>
    post(`${bridge.base}${B}/send_xml`, textXml("oReadOnly", "gh_x", `text ${id}`, id));
  let closed = false;
  try {
    await t.step("writable: a message is taken", async () => {
      const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=RO`);
      assert.deepEqual(await send("87001"), { status: 200, text: "success" });
      await agent.waitFor((e) => e.data["id"] === "87001", 5000);
      await agent.close();
    });
    await disk.fail();
    await t.step("read-only: each callback is answered 503 with Retry-After", async () => {
      for (const id of ["87002", "87003"]) {
        const res = await fetch(`${bridge.base}${B}/send_xml`, {
          method: "POST",
          body: textXml("oReadOnly", "gh_x", `text ${id}`, id),
        });
        const text = await res.text();
        assert.equal(res.status, 503, `${id}: ${text}`);
        assert.equal(res.headers.get("retry-after"), "1");
        assert.match(JSON.parse(text).error, /Store unavailable/);
      }
      const ready = await fetch(`${bridge.base}/readyz`);
      await ready.body?.cancel();
      assert.equal(ready.status, 503);
      assert.ok(
        lines.some((l) => l.startsWith("The store cannot take requests: they are answered 503")),
        JSON.stringify(lines),
      );
      assert.deepEqual(lines.filter((l) => l.startsWith("Request ")), [], "logged as failures");
    });
    await bridge.close();
    closed = true;
    await disk.repair();
    bridge = await startBridge({ env });
    closed = false;
    await t.step(
      "repaired: WeChat's retries are taken, and nothing taken before is lost",
      async () => {
        assert.deepEqual(await send("87002"), { status: 200, text: "success" });
        assert.deepEqual(await send("87003"), { status: 200, text: "success" });
        const ids = (await fullHistory(bridge.base, "RO", "oReadOnly"))
          .filter((m) => m.direction === "in")
          .map((m) => m.id);
        assert.deepEqual(ids, ["87001", "87002", "87003"]);
      },
    );
  } finally {
    if (!closed) await bridge.close();
    await disk.remove();
    await reset();
  }
}

Deno.test("STORE=kv on a disk remounted read-only: callbacks answered 503, taken once it is repaired", async (t) => {
  await readOnlyCallbacks(t, "kv");
});

Deno.test("the default store on a disk remounted read-only: callbacks answered 503, taken once it is repaired", async (t) => {
  await readOnlyCallbacks(t, "");
});
