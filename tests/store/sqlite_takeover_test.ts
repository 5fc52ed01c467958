// The SQLite journal in a file of its own, attacked through spawned main.ts processes: a second
// process on a running one's DATA_DIR, a journal line cut short by a crash.
import assert from "node:assert/strict";
import { connectAgent, fullHistory, post, textXml } from "../helpers/agent.ts";
import {
  killBridge as kill,
  type SpawnedBridge,
  spawnOnDefaultStore as spawn,
  waitReady,
} from "../helpers/spawn.ts";
import { withTempDir } from "./_durable_store_cases.ts";

const B = "/im_component/wx_official_account";

let msgId = 81_000_000;
const send = async (p: SpawnedBridge, from: string, content: string) => {
  const res = await post(
    `${p.base}${B}/send_xml`,
    textXml(from, "gh_account", content, String(msgId++)),
  );
  return `${res.status} ${res.text}`;
};

/** Binds `follower` to `agent`, so its later messages go to the agent's log while it is away. */
async function bind(p: SpawnedBridge, agent: string, follower: string): Promise<void> {
  const a = await connectAgent(`${p.wsBase}${B}/msg?userid=${agent}`);
  assert.equal(await send(p, follower, `${follower}:bind`), "200 success");
  await a.waitForCount(1, 5000);
  await a.close();
}

/** The follower's messages in history, oldest first, paged back to the start. */
async function history(p: SpawnedBridge, agent: string, follower: string): Promise<string[]> {
  return (await fullHistory(p.base, agent, follower))
    .filter((m) => m.direction === "in")
    .map((m) => String((m.msg as { content?: string }).content))
    .filter((s) => s !== `${follower}:bind`);
}

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test(`a main.ts started on the DATA_DIR of one still running takes over after its ${signal} with nothing lost`, async () => {
    await withTempDir(async (dir) => {
      const first = spawn(dir);
      let second: SpawnedBridge | undefined;
      try {
        await waitReady(first);
        await bind(first, "a1", "oOverlap");
        const expected: string[] = [];
        for (let i = 1; i <= 5; i++) {
          assert.equal(await send(first, "oOverlap", `m${i}`), "200 success");
          expected.push(`m${i}`);
        }
        // An overlapping restart: the new process starts while the old one still answers.
        second = spawn(dir);
        await new Promise((r) => setTimeout(r, 3000));
        for (let i = 6; i <= 10; i++) {
          assert.equal(await send(first, "oOverlap", `m${i}`), "200 success");
          expected.push(`m${i}`);
        }
        await kill(first, signal);
        await waitReady(second);
        const answer = await send(second, "oOverlap", "m11");
        if (answer !== "200 success") {
          await kill(second, "SIGTERM");
          assert.fail(`${answer}: ${(await second.output).stderr.slice(0, 600)}`);
        }
        expected.push("m11");
        assert.deepEqual(await history(second, "a1", "oOverlap"), expected);
      } finally {
        await kill(first, "SIGKILL");
        if (second) await kill(second, "SIGKILL");
      }
    });
  });
}

Deno.test("a second main.ts on a running one's DATA_DIR says which process it waits for", async () => {
  await withTempDir(async (dir) => {
    const first = spawn(dir);
    let second: SpawnedBridge | undefined;
    try {
      await waitReady(first);
      second = spawn(dir);
      // It waits for the lock (it would take over once the first exits): it must say so, not
      // sit there silent while an operator wonders why it never listens.
      await new Promise((r) => setTimeout(r, 2500));
      await kill(second, "SIGTERM");
      const { stderr } = await second.output;
      assert.match(
        stderr,
        new RegExp(`Another process \\(pid ${first.pid}\\) holds .*bridge\\.journal`),
      );
      assert.equal(await send(first, "oStill", "still here"), "200 success");
    } finally {
      await kill(first, "SIGKILL");
      if (second) await kill(second, "SIGKILL");
    }
  });
});

Deno.test("a journal line cut short by a crash is skipped, and what came before it and after the restart is kept", async () => {
  await withTempDir(async (dir) => {
    let p = spawn(dir);
    try {
      await waitReady(p);
      await bind(p, "a1", "oTorn");
      for (let i = 1; i <= 5; i++) assert.equal(await send(p, "oTorn", `m${i}`), "200 success");
      await kill(p, "SIGKILL");
      const journal = `${dir}/bridge.journal`;
      const segs = [...Deno.readDirSync(journal)].map((e) => e.name).filter((n) =>
        n.endsWith(".log")
      )
        .sort();
      const last = `${journal}/${segs.at(-1)}`;
      const text = Deno.readTextFileSync(last);
      const lastLine = text.slice(0, -1).split("\n").at(-1)!;
      const nextId = Number(lastLine.split("\x1f")[0]) + 1;
      // The next line as a crash leaves it: its log entry whole, cut before its contact (so
      // what is there parses: only the missing newline says it is not whole).
      const torn = lastLine.replace(/^\d+/, String(nextId)).replaceAll("m5", "m6");
      const cut = torn.indexOf("\x1fc\x1f");
      assert.ok(cut > 0, torn);
      Deno.writeTextFileSync(last, torn.slice(0, cut), { append: true });
      p = spawn(dir);
      await waitReady(p);
      assert.equal(await send(p, "oTorn", "m7"), "200 success");
      await kill(p, "SIGKILL");
      p = spawn(dir);
      await waitReady(p);
      assert.deepEqual(await history(p, "a1", "oTorn"), ["m1", "m2", "m3", "m4", "m5", "m7"]);
    } finally {
      await kill(p, "SIGKILL");
    }
  });
});
