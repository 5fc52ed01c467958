// The SQLite store passes the durable store cases (_durable_store_cases.ts) that the Deno KV
// store passes, plus what is its own: the journal row written (to a file of its own) before a
// commit resolves, written to the tables by the worker, applied once by the next open, reads
// that see what the tables do not have yet, and expired rows deleted.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import {
  contactRow,
  journalDirOf,
  openSqliteDatabase,
  openSqliteStore,
  type SqliteStoreOptions,
} from "../../src/store/sqlite_store.ts";
import { openJournalDir } from "../../src/store/sqlite_journal_file.ts";
import { CommitLine } from "../../src/store/sqlite_journal_line.ts";
import type { AgentRecord } from "../../src/core/store.ts";
import { replyItem } from "./_store_items.ts";
import {
  baseStoreOptions,
  describe,
  presenceOf,
  readAll,
  testDurableStore,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";

const DAY_MS = 24 * 3600_000;

function storeOptions(overrides: Partial<SqliteStoreOptions> = {}): SqliteStoreOptions {
  return { ...baseStoreOptions(), ...overrides };
}

testDurableStore({
  label: "openSqliteStore()",
  open: (path) => openSqliteStore(path, storeOptions()),
  file: "bridge.sqlite",
  logSource: "from the tables",
  async cursorCommitted(path) {
    // A second connection to the same file sees it once the journal is applied (50 ms).
    const record = await waitForRow<{ json: string }>(
      path,
      "SELECT json FROM agents WHERE agent_id = 'a1' AND json LIKE '%\"cursor\":3%'",
    );
    const a1 = JSON.parse(record.json) as AgentRecord;
    assert.equal(a1.cursor, 3);
    assert.ok(a1.seq <= 6);
  },
});

/** Polls a second connection to the file until `sql` returns a row. */
async function waitForRow<T>(path: string, sql: string, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    while (true) {
      const row = db.prepare(sql).get() as T | undefined;
      if (row !== undefined) return row;
      if (Date.now() > deadline) throw new Error(`Timed out waiting for: ${sql}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    db.close();
  }
}

/** Whole lines in the journal beside the tables' file at `path`. */
function journalLines(path: string): number {
  let lines = 0;
  for (const entry of Deno.readDirSync(journalDirOf(path))) {
    const text = Deno.readTextFileSync(`${journalDirOf(path)}/${entry.name}`);
    lines += text.split("\n").length - 1;
  }
  return lines;
}

function count(path: string, table: string): number {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

Deno.test("openSqliteStore() rolls back a failed commit and rejects", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    // The disk refusing a write, as the journal reports it: the append throws.
    const openJournal: typeof openJournalDir = (...args) => {
      const journal = openJournalDir(...args);
      return {
        ...journal,
        append(id, bytes) {
          if (new TextDecoder().decode(bytes).includes("poison")) {
            throw new Error("refused: no space left on device");
          }
          journal.append(id, bytes);
        },
      };
    };
    const store = await openSqliteStore(path, storeOptions({ openJournal }));
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      await store.acceptInbound([textItem("f0", "before")], online);
      const good = textItem("f1", "fine");
      const poison = textItem("f2", "poison");

      await t.step("the batch is rejected", async () => {
        await assert.rejects(store.acceptInbound([good, poison], online), /refused/);
      });
      await t.step("the model is back where the database is", async () => {
        assert.equal(await store.getContact("f1"), null);
        assert.equal(await store.getContact("f2"), null);
        assert.equal((await store.getAgent("a1"))?.seq, 2);
        assert.equal((await store.getAgent("a1"))?.load, 1);
        assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f0", "before"]);
      });
      await t.step("WeChat's retry of the good message is accepted, not a duplicate", async () => {
        const applied = await store.acceptInbound([good], online);
        assert.deepEqual(applied.value, ["delivered"]);
        assert.deepEqual(applied.deliveries.map((e) => e.seq), [3, 4]);
        assert.deepEqual(describe(await readAll(store, "a1")), [
          "assigned:f0",
          "before",
          "assigned:f1",
          "fine",
        ]);
      });
      await t.step("a batch is one commit: nothing of a refused one stays", async () => {
        const items = Array.from({ length: 30 }, (_, i) => textItem("f3", `long ${i}`));
        await assert.rejects(store.acceptInbound([...items, poison], online), /refused/);
        assert.equal(await store.getContact("f3"), null);
        const retry = await store.acceptInbound(items, online);
        assert.deepEqual(retry.value, items.map(() => "delivered"));
        assert.deepEqual(
          retry.deliveries.map((e) => e.seq),
          Array.from({ length: 31 }, (_, i) => i + 5),
        );
      });
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() writes a journal row before a commit resolves; the next open applies it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    // The worker writes the tables 20 ms after a row; held here until the copy is made.
    const store = await openSqliteStore(path, storeOptions({ applyDelayMs: 60_000 }));
    const online = presenceOf("a1");
    await store.agentOnline("a1", online);
    await store.acceptInbound([textItem("f1", "one"), textItem("f1", "two")], online);
    const queued = await store.acceptInbound([textItem("f2", "waits")], presenceOf());
    assert.deepEqual(queued.value, ["waiting"]);
    // Resolved, so durable: one journal row per commit, before the tables have it.
    assert.equal(journalLines(path), 2);
    assert.equal(count(path, "log"), 0);
    // A second process opening the files (a restart after kill -9) finds all of it.
    // The files as a kill -9 would leave them: the database, its WAL and the journal.
    const copy = `${dir}/copy.sqlite`;
    Deno.copyFileSync(path, copy);
    Deno.copyFileSync(`${path}-wal`, `${copy}-wal`);
    Deno.mkdirSync(journalDirOf(copy));
    for (const entry of Deno.readDirSync(journalDirOf(path))) {
      Deno.copyFileSync(
        `${journalDirOf(path)}/${entry.name}`,
        `${journalDirOf(copy)}/${entry.name}`,
      );
    }
    const restarted = await openSqliteStore(copy, storeOptions());
    try {
      assert.equal(journalLines(copy), 0);
      assert.equal(count(copy, "log"), 3);
      assert.deepEqual(describe(await readAll(restarted, "a1")), ["assigned:f1", "one", "two"]);
      assert.equal((await restarted.getContact("f1"))?.unread, 2);
      assert.deepEqual((await restarted.listWaiting()).map((c) => c.follower_id), ["f2"]);
      const again = await restarted.acceptInbound([textItem("f1", "three")], online);
      assert.deepEqual(again.deliveries.map((e) => e.seq), [4]);
    } finally {
      await restarted.close();
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() takes in one commit what KV had to split", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    let store = await openSqliteStore(path, storeOptions());
    try {
      await t.step("100 long messages: over 800 KiB, all stored in order", async () => {
        const online = presenceOf("a1");
        await store.agentOnline("a1", online);
        const long = (i: number) => `${i}:` + "长".repeat(8000);
        const items = Array.from({ length: 100 }, (_, i) => textItem(`f${i % 3}`, long(i)));
        const applied = await store.acceptInbound(items, online);
        assert.equal(applied.value.filter((o) => o === "delivered").length, 100);
        assert.equal(applied.deliveries.length, 103);
        const contents = describe(await readAll(store, "a1")).filter((c) => !c.includes(":f"));
        assert.deepEqual(contents, items.map((_, i) => long(i)));
      });
      await t.step("a backlog of 400 followers is handed over whole", async () => {
        const items = Array.from({ length: 800 }, (_, i) => textItem(`w${i % 400}`, `w${i}`));
        for (let i = 0; i < items.length; i += 100) {
          await store.acceptInbound(items.slice(i, i + 100), presenceOf());
        }
        assert.equal(await store.queueDepth(), 800);
        const applied = await store.agentOnline("a2", presenceOf("a2"));
        assert.equal(applied.deliveries.length, 1200);
        await store.close();
        store = await openSqliteStore(path, storeOptions());
        assert.equal(await store.queueDepth(), 0);
        const log = describe(await readAll(store, "a2"));
        assert.equal(log.length, 1200);
        assert.deepEqual(log.slice(0, 6), [
          "assigned:w0",
          "w0",
          "w400",
          "assigned:w1",
          "w1",
          "w401",
        ]);
        assert.equal((await store.getAgent("a2"))?.load, 400);
        assert.equal((await store.getContact("w399"))?.agent_id, "a2");
      });
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() deletes history after retentionMs, logs after 48 h at least", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const clock = { t: Date.UTC(2026, 10, 1) };
    // One day of history; agents' logs are kept for 48 hours whatever the setting.
    const options = storeOptions({ retentionMs: 1 * DAY_MS, now: () => clock.t });
    let store = await openSqliteStore(path, options);
    try {
      await store.agentOnline("a1", presenceOf("a1"));
      await store.acceptInbound([textItem("f1", "old")], presenceOf("a1"));
      await store.close();
      clock.t += 1.5 * DAY_MS;
      store = await openSqliteStore(path, options);
      assert.deepEqual((await store.readHistory("f1", null, 10)).items, [], "history gone");
      assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "old"], "log kept");
      await store.acceptInbound([textItem("f1", "new")], presenceOf("a1"));
      await store.close();
      clock.t += 0.9 * DAY_MS;
      store = await openSqliteStore(path, options);
      assert.deepEqual(describe(await readAll(store, "a1")), ["new"]);
      assert.deepEqual(
        (await store.readHistory("f1", null, 10)).items.map((i) => i.msg["content"]),
        [
          "new",
        ],
      );
      // The seq goes on from where the deleted log left it.
      const next = await store.acceptInbound([textItem("f1", "next")], presenceOf("a1"));
      assert.deepEqual(next.deliveries.map((e) => e.seq), [4]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() writes new agents with the cursors, not a commit each", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    let store = await openSqliteStore(path, storeOptions());
    try {
      for (let i = 0; i < 50; i++) await store.agentOnline(`storm${i}`, presenceOf());
      // Known at once to this process, but no journal row was written for them.
      assert.equal(await store.isKnownAgent("storm49"), true);
      assert.equal(journalLines(path), 0);
      await store.close();
      store = await openSqliteStore(path, storeOptions());
      assert.equal(await store.isKnownAgent("storm49"), true, "close() writes pending agents");
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() copies the WAL into the database file from its worker, while open", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const store = await openSqliteStore(path, storeOptions());
    try {
      const before = (await Deno.stat(path)).size;
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      const long = "长".repeat(2000);
      for (let i = 0; i < 20; i++) {
        await store.acceptInbound(
          Array.from({ length: 10 }, (_, j) => textItem(`f${j}`, `${i}:${long}`)),
          online,
        );
      }
      // The store never checkpoints on its own thread (wal_autocheckpoint is off): only the
      // worker makes the file grow before close.
      const deadline = Date.now() + 10_000;
      while ((await Deno.stat(path)).size <= before + 100_000) {
        if (Date.now() > deadline) throw new Error("The database file never grew");
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal((await store.readLog("a1", 0, 1000)).length, 210);
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteDatabase() is WAL with synchronous=NORMAL, or FULL when fsync is asked", async () => {
  await withTempDir((dir) => {
    for (const [fsync, expected] of [[false, 1], [true, 2]] as const) {
      const db = openSqliteDatabase(`${dir}/s${expected}.sqlite`, fsync);
      try {
        const mode = db.prepare("PRAGMA journal_mode").get() as { journal_mode: string };
        const sync = db.prepare("PRAGMA synchronous").get() as { synchronous: number };
        assert.equal(mode.journal_mode, "wal");
        assert.equal(sync.synchronous, expected, `fsync ${fsync}`);
      } finally {
        db.close();
      }
    }
    return Promise.resolve();
  });
});

Deno.test("openSqliteStore() reads what the tables do not have yet", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    // Rows held in the journal (the worker would write them in a minute); one contact in memory.
    const store = await openSqliteStore(
      path,
      storeOptions({ applyDelayMs: 60_000, hotContacts: 1 }),
    );
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      await store.acceptInbound([textItem("f1", "one"), textItem("f1", "two")], online);
      await store.acceptInbound([textItem("f2", "three")], online);
      const answer = textItem("f1", "answer").envelope.data;
      const { value } = await store.recordReply("a1", "f1", {
        ...answer,
        direction: "out",
        status: "sending",
      });
      await store.updateReply("f1", { n: value.n, id: answer.id }, "sent");
      await store.putQuickReply({
        id: "q1",
        title: "hi",
        text: "hello",
        updated_at: 1,
        updated_by: "a1",
      });
      assert.equal(count(path, "log"), 0, "the tables have none of it yet");

      await t.step("a contact out of memory, as its last journal row has it", async () => {
        const f1 = await store.getContact("f1");
        assert.equal(f1?.unread, 0);
        assert.equal(f1?.history_seq, 3);
      });
      await t.step("the log, history, contacts and quick replies", async () => {
        assert.deepEqual(describe(await readAll(store, "a1")), [
          "assigned:f1",
          "one",
          "two",
          "assigned:f2",
          "three",
          "answer",
        ]);
        const history = (await store.readHistory("f1", null, 10)).items;
        assert.deepEqual(history.map((i) => [i.msg["content"], i.status]), [
          ["one", undefined],
          ["two", undefined],
          ["answer", "sent"],
        ]);
        const contacts = await store.listContacts("a1");
        assert.deepEqual(contacts.map((c) => c.follower_id).sort(), ["f1", "f2"]);
        assert.deepEqual((await store.listQuickReplies()).map((q) => q.id), ["q1"]);
      });
      await t.step("a quick reply deleted once", async () => {
        assert.equal(await store.deleteQuickReply("q1"), true);
        assert.equal(await store.deleteQuickReply("q1"), false);
        assert.deepEqual(await store.listQuickReplies(), []);
      });
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() has the worker write the tables, unasked", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const store = await openSqliteStore(path, storeOptions());
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      await store.acceptInbound([textItem("f1", "one"), textItem("f1", "two")], online);
      // Nothing here reads from the store: the tables fill alone, and know it.
      await waitForRow(path, "SELECT 1 FROM log GROUP BY agent_id HAVING count(*) = 3");
      await waitForRow(path, "SELECT 1 FROM contacts WHERE follower_id = 'f1'");
      await waitForRow(path, "SELECT 1 FROM meta WHERE key = 'applied' AND value = '1'");
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() applies a journal row once, however often it is found", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    let store = await openSqliteStore(path, storeOptions());
    const online = presenceOf("a1");
    await store.agentOnline("a1", online);
    await store.acceptInbound([textItem("f1", "one")], online);
    const f1 = await store.getContact("f1");
    await store.forgetFollower("f1", textItem("f1", "forgotten").envelope);
    await store.close();
    // A crash between the tables' transaction and the journal's delete leaves commits the
    // tables have: here one that, applied again, would bring f1 back.
    const tables = new DatabaseSync(path);
    const applied = Number(
      (tables.prepare("SELECT value FROM meta WHERE key = 'applied'").get() as { value: string })
        .value,
    );
    tables.close();
    assert.ok(applied >= 2);
    const line = new CommitLine(applied, Date.now());
    line.contact(contactRow(f1!, JSON.stringify(f1)));
    line.log("a1", 9, JSON.stringify(textItem("f1", "stale").envelope));
    Deno.writeTextFileSync(
      `${journalDirOf(path)}/${String(applied).padStart(20, "0")}.log`,
      line.text(),
    );
    store = await openSqliteStore(path, storeOptions());
    try {
      assert.equal(await store.getContact("f1"), null);
      assert.equal((await readAll(store, "a1")).some((e) => e.seq === 9), false);
      assert.equal(journalLines(path), 0);
    } finally {
      await store.close();
    }
  });
});

/** The file at `path` as an older version left it after a crash: its tables, and the rows in
 * the journal table it kept (tests/store/_sqlite_legacy_journal.json); returns how many. */
async function writeLegacyJournal(path: string): Promise<number> {
  const fixture = JSON.parse(
    await Deno.readTextFile(new URL("./_sqlite_legacy_journal.json", import.meta.url)),
  ) as { rows: string[] };
  const old = openSqliteDatabase(path);
  old.exec("CREATE TABLE journal (id INTEGER PRIMARY KEY, changes TEXT NOT NULL)");
  for (const row of fixture.rows) {
    old.prepare("INSERT INTO journal (changes) VALUES (?)").run(row);
  }
  old.close();
  return fixture.rows.length;
}

Deno.test("openSqliteStore() applies the journal table an older version left in bridge.sqlite", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    await writeLegacyJournal(path);
    // The rows' own time (2025-11-24), so nothing in them has expired.
    const store = await openSqliteStore(path, storeOptions({ now: () => 1_764_000_060_000 }));
    try {
      assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "one", "two"]);
      assert.equal((await store.getContact("f1"))?.unread, 2);
      assert.deepEqual((await store.listWaiting()).map((c) => c.follower_id), ["f2"]);
      const tables = new DatabaseSync(path, { readOnly: true });
      const journal = tables.prepare("SELECT name FROM sqlite_master WHERE name = 'journal'");
      assert.equal(journal.get(), undefined, "the old journal table is gone");
      tables.close();
      const next = await store.acceptInbound([textItem("f1", "three")], presenceOf("a1"));
      assert.deepEqual(next.deliveries.map((e) => e.seq), [4]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() logs how many journal rows the last run left", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const rows = await writeLegacyJournal(path);
    const lines: string[] = [];
    await configure({
      sinks: { keep: (record: LogRecord) => lines.push(record.message.map(String).join("")) },
      loggers: [
        { category: ["bridge", "store"], sinks: ["keep"], lowestLevel: "info" },
        { category: ["logtape", "meta"], sinks: [], lowestLevel: "warning" },
      ],
    });
    try {
      const store = await openSqliteStore(path, storeOptions({ now: () => 1_764_000_060_000 }));
      await store.close();
    } finally {
      await reset();
    }
    // What an operator reads after a crash: the number, not "undefined".
    assert.ok(
      lines.includes(`Applied ${rows} journal rows left by the last run`),
      JSON.stringify(lines),
    );
  });
});

Deno.test("openSqliteStore() reads back from the journal what the worker failed to write", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const store = await openSqliteStore(path, storeOptions());
    try {
      const online = presenceOf("a1");
      await store.agentOnline("a1", online);
      await store.acceptInbound([textItem("f1", "one")], online);
      // The tables refusing what the worker writes (a full disk, say), not the journal.
      const other = new DatabaseSync(path);
      other.exec(`CREATE TRIGGER refuse BEFORE INSERT ON log
        WHEN instr(NEW.frame, 'poison') > 0 BEGIN SELECT RAISE(ABORT, 'refused'); END`);
      await t.step(
        "the commit is durable all the same; a read that needs the tables fails",
        async () => {
          const applied = await store.acceptInbound([textItem("f1", "poison")], online);
          assert.deepEqual(applied.value, ["delivered"]);
          await assert.rejects(readAll(store, "a1"), /refused/);
        },
      );
      other.exec("DROP TRIGGER refuse");
      other.close();
      await t.step(
        "once the tables take it, the lost commit comes back from the journal",
        async () => {
          // Asked for with nothing new written: the worker must know to read it back.
          assert.deepEqual(describe(await readAll(store, "a1")), ["assigned:f1", "one", "poison"]);
          await store.acceptInbound([textItem("f1", "after")], online);
          assert.deepEqual(describe(await readAll(store, "a1")), [
            "assigned:f1",
            "one",
            "poison",
            "after",
          ]);
        },
      );
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() finds the replies left unanswered in a bridge.sqlite from before it kept them", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    const now = Date.UTC(2026, 11, 1);
    let store = await openSqliteStore(path, storeOptions({ now: () => now }));
    const online = presenceOf("a1");
    await store.agentOnline("a1", online);
    await store.acceptInbound([textItem("f1", "hello")], online);
    const reply = {
      ...replyItem("a1", "f1", "rOld"),
      send_time: Math.floor(now / 1000),
      client_id: "c-old",
    };
    await store.recordReply("a1", "f1", reply);
    await store.close();
    // The file as an older bridge left it: no table of unanswered replies.
    const old = new DatabaseSync(path);
    old.exec("DROP TABLE unanswered");
    old.close();
    store = await openSqliteStore(path, storeOptions({ now: () => now }));
    try {
      const found = await store.unansweredReplies(now + 1000, 10);
      assert.deepEqual(found.map((r) => [r.followerId, r.item.id]), [["f1", "rOld"]]);
    } finally {
      await store.close();
    }
  });
});

Deno.test("openSqliteStore() finds a reply left unanswered behind replies from before whose msg says sending", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bridge.sqlite`;
    let now = Date.UTC(2026, 11, 1);
    let store = await openSqliteStore(path, storeOptions({ now: () => now }));
    const online = presenceOf("a1");
    await store.agentOnline("a1", online);
    // An agent's program that sends its own message object: its `status` went along, and the
    // file from before has it in the item's JSON of replies long answered.
    for (let f = 0; f < 25; f++) {
      await store.acceptInbound([textItem(`f${f}`, "hello")], online);
      for (let r = 0; r < 4; r++) {
        const id = `rSent${f}-${r}`;
        const item = {
          ...replyItem("a1", `f${f}`, id),
          send_time: Math.floor(now / 1000),
          msg: { content: id, status: "sending" },
        };
        const { value } = await store.recordReply("a1", `f${f}`, item);
        await store.updateReply(`f${f}`, { n: value.n, id }, "sent");
      }
    }
    now += 1000;
    await store.recordReply("a1", "f0", {
      ...replyItem("a1", "f0", "rLeft"),
      send_time: now / 1000,
    });
    await store.close();
    const old = new DatabaseSync(path);
    old.exec("DROP TABLE unanswered");
    old.close();
    store = await openSqliteStore(path, storeOptions({ now: () => now }));
    try {
      const found = await store.unansweredReplies(now + 1000, 100);
      assert.deepEqual(found.map((r) => r.item.id), ["rLeft"]);
    } finally {
      await store.close();
    }
  });
});
