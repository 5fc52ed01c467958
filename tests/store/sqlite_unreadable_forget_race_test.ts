// The SQLite worker keeps a copy of a journal segment whose line it cannot read, made from the
// lines it read; a forget (user_authorization_revoke) takes its follower out of the copies there
// are, on the thread that answers WeChat. A forget committed between the worker's read and its
// copy found no copy to take the follower out of, and the copy then kept the follower's lines
// until the retention. Now the store takes the followers forgotten since the read out of each
// copy the worker made, once it says so. The store's own worker, held (strace) at the copy.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { createSystemEnvelope } from "../../src/protocol/envelope.ts";
import { openSqliteStore } from "../../src/store/sqlite_store.ts";
import { canTrace, holdThread, mustTrace, threadsNamed } from "../helpers/thread_hold.ts";
import {
  baseStoreOptions,
  describe,
  fileExists,
  presenceOf,
  readAll,
  textItem,
  withTempDir,
} from "./_durable_store_cases.ts";
import { liveSegment } from "./_journal_damage.ts";

if (!canTrace && !mustTrace) {
  // deno-lint-ignore no-console
  console.log("Skipping the forget-during-copy test: strace is missing or may not trace here");
}

const revoked = (followerId: string) =>
  createSystemEnvelope({ event: "user_authorization_revoke", follower_id: followerId, text: "-" }, {
    id: `revoke-${followerId}`,
    companyId: "",
    sendTime: 0,
  });

Deno.test({
  name: "a forget committed while the worker writes an unreadable segment's copy: the copy " +
    "does not keep the forgotten follower's lines",
  ignore: !canTrace && !mustTrace,
  fn: async () => {
    if (!canTrace) throw new Error("strace is missing or may not trace here (CI=true)");
    await withTempDir(async (dir) => {
      const path = `${dir}/bridge.sqlite`;
      // Failed writes keep no lines (as one that held more than 64 MiB): read back instead.
      const store = await openSqliteStore(path, {
        ...baseStoreOptions(),
        applyDelayMs: 1,
        keepFailedBytes: 0,
      });
      try {
        const online = presenceOf("a1");
        await store.agentOnline("a1", online);
        const accept = (follower: string, content: string) =>
          store.acceptInbound([textItem(follower, content)], online);
        await accept("oStays", "stays-one");
        await accept("oGone", "gone-one");
        await readAll(store, "a1");

        // The tables refuse the worker a commit: it reads the journal back at its next apply.
        const other = new DatabaseSync(path);
        other.exec(`CREATE TRIGGER refuse BEFORE INSERT ON log
          WHEN instr(NEW.frame, 'poison') > 0 BEGIN SELECT RAISE(ABORT, 'refused'); END`);
        await accept("oStays", "poison");
        await accept("oGone", "gone-two");
        await accept("oStays", "stays-two");
        await assert.rejects(readAll(store, "a1"), /refused/);

        // stays-two's line, damaged on the disk: the worker's read-back cannot take it.
        const segment = liveSegment(dir);
        const lines = segment.text.split("\n");
        const at = lines.findIndex((l) => l.includes('"content":"stays-two"'));
        assert.ok(at >= 0 && lines[at]!.includes('\x1fl\x1f"'), "stays-two logs to a1");
        lines[at] = lines[at]!.replace('\x1fl\x1f"', '\x1fl\x1fx"');
        Deno.writeTextFileSync(segment.path, lines.join("\n"));
        other.exec("DROP TRIGGER refuse");
        other.close();

        const copy = `${segment.path}.unreadable`;
        const workers = await threadsNamed(Deno.pid, /^worker-\d+$/);
        assert.equal(workers.length, 1, `one worker thread, found ${workers.length}`);
        const held = await holdThread(workers[0]!, copy);
        let reading: Promise<unknown>;
        try {
          // A read asks the worker to apply: it reads the journal back, then writes the copy.
          // (It may be refused: the tables stop before the damaged line until the forget's.)
          reading = readAll(store, "a1").catch((error) => error);
          await held.entered;
          // Committed (and the copies there are scrubbed) before the worker writes this one.
          assert.equal((await store.forgetFollower("oGone", revoked("oGone"))).value, true);
        } finally {
          await held.release();
        }
        await reading;
        assert.ok(describe(await readAll(store, "a1")).includes("stays-one"));
        assert.ok(fileExists(copy), "the damaged segment is kept");
        const kept = Deno.readTextFileSync(copy);
        assert.ok(!kept.includes('"oGone"'), "the forgotten follower's lines are gone");
        assert.ok(kept.includes('"content":"stays-one"'), "the others' lines stay");
        assert.ok(kept.includes('"content":"stays-two"'), "the damaged line is kept");
      } finally {
        await store.close();
      }
    });
  },
});
