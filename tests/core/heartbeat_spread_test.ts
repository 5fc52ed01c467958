// Heartbeats are spread over their interval, a turn every 100 ms: each socket gets one an
// interval apart, but not every socket at the same moment (one write to every socket at once held
// the thread that answers WeChat ~100 ms at 3,000 agents).

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const AGENTS = 20;

Deno.test("heartbeats reach every socket once an interval, spread over the interval", async () => {
  const server = await startBridge({ env: { HEARTBEAT_INTERVAL_S: "1" } });
  const sockets: WebSocket[] = [];
  const beats: number[][] = Array.from({ length: AGENTS }, () => []);
  try {
    await Promise.all(
      Array.from({ length: AGENTS }, (_, i) =>
        new Promise<void>((resolve, reject) => {
          const socket = new WebSocket(`${server.wsBase}${B}/msg?userid=hb${i}`);
          sockets.push(socket);
          socket.onopen = () => resolve();
          socket.onerror = () => reject(new Error(`socket ${i} failed`));
          socket.onmessage = (e) => {
            if (JSON.parse(e.data).result?.code === 101) beats[i]!.push(performance.now());
          };
        })),
    );
    await new Promise((resolve) => setTimeout(resolve, 3_300));
    for (const [i, times] of beats.entries()) {
      assert.ok(times.length >= 2, `socket ${i}: ${times.length} heartbeats in 3.3 s`);
      for (let k = 1; k < times.length; k++) {
        const gap = times[k]! - times[k - 1]!;
        assert.ok(gap > 400 && gap < 1_600, `socket ${i}: heartbeats ${gap.toFixed(0)} ms apart`);
      }
    }
    // Twenty sockets opened together, dealt to ten turns of 100 ms: their heartbeats arrive
    // across most of the second, not in one burst.
    const firsts = beats.map((times) => times[0]!);
    const spread = Math.max(...firsts) - Math.min(...firsts);
    assert.ok(spread >= 500, `first heartbeats within ${spread.toFixed(0)} ms of each other`);
  } finally {
    for (const socket of sockets) socket.close();
    await server.close();
  }
});
