// A start applies what the last run left in the journal. A whole line it could not read (damage:
// a crash only cuts a segment's last line short, before its newline) was taken for the end of
// the segment, and every commit after it was dropped in silence: followers' messages WeChat had
// its success for, gone at the next start. Now that line alone is left out, logged, and its
// segment kept beside the journal. A real bridge writes the journal; a second one starts on a
// DATA_DIR holding it with one line damaged, and is asked as an agent would.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge, waitRouted } from "../helpers/server.ts";
import { liveSegment, writeDamaged } from "./_journal_damage.ts";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { baseStoreOptions } from "./_durable_store_cases.ts";

const B = "/im_component/wx_official_account";

/** The bridge on SQLite in `dir`, its worker keeping no lines of a write that failed (as one of
 * over 64 MiB): it reads them back from the journal, which is what these tests damage. */
async function readingBack(dir: string): Promise<TestBridge> {
  const store = await openSqliteStore(`${dir}/bridge.sqlite`, {
    ...baseStoreOptions(),
    keepFailedBytes: 0,
  });
  return await startBridge({ env: { STORE: "sqlite", DATA_DIR: dir }, store });
}

Deno.test("a damaged journal line is left out at start; the commits after it are applied", async () => {
  const first = Deno.makeTempDirSync({ prefix: "journal-first-" });
  const second = Deno.makeTempDirSync({ prefix: "journal-second-" });
  try {
    const bridge = await startBridge({ env: { STORE: "sqlite", DATA_DIR: first } });
    let segment: { name: string; text: string };
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa`);
    try {
      await waitRouted(bridge, "qa");
      for (const [i, content] of ["m-one", "m-two", "m-three"].entries()) {
        const res = await post(
          `${bridge.base}${B}/send_xml`,
          textXml("oJ", "gh", content, `88${i}`),
        );
        assert.equal(res.text, "success");
        await agent.waitFor((e) => e.data.msg?.["content"] === content);
      }
      // The segment being written stays while the bridge runs.
      segment = liveSegment(first);
    } finally {
      await agent.close();
      await bridge.close();
    }

    // The line of the second message, whole (its newline kept), with an id that is no string.
    const lines = segment.text.split("\n");
    const at = lines.findIndex((l) => l.includes('"content":"m-two"'));
    assert.ok(at >= 0 && at < lines.length - 2, "the second message has a line of its own");
    assert.ok(lines[at]!.includes('\x1fl\x1f"'), "it logs to the agent");
    writeDamaged(second, segment.name, lines, at);

    const again = await startBridge({ env: { STORE: "sqlite", DATA_DIR: second } });
    try {
      const res = await fetch(`${again.base}${B}/history?userid=qa&contact_id=oJ`);
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      const contents = body.messages.map((m: { msg: { content?: string } }) => m.msg.content);
      assert.deepEqual(contents, ["m-one", "m-three"]);
      assert.ok(
        Deno.statSync(`${second}/bridge.journal/${segment.name}.unreadable`).isFile,
        "the damaged segment is kept",
      );
    } finally {
      await again.close();
    }
  } finally {
    Deno.removeSync(first, { recursive: true });
    Deno.removeSync(second, { recursive: true });
  }
});

Deno.test("a journal line whose commit id was damaged into a larger one is left out; the commits after it are applied", async () => {
  // A flipped bit in a digit ("3" to "7") leaves a number, and the line read whole: taken as a
  // commit ahead of the others, every later line (ids at or below it) was skipped as applied, at
  // start and by the worker, and the next run went on from the damaged id. Messages WeChat had
  // its success for, dropped in silence. A segment's lines are its commits in order from its
  // name's id: a line whose id is past its place is damage, left out as any unreadable line.
  const first = Deno.makeTempDirSync({ prefix: "journal-id-first-" });
  const second = Deno.makeTempDirSync({ prefix: "journal-id-second-" });
  try {
    const bridge = await startBridge({ env: { STORE: "sqlite", DATA_DIR: first } });
    let segment: { name: string; text: string };
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa`);
    try {
      await waitRouted(bridge, "qa");
      for (const [i, content] of ["m-one", "m-two", "m-three", "m-four"].entries()) {
        const res = await post(
          `${bridge.base}${B}/send_xml`,
          textXml("oJ", "gh", content, `89${i}`),
        );
        assert.equal(res.text, "success");
        await agent.waitFor((e) => e.data.msg?.["content"] === content);
      }
      segment = liveSegment(first);
    } finally {
      await agent.close();
      await bridge.close();
    }

    const lines = segment.text.split("\n");
    const at = lines.findIndex((l) => l.includes('"content":"m-two"'));
    assert.ok(at >= 0 && at < lines.length - 3, "the second message has a line of its own");
    // Its id's first digit raised: a number still, and larger than every id after it.
    const id = lines[at]!.slice(0, lines[at]!.indexOf("\x1f"));
    lines[at] = `9${id.slice(1)}${lines[at]!.slice(id.length)}`;
    assert.ok(Number(`9${id.slice(1)}`) > Number(id) + 2);
    Deno.mkdirSync(`${second}/bridge.journal`);
    Deno.writeTextFileSync(`${second}/bridge.journal/${segment.name}`, lines.join("\n"));

    const again = await startBridge({ env: { STORE: "sqlite", DATA_DIR: second } });
    try {
      const res = await fetch(`${again.base}${B}/history?userid=qa&contact_id=oJ`);
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      const contents = body.messages.map((m: { msg: { content?: string } }) => m.msg.content);
      assert.deepEqual(contents, ["m-one", "m-three", "m-four"]);
    } finally {
      await again.close();
    }
  } finally {
    Deno.removeSync(first, { recursive: true });
    Deno.removeSync(second, { recursive: true });
  }
});

Deno.test("a damaged line in the live journal is left out by the running worker too, said once", async () => {
  // The worker reads the journal back when a batch it was handed could not be written and was
  // too large to keep (here an operator's sqlite3 holds the tables' write lock past the busy
  // timeout, and the worker keeps nothing). A line whose commit
  // id a disk error took (NUL bytes where it began) held it there: every later message stayed
  // out of the tables, reads failed until a restart, and that start dropped them in silence.
  const dir = Deno.makeTempDirSync({ prefix: "journal-live-" });
  const errors: string[] = [];
  await configure({
    sinks: {
      keep: (r: LogRecord) => {
        if (r.level === "error") errors.push(r.message.map(String).join(""));
      },
    },
    loggers: [
      { category: ["bridge", "store"], sinks: ["keep"], lowestLevel: "error" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
    ],
  });
  try {
    const env = { STORE: "sqlite", DATA_DIR: dir };
    const bridge = await readingBack(dir);
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa`);
    const send = async (content: string, id: string) => {
      const res = await post(`${bridge.base}${B}/send_xml`, textXml("oJ", "gh", content, id));
      assert.equal(res.text, "success");
      await agent.waitFor((e) => e.data.msg?.["content"] === content);
    };
    try {
      await waitRouted(bridge, "qa");
      await send("m-one", "881");
      assert.deepEqual(await contents(bridge), ["m-one"]);
      const segment = liveSegment(dir).path;
      // Its number in the segment: the lines before it, and one.
      const line = Deno.readTextFileSync(segment).split("\n").length;
      Deno.writeTextFileSync(segment, "\0\0\0\0\0\0\0\0damaged\n", { append: true });
      const operator = new DatabaseSync(`${dir}/bridge.sqlite`);
      try {
        operator.exec("BEGIN IMMEDIATE");
        await send("m-two", "882");
        // The worker gives up on the lock and says so: the read fails.
        const res = await fetch(`${bridge.base}${B}/history?userid=qa&contact_id=oJ`);
        await res.body?.cancel();
        assert.notEqual(res.status, 200);
      } finally {
        operator.exec("ROLLBACK");
        operator.close();
      }
      await send("m-three", "883");
      assert.deepEqual(await contents(bridge), ["m-one", "m-two", "m-three"]);
      await send("m-four", "884");
      assert.deepEqual(await contents(bridge), ["m-one", "m-two", "m-three", "m-four"]);
      assert.ok(Deno.statSync(`${segment}.unreadable`).isFile, "the damaged segment is kept");
      const said = errors.filter((e) => e.includes(`(line ${line})`) && e.includes(segment));
      assert.equal(said.length, 1, errors.join("\n"));
    } finally {
      await agent.close();
      await bridge.close();
    }
    const again = await startBridge({ env });
    try {
      assert.deepEqual(await contents(again), ["m-one", "m-two", "m-three", "m-four"]);
    } finally {
      await again.close();
    }
  } finally {
    await reset();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("the running worker's last commit left out as damage: reads answer without waiting for the next commit", async () => {
  // A read waits until the tables have the last commit; one the worker read back and left out
  // never comes, so every read failed ('the tables stop at') until some other commit came.
  const dir = Deno.makeTempDirSync({ prefix: "journal-last-" });
  try {
    const bridge = await readingBack(dir);
    const send = async (content: string, id: string) => {
      const res = await post(`${bridge.base}${B}/send_xml`, textXml("oJ", "gh", content, id));
      assert.equal(res.text, "success");
    };
    try {
      const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=qa`);
      await waitRouted(bridge, "qa");
      await send("m-one", "891");
      await agent.waitFor((e) => e.data.msg?.["content"] === "m-one");
      await agent.close();
      assert.deepEqual(await contents(bridge), ["m-one"]);
      // Nothing commits after m-two: no agent is online to take it (no cursor moves).
      const operator = new DatabaseSync(`${dir}/bridge.sqlite`);
      try {
        operator.exec(`CREATE TRIGGER refuse BEFORE INSERT ON history
          WHEN instr(NEW.item, 'm-two') > 0 BEGIN SELECT RAISE(ABORT, 'refused'); END`);
        await send("m-two", "892");
        const res = await fetch(`${bridge.base}${B}/history?userid=qa&contact_id=oJ`);
        await res.body?.cancel();
        assert.notEqual(res.status, 200, "the worker could not write m-two");
        // m-two's line, whole, its commit id kept but its agent's id no string (logged to qa,
        // offline, for its next connection).
        const segment = liveSegment(dir);
        const lines = segment.text.split("\n");
        const at = lines.findIndex((l) => l.includes('"content":"m-two"'));
        assert.equal(at, lines.length - 2, "m-two is the journal's last line");
        assert.ok(lines[at]!.includes('\x1fl\x1f"'), "m-two logs to qa");
        lines[at] = lines[at]!.replace('\x1fl\x1f"', '\x1fl\x1fx"');
        Deno.writeTextFileSync(segment.path, lines.join("\n"));
        operator.exec("DROP TRIGGER refuse");
      } finally {
        operator.close();
      }
      assert.deepEqual(await contents(bridge), ["m-one"]);
      await send("m-three", "893");
      assert.deepEqual(await contents(bridge), ["m-one", "m-three"]);
    } finally {
      await bridge.close();
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

/** The texts of follower oJ's conversation with qa, as the history route gives them. */
async function contents(bridge: TestBridge): Promise<Array<string | undefined>> {
  const res = await fetch(`${bridge.base}${B}/history?userid=qa&contact_id=oJ`);
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.messages.map((m: { msg: { content?: string } }) => m.msg.content);
}
