// An agent's uploads are held whole in memory while they arrive and are stored: a program that
// sent 50 pictures of 10 MB at once took a spawned main.ts from 70 MB to 800 MB resident, and a
// few more would have stopped the bridge for every agent. One agent has at most 4 under way;
// a fifth is refused with 429 and Retry-After, and goes once one is done. Another agent's are
// its own.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const PNG_HEAD = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** A PNG body whose last bytes come once `release` resolves: the upload stays under way. */
function heldPng(release: Promise<void>, mark: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === 0) {
        const head = new Uint8Array(1024);
        head.set(PNG_HEAD);
        head[100] = mark;
        controller.enqueue(head);
      } else if (sent === 1) {
        await release;
        controller.enqueue(new Uint8Array(1024));
      } else {
        controller.close();
      }
      sent++;
    },
  });
}

function upload(base: string, agent: string, body: BodyInit) {
  return fetch(`${base}${B}/upload?userid=${agent}`, {
    method: "POST",
    headers: { "content-type": "image/png" },
    body,
  });
}

Deno.test("one agent has at most 4 uploads under way; a fifth is 429 until one is done", async () => {
  const server = await startBridge();
  let release = () => {};
  const held = new Promise<void>((r) => release = r);
  try {
    const first = Array.from({ length: 4 }, (_, i) => upload(server.base, "A", heldPng(held, i)));
    // The four are under way once the bridge reads their first bytes.
    await new Promise((r) => setTimeout(r, 300));
    const fifth = await upload(server.base, "A", heldPng(Promise.resolve(), 9));
    const refusal = await fifth.json();
    assert.equal(fifth.status, 429, JSON.stringify(refusal));
    assert.equal(fifth.headers.get("retry-after"), "1");
    assert.match(refusal.error, /4 uploads and media_url replies under way/);
    // Another agent is not held up by A's.
    const other = await upload(server.base, "B", heldPng(Promise.resolve(), 10));
    assert.equal(other.status, 201, await other.text());

    release();
    for (const res of await Promise.all(first)) {
      assert.equal(res.status, 201, await res.text());
    }
    const after = await upload(server.base, "A", heldPng(Promise.resolve(), 11));
    assert.equal(after.status, 201, await after.text());
  } finally {
    release();
    await server.close();
  }
});
