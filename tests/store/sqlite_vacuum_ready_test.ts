// The file guard takes a bridge.sqlite smaller than it was for one emptied or cut short. SQLite
// makes its own file smaller too: an operator's VACUUM (after a retention prune or a forget freed
// pages) shrinks it, the same inode, every page whole. That answered /readyz 503 until a restart,
// taking a healthy bridge out of its balancer.
import assert from "node:assert/strict";
import { followerPosts, readiness } from "./_follower_posts.ts";

const { history, sendEach, withFiveRead } = followerPosts("oVacuumed", 85_000_000);

/** Runs `sql` with the sqlite3 shell on `file`, beside the bridge's own connections. */
async function sqlite3(file: string, sql: string): Promise<void> {
  const run = await new Deno.Command("sqlite3", { args: ["-cmd", ".timeout 10000", file, sql] })
    .output();
  assert.ok(run.success, new TextDecoder().decode(run.stderr));
}

Deno.test("bridge.sqlite made smaller by VACUUM while main.ts runs: still ready, nothing lost", async () => {
  await withFiveRead(async ({ file, p, expected }) => {
    // Pages the tables then give back, as a prune does; in the file once checkpointed.
    await sqlite3(
      file,
      "CREATE TABLE ops_scratch AS SELECT randomblob(2000000) AS b; " +
        "PRAGMA wal_checkpoint(TRUNCATE);",
    );
    const grown = Deno.statSync(file).size;
    // /readyz looks at the file: the guard has seen it this large.
    assert.equal((await readiness(p)).status, 200);
    await sqlite3(
      file,
      "DROP TABLE ops_scratch; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);",
    );
    assert.ok(Deno.statSync(file).size < grown, "VACUUM made the file smaller");
    const after = await readiness(p);
    assert.equal(after.status, 200, after.body);
    await sendEach(p, 6, 7, expected);
    assert.deepEqual(await history(p), expected);
    assert.equal((await readiness(p)).status, 200);
  });
});

Deno.test("bridge.sqlite cut short at a page's end while main.ts runs: /readyz answers 503", async () => {
  await withFiveRead(async ({ file, p }) => {
    await sqlite3(file, "PRAGMA wal_checkpoint(TRUNCATE);");
    const size = Deno.statSync(file).size;
    assert.equal((await readiness(p)).status, 200);
    // Whole pages left, the header still counting the ones cut: not SQLite's doing.
    await Deno.truncate(file, size - 4096);
    const after = await readiness(p);
    assert.equal(after.status, 503, after.body);
    await p.printed(/bridge\.sqlite was emptied or cut short while the bridge ran/);
  });
});
