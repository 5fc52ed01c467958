// PROTOCOL.md: `POST B/upload` takes an agent's picture or video up to 10 MB (voice 2 MB), the
// console's attach button sends the file there. docs/production.md's nginx sample sets
// `client_max_body_size 1m;` ("The bridge enforces 24 KiB per body itself; this stops larger
// ones at the edge"), so behind the recommended proxy every upload over 1 MB (most phone
// photos, any video) is nginx's own 413 HTML page: the agent cannot send it, and the console
// gets no JSON to say why. Expected: the documented proxy passes what the bridge documents it
// takes (an upload of 2 MB answered by the bridge, 201 in demo mode).

import assert from "node:assert/strict";
import { startNginx } from "../helpers/nginx.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("docs/production.md's nginx passes an agent's 2 MB picture to POST B/upload", async () => {
  const bridge = await startBridge();
  const nginx = await startNginx(bridge.port);
  try {
    if (nginx === null) return; // no nginx outside CI
    // A PNG of 2 MB: its signature, then bytes (the bridge reads the format from the bytes).
    const png = new Uint8Array(2 * 1024 * 1024);
    png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    png[1000] = 7;
    // The bridge itself takes it.
    const direct = await fetch(`${bridge.base}${B}/upload?userid=ann`, {
      method: "POST",
      headers: { "content-type": "image/png" },
      body: png,
    });
    assert.equal(direct.status, 201, await direct.text());
    png[1000] = 8; // another file
    const proxied = await fetch(`${nginx.base}${B}/upload?userid=ann`, {
      method: "POST",
      headers: { "content-type": "image/png", host: "bridge.example.com" },
      body: png,
    });
    const text = await proxied.text();
    assert.equal(
      proxied.status,
      201,
      `through the documented nginx: ${proxied.status} ${text.slice(0, 120)}`,
    );
  } finally {
    await nginx?.stop();
    await bridge.close();
  }
});
