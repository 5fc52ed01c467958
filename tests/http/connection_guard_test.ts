// CONNECTION_GUARD: by default every client connection is relayed through the bridge's own
// accept loop (its timeouts and cap); `off` serves with Deno.serve alone, for a bridge behind a
// proxy that guards, and costs one descriptor per connection instead of three.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";

/** The test process's open descriptors, as the kernel counts them. */
async function openFds(): Promise<number> {
  const out = await new Deno.Command("sh", {
    args: ["-c", `ls /proc/${Deno.pid}/fd | wc -l`],
    stdout: "piped",
  }).output();
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/** Descriptors the bridge holds for `n` idle kept-alive clients (each has made one request). */
async function fdsPerClient(env: Record<string, string>, n = 40): Promise<number> {
  const server = await startBridge({ env });
  const conns: Deno.TcpConn[] = [];
  try {
    const before = await openFds();
    for (let i = 0; i < n; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await conn.write(new TextEncoder().encode("GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"));
      const buf = new Uint8Array(512);
      await conn.read(buf);
      conns.push(conn);
    }
    // Each client's own end is ours too: one descriptor per client on the test's side.
    return (await openFds() - before) / n - 1;
  } finally {
    for (const conn of conns) conn.close();
    await server.close();
  }
}

Deno.test("CONNECTION_GUARD relays connections by default and serves directly when off", async (t) => {
  await t.step("on (default): the relay holds three descriptors a client", async () => {
    assert.ok((await fdsPerClient({})) >= 2.5);
  });
  await t.step("off: Deno.serve holds one", async () => {
    const per = await fdsPerClient({ CONNECTION_GUARD: "off" });
    assert.ok(per > 0.5 && per < 1.5, `${per} descriptors per client`);
  });
  await t.step("off: the bridge still serves webhooks and agents", async () => {
    const server = await startBridge({ env: { CONNECTION_GUARD: "off" } });
    try {
      const socket = new WebSocket(
        `${server.wsBase}/im_component/wx_official_account/msg?userid=g1`,
      );
      await new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = reject;
      });
      const closed = new Promise((r) => socket.onclose = r);
      socket.close();
      await closed;
      const res = await fetch(`${server.base}/healthz`);
      assert.equal(res.status, 200);
      await res.body?.cancel();
    } finally {
      await server.close();
    }
  });
});
