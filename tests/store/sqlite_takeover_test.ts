// The SQLite journal in a file of its own, attacked through spawned main.ts processes: a second
// process on a running one's DATA_DIR, a journal line cut short by a crash.
import assert from "node:assert/strict";
import { post, textXml } from "../helpers/agent.ts";
import * as A from "./_sqlite_attack.ts";

let msgId = 81_000_000;
const send = async (p: A.Proc, from: string, content: string) => {
  const res = await post(
    `${p.base}${A.B}/send_xml`,
    textXml(from, "gh_account", content, String(msgId++)),
  );
  return `${res.status} ${res.text}`;
};

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sqlite_review17_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test(`a main.ts started on the DATA_DIR of one still running takes over after its ${signal} with nothing lost`, async () => {
    await withDir(async (dir) => {
      const first = A.spawn(dir);
      let second: A.Proc | undefined;
      try {
        await A.ready(first);
        await A.bind(first, "a1", ["oOverlap"]);
        const expected: string[] = [];
        for (let i = 1; i <= 5; i++) {
          assert.equal(await send(first, "oOverlap", `m${i}`), "200 success");
          expected.push(`m${i}`);
        }
        // An overlapping restart: the new process starts while the old one still answers.
        second = A.spawn(dir);
        await new Promise((r) => setTimeout(r, 3000));
        for (let i = 6; i <= 10; i++) {
          assert.equal(await send(first, "oOverlap", `m${i}`), "200 success");
          expected.push(`m${i}`);
        }
        await first.kill(signal);
        await A.ready(second);
        const answer = await send(second, "oOverlap", "m11");
        if (answer !== "200 success") {
          await second.kill("SIGTERM");
          assert.fail(`${answer}: ${(await second.stderr).slice(0, 600)}`);
        }
        expected.push("m11");
        const got = (await A.history(second, "a1", "oOverlap")).filter((s) =>
          s !== "oOverlap:bind"
        );
        assert.deepEqual(got, expected);
      } finally {
        await first.kill("SIGKILL");
        await second?.kill("SIGKILL");
      }
    });
  });
}

Deno.test("a journal line cut short by a crash is skipped, and what came before it and after the restart is kept", async () => {
  await withDir(async (dir) => {
    let p = A.spawn(dir);
    try {
      await A.ready(p);
      await A.bind(p, "a1", ["oTorn"]);
      for (let i = 1; i <= 5; i++) assert.equal(await send(p, "oTorn", `m${i}`), "200 success");
      await p.kill("SIGKILL");
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
      p = A.spawn(dir);
      await A.ready(p);
      assert.equal(await send(p, "oTorn", "m7"), "200 success");
      await p.kill("SIGKILL");
      p = A.spawn(dir);
      await A.ready(p);
      const got = (await A.history(p, "a1", "oTorn")).filter((s) => s !== "oTorn:bind");
      assert.deepEqual(got, ["m1", "m2", "m3", "m4", "m5", "m7"]);
    } finally {
      await p.kill("SIGKILL");
    }
  });
});
