import assert from "node:assert/strict";
import { type FakeWechat, startFakeWechat } from "../../tools/fake_wechat.ts";

async function post(fake: FakeWechat, path: string, body: unknown) {
  const res = await fetch(`${fake.url}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() as Record<string, unknown> };
}

async function token(fake: FakeWechat, extra: Record<string, unknown> = {}) {
  return await post(fake, "cgi-bin/stable_token", {
    grant_type: "client_credential",
    appid: "wxA",
    secret: "S",
    ...extra,
  });
}

async function withFake(fn: (fake: FakeWechat) => Promise<void>, tokenTtlS?: number) {
  const fake = await startFakeWechat({ appId: "wxA", secret: "S", tokenTtlS });
  try {
    await fn(fake);
  } finally {
    await fake.close();
  }
}

Deno.test("startFakeWechat() answers like WeChat", async (t) => {
  await t.step("stable_token checks grant_type, appid and secret", async () => {
    await withFake(async (fake) => {
      assert.equal((await token(fake, { grant_type: "x" })).body.errcode, 40002);
      assert.equal((await token(fake, { appid: "wrong" })).body.errcode, 40013);
      const bad = await token(fake, { secret: "wrong" });
      assert.deepEqual([bad.status, bad.body.errcode], [200, 40125]);
      assert.equal(fake.tokensIssued, 0);
      const ok = await token(fake);
      assert.equal(typeof ok.body.access_token, "string");
      assert.equal(ok.body.expires_in, 7200);
      assert.equal((await token(fake)).body.access_token, ok.body.access_token);
      assert.notEqual(
        (await token(fake, { force_refresh: true })).body.access_token,
        ok.body.access_token,
      );
      assert.equal(fake.tokensIssued, 2);
    });
  });

  await t.step("every API call checks its access_token", async () => {
    await withFake(async (fake) => {
      const send = { touser: "oA", msgtype: "text", text: { content: "hi" } };
      assert.equal((await post(fake, "cgi-bin/message/custom/send", send)).body.errcode, 41001);
      assert.equal(
        (await post(fake, "cgi-bin/message/custom/send?access_token=forged", send)).body.errcode,
        40001,
      );
      const access = (await token(fake)).body.access_token as string;
      const path = `cgi-bin/message/custom/send?access_token=${access}`;
      assert.deepEqual((await post(fake, path, send)).body, { errcode: 0, errmsg: "ok" });
      fake.revokeTokens();
      assert.equal((await post(fake, path, send)).body.errcode, 40001);
      assert.deepEqual(fake.sent, [send]);
    });
  });

  await t.step("an expired token answers 42001", async () => {
    await withFake(async (fake) => {
      const access = (await token(fake)).body.access_token as string;
      const res = await post(fake, `cgi-bin/message/custom/typing?access_token=${access}`, {
        touser: "oA",
        command: "Typing",
      });
      assert.equal(res.body.errcode, 42001);
    }, 0);
  });

  await t.step("custom/send checks the message like WeChat", async () => {
    await withFake(async (fake) => {
      const access = (await token(fake)).body.access_token as string;
      const path = `cgi-bin/message/custom/send?access_token=${access}`;
      const code = async (body: unknown) => (await post(fake, path, body)).body.errcode;
      assert.equal(await code({ msgtype: "text", text: { content: "x" } }), 40003);
      assert.equal(await code({ touser: "oA", msgtype: "sticker" }), 40008);
      assert.equal(await code({ touser: "oA", msgtype: "text", text: { content: "" } }), 44004);
      assert.equal(
        await code({ touser: "oA", msgtype: "news", news: { articles: [{}, {}] } }),
        45008,
      );
      fake.addMedia("thumb1", new Uint8Array([1]), "image/jpeg");
      const card = { title: "t", appid: "wxm", pagepath: "p", thumb_media_id: "thumb1" };
      assert.equal(
        await code({ touser: "oA", msgtype: "miniprogrampage", miniprogrampage: card }),
        0,
      );
      assert.equal(fake.sent.length, 1);
    });
  });

  await t.step("failNext() answers the scripted errcode the given number of times", async () => {
    await withFake(async (fake) => {
      fake.failNext("/cgi-bin/stable_token", 45009, "reach max api daily quota limit", 2);
      assert.deepEqual((await token(fake)).body, {
        errcode: 45009,
        errmsg: "reach max api daily quota limit",
      });
      assert.equal((await token(fake)).body.errcode, 45009);
      assert.equal(typeof (await token(fake)).body.access_token, "string");
      assert.equal(fake.calls.length, 3);
      assert.deepEqual(fake.calls[0]?.body, {
        grant_type: "client_credential",
        appid: "wxA",
        secret: "S",
      });
    });
  });

  await t.step("failHttpNext() and dropNext() break the transport", async () => {
    await withFake(async (fake) => {
      fake.failHttpNext("cgi-bin/stable_token", 503);
      fake.dropNext("cgi-bin/stable_token");
      const res = await fetch(`${fake.url}/cgi-bin/stable_token`, { method: "POST", body: "{}" });
      assert.equal(res.status, 503);
      await res.body?.cancel();
      const dropped = await fetch(`${fake.url}/cgi-bin/stable_token`, {
        method: "POST",
        body: "{}",
      });
      await assert.rejects(dropped.text(), TypeError);
    });
  });

  await t.step("the HTTP admin routes script it from another process", async () => {
    await withFake(async (fake) => {
      const scripted = await post(fake, "__fake/fail", {
        path: "cgi-bin/stable_token",
        errcode: 40164,
      });
      assert.deepEqual(scripted.body, { ok: true });
      assert.equal((await token(fake)).body.errcode, 40164);
      const res = await fetch(`${fake.url}/__fake/state`);
      const state = await res.json();
      assert.deepEqual(state, { tokens_issued: 0, calls: 1, sent: [] });
    });
  });
});

Deno.test("fake_wechat.ts run as a script listens on PORT and prints its URL", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      new URL("../../tools/fake_wechat.ts", import.meta.url).pathname,
    ],
    env: { PORT: "0", WECHAT_APPID: "wxScript", WECHAT_SECRET: "S2" },
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let output = "";
    while (!/listening on (\S+)/.test(output)) {
      const { value, done } = await lines.read();
      if (done) break;
      output += value;
    }
    const url = /listening on (\S+)/.exec(output)?.[1];
    assert.ok(url, output);
    const res = await fetch(`${url}/cgi-bin/stable_token`, {
      method: "POST",
      body: JSON.stringify({ grant_type: "client_credential", appid: "wxScript", secret: "S2" }),
    });
    assert.equal(typeof (await res.json()).access_token, "string");
  } finally {
    child.kill("SIGTERM");
    await lines.cancel();
    await child.status;
  }
});
