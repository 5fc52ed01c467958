// The files of a follower forgotten just before a crash: the revoke was answered `success`, and
// the deletion, which runs after, was cut by kill -9. The forget's record, written before the
// store forgot, is finished at the next start: the file goes then.

import assert from "node:assert/strict";
import { startFakeWechat } from "../../tools/fake_wechat.ts";
import { connectAgent, post } from "../helpers/agent.ts";
import { type MainProcess, startMain } from "../helpers/main_process.ts";
import { imageXml, png, revokeXml } from "./_forget_media.ts";
import { fileExists } from "../store/_durable_store_cases.ts";

const B = "/im_component/wx_official_account";

Deno.test("a follower forgotten right before kill -9 loses its files at the next start (sqlite)", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-forget-crash-" });
  const fake = await startFakeWechat({ appId: "wxtest", secret: "secret" });
  const env = {
    STORE: "sqlite",
    DATA_DIR: dataDir,
    WECHAT_APPID: "wxtest",
    WECHAT_SECRET: "secret",
    WECHAT_API_BASE: fake.url,
    MEDIA_ALLOWED_HOSTS: new URL(fake.url).host,
  };
  let main: MainProcess | undefined;
  try {
    main = await startMain(env);
    const agent = await connectAgent(`${main.wsBase}${B}/msg?userid=A`);
    let url: string;
    try {
      fake.addMedia("gone-img", png(13), "image/png", "photo.png");
      const sent = await post(
        `${main.base}${B}/send_xml`,
        imageXml("oGone", "gone-img", "88000001"),
      );
      assert.equal(sent.text, "success");
      const got = await agent.waitFor((e) => e.data["id"] === "88000001", 15_000);
      url = got.data.msg!["media_path"] as string;
    } finally {
      await agent.close();
    }
    const key = new URL(url).pathname.split("/").at(-1)!;
    const file = `${dataDir}/media/${key.slice(0, 2)}/${key}`;
    assert.ok(fileExists(file));
    // Another follower's picture still downloading holds the deletion back (it may be the same
    // file): the crash certainly comes before it.
    fake.addMedia("other-img", png(17), "image/png", "photo.png");
    fake.delay("cgi-bin/media/get", 10_000);
    const other = await post(
      `${main.base}${B}/send_xml`,
      imageXml("oOther", "other-img", "88000002"),
    );
    assert.equal(other.text, "success");
    const revoked = await post(`${main.base}${B}/send_xml`, revokeXml("oGone"));
    assert.equal(revoked.text, "success");
    await main.stop();
    main = undefined;
    assert.ok(fileExists(file), "the crash came before the deletion");

    fake.delay("cgi-bin/media/get", 0);
    main = await startMain(env);
    const deadline = Date.now() + 15_000;
    while (fileExists(file)) {
      if (Date.now() > deadline) throw new Error("the forgotten follower's file stayed");
      await new Promise((r) => setTimeout(r, 20));
    }
    const renewal = await fetch(
      `${main.base}${B}/media_url?userid=A&url=${encodeURIComponent(url)}`,
    );
    await renewal.body?.cancel();
    assert.equal(renewal.status, 404);
    const opened = await fetch(url.replace(/^http:\/\/[^/]+/, main.base));
    await opened.body?.cancel();
    assert.equal(opened.status, 404);
  } finally {
    await main?.stop();
    await fake.close();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});
