// isDiskRefusal() against the errors the stores really raise when their disk takes nothing: a
// read-only SQLite file, SQLite's I/O error (what a disk remounted read-only under an open
// database gives: tests/store/read_only_disk_test.ts), and the codes of Deno's own file calls.
// Anything else is a 500 with its stack trace, as before.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { isDiskRefusal } from "../../src/store/disk_refusal.ts";

Deno.test("isDiskRefusal() knows a full or read-only disk, and nothing else", async (t) => {
  await t.step("a write to a database opened read-only", async () => {
    const dir = await Deno.makeTempDir({ prefix: "disk_refusal_" });
    try {
      const path = `${dir}/x.sqlite`;
      const setup = new DatabaseSync(path);
      setup.exec("CREATE TABLE t (v TEXT)");
      setup.close();
      const db = new DatabaseSync(path, { readOnly: true });
      let caught: unknown = null;
      try {
        db.exec("INSERT INTO t VALUES ('x')");
      } catch (error) {
        caught = error;
      } finally {
        db.close();
      }
      assert.ok(caught instanceof Error, "the write was refused");
      assert.equal(isDiskRefusal(caught), true, (caught as Error).message);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await t.step("the codes of a full disk, a quota, a read-only file system, an I/O error", () => {
    for (const code of ["ENOSPC", "EDQUOT", "EROFS", "EIO"]) {
      assert.equal(isDiskRefusal(Object.assign(new Error("No space"), { code })), true, code);
    }
  });
  await t.step(
    "SQLite's I/O error, as a file system remounted read-only gives (Deno KV's form)",
    () => {
      assert.equal(isDiskRefusal(new TypeError("disk I/O error")), true);
    },
  );
  await t.step("other errors are not", () => {
    assert.equal(isDiskRefusal(new Error("no such table: t")), false);
    assert.equal(isDiskRefusal(Object.assign(new Error("denied"), { code: "EACCES" })), false);
    assert.equal(isDiskRefusal(null), false);
    assert.equal(isDiskRefusal("database or disk is full"), false);
  });
});
