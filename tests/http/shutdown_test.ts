// Issue 14, item 10: SIGTERM exits 0 within its deadline even while a client holds a request
// whose body never comes (before: exit 1 after 10 s, the store left open).

import assert from "node:assert/strict";
import { spawnBridge, waitReady } from "../helpers/spawn.ts";

const B = "/im_component/wx_official_account";
/** main.ts's own limit: past it, it exits 1. */
const SHUTDOWN_LIMIT_MS = 10_000;

Deno.test("SIGTERM with a stalled request body: exit 0 before the deadline, store closed", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-stall-" });
  const bridge = spawnBridge({ STORE: "kv", DATA_DIR: dataDir });
  const stalled: Deno.Conn[] = [];
  try {
    await waitReady(bridge);
    await t.step("two requests whose bodies stall", async () => {
      for (const path of [`${B}/send_xml`, `${B}/send`]) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: bridge.port });
        stalled.push(conn);
        await conn.write(
          new TextEncoder().encode(
            `POST ${path} HTTP/1.1\r\nHost: bridge\r\nContent-Length: 2000\r\n\r\n<xml><ToUser`,
          ),
        );
      }
      // Nothing outside shows the requests have reached the handler: give them a moment.
      await new Promise((r) => setTimeout(r, 300));
    });

    await t.step("SIGTERM: exit 0 before main.ts's limit, after a clean stop", async () => {
      const signalled = performance.now();
      const status = await bridge.stop();
      const took = performance.now() - signalled;
      const { stdout, stderr } = await bridge.output;
      assert.equal(status.code, 0, stdout + stderr);
      assert.ok(took < SHUTDOWN_LIMIT_MS, `took ${Math.round(took)} ms`);
      assert.match(stdout + stderr, /Stopped cleanly/);
    });

    await t.step("the store was closed: the same DATA_DIR opens again", async () => {
      const again = spawnBridge({ STORE: "kv", DATA_DIR: dataDir });
      try {
        await waitReady(again);
      } finally {
        assert.equal((await again.stop()).code, 0);
      }
    });
  } finally {
    for (const conn of stalled) {
      try {
        conn.close();
      } catch { /* closed by the bridge */ }
    }
    await bridge.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
