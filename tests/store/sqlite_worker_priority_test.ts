// The SQLite store's worker yields the CPU to the thread that answers WeChat: on Linux its
// thread alone runs at a higher nice value, and every other thread of the bridge at the
// process's own (a nice value set for the process would slow the answers too).

import assert from "node:assert/strict";
import { spawnBridge, waitReady } from "../helpers/spawn.ts";

/** The bridge's threads: [thread id, nice value, name], read with `ps -L`. */
async function threads(pid: number): Promise<Array<[number, number, string]>> {
  const out = await new Deno.Command("ps", {
    args: ["-L", "-o", "tid=,ni=,comm=", "-p", String(pid)],
    stdout: "piped",
  }).output();
  assert.ok(out.success, `ps -L -p ${pid} failed`);
  return new TextDecoder().decode(out.stdout).trim().split("\n").map((line) => {
    const [tid, ni, ...name] = line.trim().split(/\s+/);
    return [Number(tid), Number(ni), name.join(" ")];
  });
}

/** The bridge started at nice `base`: its threads once the worker has lowered its own. */
async function threadsOfBridge(base: number): Promise<Array<[number, number, string]>> {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-nice-" });
  const launcher = base === 0 ? [] : ["nice", "-n", String(base)];
  const bridge = spawnBridge({ STORE: "sqlite", DATA_DIR: dataDir }, { launcher });
  try {
    await waitReady(bridge);
    // The worker sets its own priority as it starts, which may come after the first answer.
    let all = await threads(bridge.pid);
    for (let i = 0; i < 50 && !all.some(([, ni]) => ni !== base); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      all = await threads(bridge.pid);
    }
    const main = all.find(([tid]) => tid === bridge.pid);
    assert.equal(main?.[1], base, `the main thread: ${JSON.stringify(main)}`);
    return all;
  } finally {
    await bridge.stop();
    await bridge.output;
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name: "the SQLite worker's thread runs at nice 10, the bridge's other threads at 0",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const all = await threadsOfBridge(0);
    const lowered = all.filter(([, ni]) => ni !== 0);
    assert.equal(lowered.length, 1, `one thread lowered: ${JSON.stringify(all)}`);
    assert.equal(lowered[0]![1], 10);
    assert.match(lowered[0]![2], /^worker/, "it is a worker's thread");
  },
});

Deno.test({
  // An operator who starts the bridge under `nice -n 15` (a batch host) must not find the
  // worker above the thread that answers: nice 10 set outright is a higher priority than 15,
  // which root (most containers) is allowed to take.
  name: "the SQLite worker's thread is lowered from the process's nice value, not set to 10",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const all = await threadsOfBridge(15);
    const worker = all.filter(([, , name]) => /^worker/.test(name));
    assert.ok(worker.length >= 1, `a worker thread: ${JSON.stringify(all)}`);
    for (const [tid, ni] of worker) {
      assert.ok(ni >= 15, `worker thread ${tid} at nice ${ni}, above the process's 15`);
    }
    assert.ok(
      worker.some(([, ni]) => ni === 19),
      `lowered as far as it goes: ${JSON.stringify(all)}`,
    );
  },
});
