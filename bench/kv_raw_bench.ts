// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// Deno KV alone, with the bridge's write pattern per message (log entry, history item, contact,
// each its JSON), at several messages per atomic commit: the floor under the KV row of the
// table. Run: deno run -A bench/kv_raw_bench.ts

import { cpuUsage } from "node:process";

const dir = await Deno.makeTempDir({ prefix: "kv-raw-bench-" });
const kv = await Deno.openKv(`${dir}/bench.kv`);
const value = JSON.stringify({
  data: {
    id: "7000000000000000123",
    seq: 1,
    name: "oF1abcdefghijk",
    avatar: "",
    msg_type: "text",
    contact_id: "oF1abcdefghijk",
    company_id: "",
    send_time: 1700000000,
    msg: { content: "hello there, this is a message" },
  },
  result: { code: 1001, message: "common" },
});
const DAY = 86_400_000;
const N = 10_000;
let seq = 0;
try {
  for (const batch of [1, 8, 16, 32, 100]) {
    const started = performance.now();
    const cpu = cpuUsage();
    for (let b = 0; b < N / batch; b++) {
      const op = kv.atomic();
      for (let i = 0; i < batch; i++) {
        seq++;
        op.set(["log", `a${seq % 100}`, seq], value, { expireIn: DAY });
        op.set(["history", `f${seq % 1000}`, seq], value, { expireIn: DAY });
        op.set(["contact", `f${seq % 1000}`], value);
      }
      const res = await op.commit();
      if (!res.ok) throw new Error("commit refused");
    }
    const used = cpuUsage(cpu);
    const rate = Math.round(N / (performance.now() - started) * 1000);
    const perMsg = ((used.user + used.system) / N).toFixed(0);
    console.log(`${batch} per commit: ${rate} msg/s, ${perMsg} µs CPU per message`);
  }
} finally {
  kv.close();
  await Deno.remove(dir, { recursive: true });
}
