// deno-lint-ignore-file no-console -- a command-line tool: its output is the point
// The SQLite worker's apply alone: journal lines (recorded from a bridge under load, or made
// here in the throughput workload's shape) written to a fresh bridge.sqlite in the batches the
// worker gets (lines of 20 ms), with its checkpoint every second; CPU µs per message, medians.
// Usage: deno run -A bench/apply_bench.ts [--journal DIR] [--rounds N] [--window MS]
//   [--pragma "cache_size=-16384" ...] [--parse-only]
import { parseArgs } from "node:util";
import { cpuUsage } from "node:process";
import { openSqliteDatabase } from "../src/store/sqlite_schema.ts";
import { applyHanded, prepareApply } from "../src/store/sqlite_journal.ts";
import { CommitLine, commitOfBytes } from "../src/store/sqlite_journal_line.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    journal: { type: "string" },
    rounds: { type: "string", default: "5" },
    "parse-only": { type: "boolean", default: false },
    window: { type: "string", default: "20" },
    pragma: { type: "string", multiple: true, default: [] },
  },
});

const encoder = new TextEncoder();
type Line = { bytes: Uint8Array; t: number };

/** The lines' bytes, newline included, and when each was written (ms), from a journal folder
 * (a bridge's `bridge.journal/`, kept from a bench run). */
function recorded(dir: string): Line[] {
  const out: Line[] = [];
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".log"))
    .sort();
  for (const name of names) {
    const text = Deno.readTextFileSync(`${dir}/${name}`);
    for (const line of text.split("\n")) {
      if (line === "") continue;
      out.push({ bytes: encoder.encode(`${line}\n`), t: Number(line.split("\x1f", 2)[1]) });
    }
  }
  return out;
}

/** Lines as the throughput workload makes them (a run of it, recorded, has the same sections
 * and sizes): 60,000 text messages from 1,000 followers to 100 agents at 8,000/s, 1 to 24 per
 * commit, each a log entry, its history item said by it, the contact, the agent's record and
 * the WeChat retry key. */
function generated(): Line[] {
  let seed = 17;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const out: Line[] = [];
  const seqs = new Array<number>(100).fill(0);
  const unread = new Map<string, number>();
  const t0 = 1_796_129_632_000;
  let i = 0;
  for (let id = 1; i < 60_000; id++) {
    const t = t0 + Math.floor(i / 8);
    const line = new CommitLine(id, t);
    const agents = new Set<number>();
    const contacts: string[] = [];
    for (let n = 1 + Math.floor(random() * 24); n > 0; n--, i++) {
      const a = i % 100;
      const followerId = `obench_agent${a}_${Math.floor(i / 100) % 10}`;
      const msgId = String(7_000_000_629_632_000_000n + BigInt(i));
      const seq = ++seqs[a]!;
      const frame = JSON.stringify({
        data: {
          id: msgId,
          name: followerId,
          avatar: "",
          msg_type: "text",
          contact_id: followerId,
          company_id: "",
          send_time: Math.floor(t / 1000),
          msg: { content: `hello ${i}`, msg_id: msgId },
          seq,
        },
        result: { code: 1001, message: "common" },
      });
      const index = contacts.length;
      line.log(`agent${a}`, seq, frame);
      const count = (unread.get(followerId) ?? 0) + 1;
      unread.set(followerId, count);
      line.inbound(followerId, count, index);
      contacts.push(followerId);
      agents.add(a);
      line.dedup(`m|${followerId}|${msgId}`, t + 15_000);
    }
    for (const followerId of contacts) {
      const a = followerId.slice("obench_".length, followerId.lastIndexOf("_"));
      const count = unread.get(followerId)!;
      const contact = {
        follower_id: followerId,
        name: followerId,
        avatar: "",
        agent_id: a,
        last_agent_id: a,
        status: "open",
        last_inbound_at: t,
        last_inbound_kind: "message",
        replies_since_inbound: 0,
        last_message: { msg_type: "text", preview: `hello ${i}`, direction: "in" },
        last_message_at: t,
        unread: count,
        waiting_since: null,
        history_seq: count,
        subscribed: true,
      };
      line.contact([followerId, JSON.stringify(contact), a, t, t + 48 * 3_600_000]);
    }
    for (const a of agents) {
      const record = { agent_id: `agent${a}`, seq: seqs[a], cursor: seqs[a], capacity: null };
      line.agent(`agent${a}`, JSON.stringify({ ...record, load: 10 }));
    }
    out.push({ bytes: encoder.encode(line.text()), t });
  }
  return out;
}

const lines = values.journal ? recorded(values.journal) : generated();
// Batches as the worker gets them: the lines written within 20 ms of the first.
const batches: Uint8Array[][] = [];
let messages = 0;
for (let i = 0; i < lines.length;) {
  const first = lines[i]!.t;
  const batch: Uint8Array[] = [];
  while (i < lines.length && lines[i]!.t - first < Number(values.window)) {
    batch.push(lines[i++]!.bytes);
  }
  batches.push(batch);
}
for (const { bytes } of lines) {
  messages += new TextDecoder().decode(bytes).split("\x1fl\x1f").length - 1;
}
console.log(`${lines.length} lines, ${batches.length} batches, ${messages} messages`);

const retention = { retentionMs: 30 * 86_400_000, logRetainMs: 86_400_000 };
const results: number[] = [];
for (let round = 0; round < Number(values.rounds); round++) {
  const dir = await Deno.makeTempDir({ prefix: "apply_bench_" });
  const db = openSqliteDatabase(`${dir}/bridge.sqlite`);
  for (const p of values.pragma) db.exec(`PRAGMA ${p}`);
  const st = prepareApply(db);
  const read = () => [];
  const before = cpuUsage();
  let lastCheckpoint = 0;
  for (const [b, batch] of batches.entries()) {
    const commits = batch.map(commitOfBytes);
    if (!values["parse-only"]) applyHanded(db, st, read, retention, commits);
    // The worker's checkpointer runs every second: 50 batches of 20 ms.
    if (b - lastCheckpoint >= 1000 / Number(values.window)) {
      lastCheckpoint = b;
      db.exec("PRAGMA wal_checkpoint(PASSIVE)");
    }
  }
  const used = cpuUsage(before);
  db.close();
  await Deno.remove(dir, { recursive: true });
  const us = (used.user + used.system) / messages;
  results.push(us);
  console.log(`round ${round + 1}: ${us.toFixed(1)} µs CPU/msg`);
}
console.log(`median ${median(results).toFixed(1)} µs CPU/msg`);
