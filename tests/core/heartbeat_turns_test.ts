// The heartbeat's turns under conditions the spread test does not make: sockets opened between
// short-lived ones, and a thread kept busy (each turn's timer then fires late).

import assert from "node:assert/strict";
import { startBridge, type TestBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

/** Opens an agent socket; `beats` gets the time of each 101 it receives. */
function open(server: TestBridge, userid: string, beats: number[] = []): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(`${server.wsBase}${B}/msg?userid=${userid}`);
    socket.onopen = () => resolve(socket);
    socket.onerror = () => reject(new Error(`socket ${userid} failed`));
    socket.onmessage = (e) => {
      if (JSON.parse(e.data).result?.code === 101) beats.push(performance.now());
    };
  });
}

async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(ok(), "timed out");
}

Deno.test("heartbeat turns stay even and on time", async (t) => {
  await t.step("sockets opened between short-lived ones still get different turns", async () => {
    // HEARTBEAT_INTERVAL_S=1: ten turns. Each kept socket is followed by nine that close: dealt
    // in order alone, every kept socket landed in the same turn, all written at once again.
    const server = await startBridge({ env: { HEARTBEAT_INTERVAL_S: "1" } });
    const kept: WebSocket[] = [];
    const beats: number[][] = [];
    try {
      for (let k = 0; k < 10; k++) {
        beats.push([]);
        kept.push(await open(server, `keep${k}`, beats[k]));
        const brief: WebSocket[] = [];
        for (let j = 0; j < 9; j++) brief.push(await open(server, `brief${k}_${j}`));
        for (const socket of brief) socket.close();
        await until(() => server.bridge.hub.socketCount === k + 1);
      }
      // Heartbeats of one round, after every socket is in place.
      for (const times of beats) times.length = 0;
      await until(() => beats.every((times) => times.length > 0));
      const firsts = beats.map((times) => times[0]!);
      const spread = Math.max(...firsts) - Math.min(...firsts);
      assert.ok(spread >= 500, `kept sockets' heartbeats within ${spread.toFixed(0)} ms`);
    } finally {
      for (const socket of kept) socket.close();
      await server.close();
    }
  });

  await t.step("a busy thread does not stretch a socket's heartbeats apart", async () => {
    // Each turn's timer fires a little late on a busy thread; counted by firings, ten late turns
    // made every socket's interval that much longer (a proxy's read timeout closes idle sockets).
    const server = await startBridge({ env: { HEARTBEAT_INTERVAL_S: "1" } });
    const beats: number[] = [];
    const socket = await open(server, "busy", beats);
    const busy = setInterval(() => {
      const start = performance.now();
      while (performance.now() - start < 45) { /* the thread is taken */ }
    }, 5);
    try {
      await until(() => beats.length >= 1);
      const first = beats[0]!;
      await new Promise((r) => setTimeout(r, 4_200));
      const after = beats.filter((time) => time >= first);
      const mean = (after[after.length - 1]! - first) / (after.length - 1);
      assert.ok(mean < 1_120, `${after.length} heartbeats, ${mean.toFixed(0)} ms apart on average`);
    } finally {
      clearInterval(busy);
      socket.close();
      await server.close();
    }
  });
});
