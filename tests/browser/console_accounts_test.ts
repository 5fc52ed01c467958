// The console with several official accounts (ACCOUNTS_FILE): a page opened with `account=`
// serves that account for an agent of several, its socket and requests naming it, and never
// shows another account's followers.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { B, browserTest, followerXml, openPage } from "./browser.ts";

browserTest("console?account= serves one account for an agent of several", async (t, browser) => {
  const dir = await Deno.makeTempDir({ prefix: "console-accounts-" });
  const file = `${dir}/accounts.json`;
  // Demo accounts (no WeChat credentials): replies go to each account's own outbox.
  await Deno.writeTextFile(
    file,
    JSON.stringify({
      accounts: [
        { id: "brand-a", original_id: "gh_brand_a", agents: ["alice", "carol"] },
        { id: "brand-b", original_id: "gh_brand_b", agents: ["bob", "carol"] },
      ],
    }),
    { mode: 0o600 },
  );
  const server = await startBridge({ env: { ACCOUNTS_FILE: file } });
  const write = async (account: string, original: string, from: string, content: string) => {
    const res = await fetch(`${server.base}${B}/send_xml/${account}`, {
      method: "POST",
      body: followerXml(from, { ToUserName: original, MsgType: "text", Content: content }),
    });
    assert.equal(await res.text(), "success");
  };
  try {
    const { page } = await openPage(browser);
    await page.goto(`${server.base}/console?userid=carol&account=brand-b`);
    await page.locator('#conn[data-state="connected"]').waitFor();

    await t.step("brand B's follower shows; brand A's never does", async () => {
      await write("brand-a", "gh_brand_a", "oAnt", "from brand A");
      await write("brand-b", "gh_brand_b", "oBee", "from brand B");
      await page.locator('.contact[data-contact-id="oBee"]').waitFor();
      assert.equal(await page.locator('.contact[data-contact-id="oAnt"]').count(), 0);
    });

    await t.step("a reply goes to brand B's outbox, not brand A's", async () => {
      await page.locator('.contact[data-contact-id="oBee"]').click();
      await page.locator("#reply").fill("B here");
      await page.keyboard.press("Enter");
      await page.locator('.msg.out[data-status="sent"]').waitFor();
      const replies = async (account: string, contact: string) => {
        const res = await fetch(
          `${server.base}${B}/demo/replies?contact_id=${contact}&since=0&account=${account}`,
        );
        return (await res.json()).replies as Array<{ msg: { content: string } }>;
      };
      assert.deepEqual((await replies("brand-b", "oBee")).map((r) => r.msg.content), ["B here"]);
      assert.deepEqual(await replies("brand-a", "oBee"), []);
    });
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
