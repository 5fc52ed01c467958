import assert from "node:assert/strict";
import {
  createAccessTokenManager,
  createMemoryTokenCache,
  type FetchedToken,
} from "../../src/wechat/access_token.ts";

// A token source that numbers its tokens and can be held back to overlap callers.
function tokenSource(expiresInS = 7200) {
  const requests: boolean[] = [];
  let release: (() => void) | null = null;
  let held: Promise<void> | null = null;
  return {
    requests,
    hold() {
      held = new Promise((resolve) => (release = resolve));
    },
    release() {
      release?.();
      held = null;
    },
    async fetchToken(force: boolean): Promise<FetchedToken> {
      requests.push(force);
      const n = requests.length;
      if (held) await held;
      return { token: `t${n}`, expiresInS };
    },
  };
}

Deno.test("createAccessTokenManager() shares and refreshes the token", async (t) => {
  await t.step("concurrent callers share one fetch", async () => {
    const source = tokenSource();
    const manager = createAccessTokenManager({ fetchToken: source.fetchToken });
    source.hold();
    const pending = Promise.all([manager.get(), manager.get(), manager.get()]);
    await Promise.resolve();
    source.release();
    assert.deepEqual(await pending, ["t1", "t1", "t1"]);
    assert.equal(await manager.get(), "t1");
    assert.deepEqual(source.requests, [false]);
  });

  await t.step("invalidate() refreshes only the token that failed, once", async () => {
    const source = tokenSource();
    const manager = createAccessTokenManager({ fetchToken: source.fetchToken });
    const first = await manager.get();
    source.hold();
    const pending = Promise.all([
      manager.invalidate(first),
      manager.invalidate(first),
      manager.get(),
    ]);
    await Promise.resolve();
    source.release();
    assert.deepEqual(await pending, ["t2", "t2", "t2"]);
    // A late report about the old token does not refresh again.
    assert.equal(await manager.invalidate(first), "t2");
    assert.deepEqual(source.requests, [false, false]);
  });

  await t.step("forces a refresh when WeChat answers the refused token again", async () => {
    let calls = 0;
    const manager = createAccessTokenManager({
      fetchToken: (force) => {
        calls++;
        return Promise.resolve({ token: force ? "new" : "old", expiresInS: 7200 });
      },
    });
    assert.equal(await manager.get(), "old");
    assert.equal(await manager.invalidate("old"), "new");
    assert.equal(calls, 3);
  });

  await t.step("refreshes 5 minutes before expiry, from the shared cache", async () => {
    let clock = 1_000_000;
    const source = tokenSource();
    const cache = createMemoryTokenCache();
    const manager = createAccessTokenManager({
      fetchToken: source.fetchToken,
      cache,
      now: () => clock,
    });
    assert.equal(await manager.get(), "t1");
    assert.deepEqual(await cache.get(), { token: "t1", expiresAt: clock + 7_200_000 });
    clock += 7_200_000 - 300_001;
    assert.equal(await manager.get(), "t1");
    clock += 2;
    assert.equal(await manager.get(), "t2");
    // Another instance's newer token in the shared cache is used as is.
    await cache.set({ token: "other", expiresAt: clock + 7_200_000 });
    assert.equal(await manager.get(), "other");
    assert.equal(source.requests.length, 2);
  });

  await t.step("a short-lived answer is not fetched again at every call", async () => {
    let clock = 0;
    const source = tokenSource(200);
    const manager = createAccessTokenManager({ fetchToken: source.fetchToken, now: () => clock });
    assert.equal(await manager.get(), "t1");
    clock += 10_000;
    assert.equal(await manager.get(), "t1");
    clock += 25_000;
    assert.equal(await manager.get(), "t2");
    assert.equal(source.requests.length, 2);
  });

  await t.step("a failed fetch reaches every waiter and the next call tries again", async () => {
    let fail = true;
    const manager = createAccessTokenManager({
      fetchToken: () =>
        fail
          ? Promise.reject(new Error("40125"))
          : Promise.resolve({ token: "ok", expiresInS: 7200 }),
    });
    const results = await Promise.allSettled([manager.get(), manager.get()]);
    assert.deepEqual(results.map((r) => r.status), ["rejected", "rejected"]);
    fail = false;
    assert.equal(await manager.get(), "ok");
  });
});
