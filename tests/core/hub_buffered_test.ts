// The hub closes a reader that stopped reading once its unsent bytes pass the limit, without
// asking the socket for them on every frame (each ask is a call into Deno).

import assert from "node:assert/strict";
import { type AgentSocket, CLOSE_RECONNECT, createHub } from "../../src/core/hub.ts";

/** A socket whose unsent bytes grow with what it is sent; `reads` counts the asks. */
function socket(stalled: boolean) {
  const s = {
    sent: 0,
    reads: 0,
    closedWith: 0,
    readyState: 1,
    send(data: string) {
      s.sent += data.length;
    },
    close(code?: number) {
      s.closedWith = code ?? 1000;
      s.readyState = 3;
    },
    get bufferedAmount() {
      s.reads++;
      return stalled ? s.sent : 0;
    },
  };
  return s;
}

Deno.test("createHub() reads a socket's unsent bytes now and then, not per frame", async (t) => {
  const max = 48 * 1024;
  const frame = "x".repeat(100);

  await t.step("1,000 frames to a reader that keeps up: a few reads, all delivered", () => {
    const hub = createHub({ maxBufferedBytes: max });
    const s = socket(false);
    hub.finishReplay(hub.add("a", s as AgentSocket));
    for (let seq = 1; seq <= 1_000; seq++) assert.equal(hub.deliver("a", seq, frame), 1);
    assert.equal(s.sent, 100_000);
    assert.ok(s.reads <= 100, `${s.reads} reads for 1,000 frames`);
    assert.ok(s.reads >= 1, "never read: a stalled reader would never be closed");
  });

  await t.step("a reader that stalls is closed with 4001 within a sixteenth past the limit", () => {
    const hub = createHub({ maxBufferedBytes: max });
    const s = socket(true);
    hub.finishReplay(hub.add("a", s as AgentSocket));
    let seq = 0;
    while (s.readyState === 1 && seq < 10_000) hub.deliver("a", ++seq, frame);
    assert.equal(s.closedWith, CLOSE_RECONNECT);
    assert.ok(s.sent > max, "closed before the limit");
    assert.ok(s.sent <= max + max / 16 + frame.length, `${s.sent} bytes unsent when closed`);
  });
});
