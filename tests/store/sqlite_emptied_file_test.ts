// bridge.sqlite emptied in place under a running main.ts (`: > bridge.sqlite`, a copytruncate or
// a cleaning script: the same inode, its pages gone): every agent's socket was closed 1011 and
// history answered 500 until a restart, while /readyz said "ready", so a balancer kept sending
// agents there. Now /readyz answers 503 and the log says what to do; a restart has every message.
import assert from "node:assert/strict";
import { followerPosts, notReady } from "./_follower_posts.ts";

const { sendEach, hasAll, withFiveRead } = followerPosts("oEmptied", 84_000_000);

Deno.test("bridge.sqlite emptied in place while main.ts runs: /readyz says so, a restart has all", async (t) => {
  await withFiveRead(async (run) => {
    const { file, expected } = run;
    const inode = Deno.statSync(file).ino;
    await t.step("emptied with nothing written after: /readyz answers 503", async () => {
      await Deno.truncate(file, 0);
      assert.equal(Deno.statSync(file).ino, inode, "the same file");
      assert.match(await notReady(run.p), /store unreachable/);
      await run.p.printed(/bridge\.sqlite was emptied or cut short while the bridge ran.*restart/);
    });
    await t.step("WeChat is still answered, and /readyz stays 503", async () => {
      await sendEach(run.p, 6, 8, expected);
      assert.match(await notReady(run.p), /store unreachable/);
    });
    await t.step("after SIGTERM and a restart: ready, history and since= have all", async () => {
      await run.restart("SIGTERM");
      await hasAll(run.p, expected);
    });
  });
});
