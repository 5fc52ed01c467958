// The console with several official accounts (ACCOUNTS_FILE): a page opened with `account=`
// serves that account for an agent of several, its socket and requests naming it, and never
// shows another account's followers. Drafts were kept per agent only: in an agent's two tabs,
// one per account, a contact id both accounts have (a colleague, or a follower id in demo mode)
// had one draft, so what was typed in one tab showed in the other's box, and a send there wiped it.
// What a reload keeps (followers handed over, system messages) was per agent only too: brand A's
// follower, handed to a colleague, was listed in carol's brand B tab.

import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { B, browserTest, followerXml, openPage, openTab } from "./browser.ts";

/** Writes accounts.json for brand A (alice, carol) and brand B (bob, carol), in a temp dir. */
async function accountsFile(): Promise<{ dir: string; file: string }> {
  const dir = await Deno.makeTempDir({ prefix: "console-accounts-" });
  const file = `${dir}/accounts.json`;
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
  return { dir, file };
}

browserTest("an agent's tabs for two accounts keep their own drafts", async (_t, browser) => {
  const { dir, file } = await accountsFile();
  const server = await startBridge({ env: { ACCOUNTS_FILE: file } });
  try {
    for (
      const [account, original] of [["brand-a", "gh_brand_a"], ["brand-b", "gh_brand_b"]] as const
    ) {
      const res = await fetch(`${server.base}${B}/send_xml/${account}`, {
        method: "POST",
        body: followerXml("oSame", { ToUserName: original, MsgType: "text", Content: account }),
      });
      assert.equal(await res.text(), "success");
    }
    const { context, page: a } = await openPage(browser);
    const b = await openTab(context);
    for (const [page, account] of [[a, "brand-a"], [b, "brand-b"]] as const) {
      await page.bringToFront();
      await page.goto(`${server.base}/console?userid=carol&account=${account}`);
      await page.locator('#conn[data-state="connected"]').waitFor();
      await page.locator('.contact[data-contact-id="oSame"]').click();
      await page.locator(".msg.in", { hasText: account }).waitFor();
    }
    await a.bringToFront();
    await a.locator("#reply").fill("brand A's refund is on its way");
    await b.bringToFront();
    await b.locator("#reply").fill("brand B: which order?");
    await b.locator("#reply").press("Enter");
    await b.locator('.msg.out[data-status="sent"]', { hasText: "which order" }).waitFor();
    assert.equal(await a.locator("#reply").inputValue(), "brand A's refund is on its way");
    await a.reload();
    await a.locator('#conn[data-state="connected"]').waitFor();
    await a.locator('.contact[data-contact-id="oSame"]').click();
    assert.equal(
      await a.locator("#reply").inputValue(),
      "brand A's refund is on its way",
      "brand A's draft lost",
    );
    await b.bringToFront();
    await b.reload();
    await b.locator('#conn[data-state="connected"]').waitFor();
    await b.locator('.contact[data-contact-id="oSame"]').click();
    assert.equal(await b.locator("#reply").inputValue(), "", "brand A's draft in brand B");
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

browserTest(
  "a follower handed over in one account is not listed in the other's tab",
  async (_t, browser) => {
    const { dir, file } = await accountsFile();
    const server = await startBridge({ env: { ACCOUNTS_FILE: file } });
    try {
      const write = async (account: string, original: string, from: string) => {
        const res = await fetch(`${server.base}${B}/send_xml/${account}`, {
          method: "POST",
          body: followerXml(from, { ToUserName: original, MsgType: "text", Content: "hello" }),
        });
        assert.equal(await res.text(), "success");
      };
      const { context, page: a } = await openPage(browser);
      await a.goto(`${server.base}/console?userid=carol&account=brand-a`);
      await a.locator('#conn[data-state="connected"]').waitFor();
      await write("brand-a", "gh_brand_a", "oAnt");
      await a.locator('.contact[data-contact-id="oAnt"]').click();
      // Alice comes on shift in brand A, to take the follower carol hands over.
      const alice = await openPage(browser);
      await alice.page.goto(`${server.base}/console?userid=alice&account=brand-a`);
      await alice.page.locator('#conn[data-state="connected"]').waitFor();
      await a.bringToFront();
      await a.locator("#transfer-button").click();
      await a.locator("#transfer-to").fill("alice");
      await a.locator("#transfer-submit").click();
      await a.locator('#transferred-list .contact[data-contact-id="oAnt"]').waitFor();
      // What a reload keeps of it (saved half a second after) is in this browser's storage.
      await a.waitForFunction(
        `Object.keys(localStorage).some((k) => localStorage.getItem(k).includes('"oAnt"'))`,
      );

      const b = await openTab(context);
      await write("brand-b", "gh_brand_b", "oBee");
      await b.goto(`${server.base}/console?userid=carol&account=brand-b`);
      await b.locator('#conn[data-state="connected"]').waitFor();
      await b.locator('#contact-list .contact[data-contact-id="oBee"]').waitFor();
      assert.equal(
        await b.locator('.contact[data-contact-id="oAnt"]').count(),
        0,
        "brand A's follower listed in brand B",
      );
    } finally {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);

browserTest("console?account= serves one account for an agent of several", async (t, browser) => {
  const { dir, file } = await accountsFile();
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
