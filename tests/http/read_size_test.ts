// The relay's read buffers start small (most wait on idle agent sockets) and follow the traffic:
// a busy connection must keep a buffer its messages fit in, or each costs two reads and writes.

import assert from "node:assert/strict";
import { nextReadSize } from "../../src/http/connections.ts";

/** Buffer sizes met reading `messages` (bytes each, one burst per message) from 256 bytes. */
function readsOf(messages: number[]): { reads: number; size: number } {
  let size = 256;
  let wasFull = false;
  let reads = 0;
  for (const length of messages) {
    let left = length;
    while (left > 0) {
      const n = Math.min(left, size);
      left -= n;
      reads++;
      const next = nextReadSize(size, n, wasFull);
      wasFull = n === size;
      size = next;
    }
  }
  return { reads, size };
}

Deno.test("nextReadSize() grows with a busy connection and shrinks on a quiet one", async (t) => {
  await t.step("1,100-byte requests settle at one read each", () => {
    const warm = readsOf(Array(10).fill(1100)).reads;
    assert.equal(readsOf(Array(110).fill(1100)).reads - warm, 100);
  });
  await t.step("a full read doubles the buffer, up to 64 KiB", () => {
    assert.equal(nextReadSize(256, 256, false), 512);
    assert.equal(nextReadSize(64 * 1024, 64 * 1024, true), 64 * 1024);
  });
  await t.step("a heartbeat on its own shrinks it back to 256 bytes", () => {
    assert.equal(nextReadSize(2048, 70, false), 256);
    assert.equal(readsOf([...Array(10).fill(1100), 70]).size, 256);
  });
  await t.step("the tail of a burst does not", () => {
    assert.equal(nextReadSize(2048, 76, true), 2048);
  });
});
