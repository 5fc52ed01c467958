// The Host header is the client's, and the router reads the path from `new URL(req.url)`, which
// Deno builds as `http://` + Host + the request target. A Host holding a backslash, which nginx
// passes on (its check refuses only `/`, controls and spaces) and the URL parser reads as a path
// separator, names the path the bridge routes: `GET /healthz` with `Host: h\metrics?` is served
// `/metrics`, past docs/production.md's `location = /metrics { deny all; }`. A Host the URL
// parser refuses (`a b`, `a<b`, a port past 65535) is a 500 "Internal error" and an ERR line with
// a stack trace, one per request from any stranger, where it is the client's bad request (400).

import assert from "node:assert/strict";
import { startNginx } from "../helpers/nginx.ts";
import { startBridge } from "../helpers/server.ts";

async function exchange(base: string, request: string): Promise<string> {
  const u = new URL(base);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  await conn.write(new TextEncoder().encode(request));
  const buf = new Uint8Array(64 * 1024);
  let text = "";
  const timer = setTimeout(() => conn.close(), 3_000);
  try {
    while (true) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed already */ }
  }
  return text;
}

Deno.test("a Host header does not choose the path the bridge routes (docs/production.md's nginx denies /metrics)", async (t) => {
  for (const guard of ["on", "off"]) {
    await t.step(`CONNECTION_GUARD=${guard}`, async () => {
      const bridge = await startBridge({ env: { CONNECTION_GUARD: guard } });
      const nginx = await startNginx(bridge.port);
      try {
        if (nginx === null) return; // no nginx outside CI
        const denied = await exchange(
          nginx.base,
          "GET /metrics HTTP/1.1\r\nHost: bridge.example.com\r\nConnection: close\r\n\r\n",
        );
        assert.match(denied, /^HTTP\/1\.1 403/, "the sample denies /metrics to this client");
        const asked = await exchange(
          nginx.base,
          "GET /healthz HTTP/1.1\r\nHost: bridge.example.com\\metrics?\r\nConnection: close\r\n\r\n",
        );
        assert.ok(
          !asked.includes("bridge_agent_sockets_open"),
          `GET /healthz with Host "bridge.example.com\\metrics?" was served /metrics through the ` +
            `proxy that denies it: ${asked.split("\r\n")[0]}`,
        );
      } finally {
        await nginx?.stop();
        await bridge.close();
      }
    });
  }
});

Deno.test("a Host the URL parser refuses is the client's bad request, not a 500", async () => {
  const bridge = await startBridge();
  try {
    for (const host of ["a b", "a<b", "a:99999"]) {
      const answer = await exchange(
        bridge.base,
        `GET /healthz HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      );
      const status = answer.split("\r\n")[0];
      assert.match(status ?? "", /^HTTP\/1\.1 400/, `Host "${host}": ${status}`);
    }
  } finally {
    await bridge.close();
  }
});
