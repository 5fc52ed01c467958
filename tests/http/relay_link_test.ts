// The guard relays each client connection to Deno.serve over a Unix socket and adds a random
// token header after every request line it passes on, so the handler behind knows the link. A
// request must find its link however its bytes are split or pipelined; a client's own token
// header, or a process that reaches the socket directly, must find none.

import assert from "node:assert/strict";
import { ClientStream } from "../../src/http/client_stream.ts";
import { defaultConnectionLimits, publicUrl, serveGuarded } from "../../src/http/connections.ts";
import { startBridge } from "../helpers/server.ts";
import { readStatuses } from "../helpers/raw_http.ts";

const enc = new TextEncoder();
const HEALTHZ = "GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

/** Directories named bridge_http_* under the temporary directory. */
function socketDirs(): Set<string> {
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const found = new Set<string>();
  for (const entry of Deno.readDirSync(tmp)) {
    if (entry.isDirectory && entry.name.startsWith("bridge_http_")) {
      found.add(`${tmp}/${entry.name}`);
    }
  }
  return found;
}

Deno.test("the relay's link token: every request finds its link, nothing else finds one", async (t) => {
  const before = socketDirs();
  const server = await startBridge();
  const dir = [...socketDirs()].find((d) => !before.has(d));
  try {
    await t.step("three pipelined requests in one write are each answered", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await conn.write(enc.encode(HEALTHZ.repeat(3)));
      assert.deepEqual(await readStatuses(conn, 3), ["200", "200", "200"]);
      conn.close();
    });
    await t.step("pipelined requests on a kept-alive connection are each answered", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await conn.write(enc.encode(HEALTHZ));
      assert.deepEqual(await readStatuses(conn, 1), ["200"]);
      // Three token lines fit in the read buffer after the bytes read: inserted in place.
      await conn.write(enc.encode(HEALTHZ.repeat(3)));
      assert.deepEqual(await readStatuses(conn, 3), ["200", "200", "200"]);
      // Reads that fill the buffer (no room for the lines: a new array), one request line split
      // across two reads.
      await conn.write(enc.encode(HEALTHZ.repeat(40)));
      assert.deepEqual(await readStatuses(conn, 40), Array(40).fill("200"));
      conn.close();
    });
    await t.step("a kept-alive request sent a byte at a time is answered", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await conn.write(enc.encode(HEALTHZ));
      assert.deepEqual(await readStatuses(conn, 1), ["200"]);
      for (const byte of enc.encode(HEALTHZ)) {
        await conn.write(new Uint8Array([byte]));
        await new Promise((r) => setTimeout(r, 1));
      }
      assert.deepEqual(await readStatuses(conn, 1), ["200"]);
      conn.close();
    });
    await t.step("a client's own x-bridge-link header claims no link: 421", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
      await conn.write(enc.encode(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-bridge-link: 0123456789abcdef0123456789abcdef\r\n\r\n",
      ));
      assert.deepEqual(await readStatuses(conn, 1), ["421"]);
      // The connection's next request, without one, is its own again.
      await conn.write(enc.encode(HEALTHZ));
      assert.deepEqual(await readStatuses(conn, 1), ["200"]);
      conn.close();
    });
    await t.step("the Unix socket is in a directory only this user may enter", () => {
      assert.ok(dir !== undefined, "no bridge_http_* directory appeared");
      assert.equal(Deno.statSync(dir).mode! & 0o077, 0);
    });
    await t.step("a process that connects to the socket directly gets 421", async () => {
      const path = [...Deno.readDirSync(dir!)].find((e) => e.name.endsWith(".sock"))?.name;
      assert.ok(path !== undefined, "no socket in the directory");
      const conn = await Deno.connect({ transport: "unix", path: `${dir}/${path}` });
      await conn.write(enc.encode(
        "GET /healthz HTTP/1.1\r\nhost: x\r\nx-bridge-link: 0123456789abcdef0123456789abcdef\r\n\r\n",
      ));
      assert.deepEqual(await readStatuses(conn, 1), ["421"]);
      conn.close();
    });
  } finally {
    await server.close();
  }
  await t.step("the directory is removed at shutdown", () => {
    assert.equal(dir !== undefined && socketDirs().has(dir), false);
  });
});

Deno.test("publicUrl() gives the handler the URL the client asked for, not the Unix socket's", async (t) => {
  const listening = { transport: "tcp", hostname: "0.0.0.0", port: 1234 } as const;
  await t.step("the Host header's host, over http", () => {
    assert.equal(
      publicUrl("http+unix://bridge.example.com:8443/media/a?t=1", listening),
      "http://bridge.example.com:8443/media/a?t=1",
    );
  });
  await t.step("no Host header: the public listener's address", () => {
    assert.equal(
      publicUrl("http+unix://%2Ftmp%2Fbridge_http_x%2Fhttp0.sock/healthz", listening),
      "http://0.0.0.0:1234/healthz",
    );
    assert.equal(
      publicUrl("http+unix://%2Ftmp%2Fs.sock/", { ...listening, hostname: "::1" }),
      "http://[::1]:1234/",
    );
  });
  await t.step("a URL that did not come over the socket stays as it is", () => {
    assert.equal(publicUrl("http://127.0.0.1:9/x", listening), "http://127.0.0.1:9/x");
  });
});

Deno.test("a relay that fails on a chunk closes that connection and serves the next", async () => {
  const server = serveGuarded(
    { port: 0, hostname: "127.0.0.1", limits: defaultConnectionLimits(1024) },
    () => new Response("ok"),
  );
  const feed = ClientStream.prototype.feed;
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await conn.write(enc.encode(HEALTHZ));
    assert.deepEqual(await readStatuses(conn, 1), ["200"]);
    // The next chunk's bookkeeping throws, inside the pump's promise callback.
    ClientStream.prototype.feed = () => {
      throw new Error("a bug");
    };
    await conn.write(enc.encode(HEALTHZ));
    assert.deepEqual(await readStatuses(conn, 1), [], "closed, not answered");
    conn.close();
    ClientStream.prototype.feed = feed;
    const next = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    await next.write(enc.encode(HEALTHZ));
    assert.deepEqual(await readStatuses(next, 1), ["200"]);
    next.close();
  } finally {
    ClientStream.prototype.feed = feed;
    await server.shutdown();
  }
});
