import { Buffer } from "node:buffer";
import assert from "node:assert/strict";
import { startBridge } from "../helpers/server.ts";
import { browserTest, makePng, openConsole, openPage, PHONE, screenshot } from "./browser.ts";

const FOLLOWER = "oSimFollower01";

browserTest(
  "simulator's message reaches the console and the reply comes back",
  async (t, browser) => {
    const server = await startBridge();
    try {
      const agent = await openPage(browser);
      await openConsole(agent.page, server.base, "agent1");

      const sim = await openPage(browser);
      const requests: Array<{ url: string; body: string | null }> = [];
      sim.page.on("request", (req) => {
        if (req.method() === "POST") requests.push({ url: req.url(), body: req.postData() });
      });
      await sim.page.goto(`${server.base}/console/follower`);
      await sim.page.locator("#follower-id").fill(FOLLOWER);
      await sim.page.locator("#follower-name").fill("Lin 林");
      await sim.page.getByRole("button", { name: "Switch" }).click();
      const contact = agent.page.locator(`.contact[data-contact-id="${FOLLOWER}"]`);

      await t.step("a text goes out as WeChat's XML and shows in the console", async () => {
        await sim.page.locator("#text").fill("你好, is anyone there?");
        await sim.page.locator("#text").press("Enter");
        await sim.page.locator('.row.mine[data-state="sent"]', {
          hasText: "你好, is anyone there?",
        }).waitFor();
        const post = requests.find((r) =>
          new URL(r.url).pathname.endsWith("/im_component/wx_official_account/send_xml")
        );
        assert.ok(post?.body, JSON.stringify(requests));
        // Demo mode takes the simulator's display name; WeChat itself never sends one.
        assert.equal(new URL(post.url).searchParams.get("name"), "Lin 林");
        assert.match(post.body, /<ToUserName><!\[CDATA\[gh_demo\]\]><\/ToUserName>/);
        assert.match(
          post.body,
          new RegExp(`<FromUserName><!\\[CDATA\\[${FOLLOWER}\\]\\]></FromUserName>`),
        );
        assert.match(post.body, /<CreateTime>\d{10}<\/CreateTime>/);
        assert.match(post.body, /<MsgType><!\[CDATA\[text\]\]><\/MsgType>/);
        assert.match(post.body, /<Content><!\[CDATA\[你好, is anyone there\?\]\]><\/Content>/);
        assert.match(post.body, /<MsgId><!\[CDATA\[\d{15,20}\]\]><\/MsgId>/);
        await contact.click();
        await agent.page.locator(".msg.in", { hasText: "你好, is anyone there?" }).waitFor();
        await contact.filter({ hasText: "Lin 林" }).waitFor();
      });

      await t.step("the agent's reply comes back to the simulator", async () => {
        await agent.page.locator("#reply").fill("Hi Lin, 我在。How can I help?");
        await agent.page.locator("#reply").press("Enter");
        await agent.page.locator('.msg.out[data-status="sent"]').waitFor();
        await sim.page.locator(".row.reply", { hasText: "Hi Lin, 我在。How can I help?" })
          .waitFor();
      });

      await t.step(
        "a picture is uploaded, sent as an image message, and shown inline",
        async () => {
          const png = Buffer.from(await makePng(240, 160));
          await sim.page.locator("#picture").setInputFiles({
            name: "receipt.png",
            mimeType: "image/png",
            buffer: png,
          });
          await sim.page.locator('.row.mine[data-state="sent"] img').waitFor();
          const upload = requests.find((r) => r.url.endsWith("/demo/media"));
          assert.ok(upload, "no upload to demo/media");
          const xml = requests.filter((r) =>
            new URL(r.url).pathname.endsWith("/send_xml")
          ).at(-1)?.body ?? "";
          assert.match(xml, /<MsgType><!\[CDATA\[image\]\]><\/MsgType>/);
          assert.match(xml, /<PicUrl><!\[CDATA\[http[^\]]+\]\]><\/PicUrl>/);
          assert.match(xml, /<MediaId><!\[CDATA\[[^\]]+\]\]><\/MediaId>/);
          await agent.page.locator(".msg.in.type-image img").waitFor();
          await agent.page.waitForFunction(
            "[...document.querySelectorAll('.msg.in.type-image img')].some((i) => i.complete && i.naturalWidth === 240)",
          );
          await sim.page.waitForFunction(
            "[...document.querySelectorAll('.row.mine img')].some((i) => i.complete && i.naturalWidth === 240)",
          );
        },
      );

      await screenshot(agent.page, "console-laptop-simulated-follower");
      await screenshot(sim.page, "follower-laptop");
      await sim.page.setViewportSize(PHONE);
      await screenshot(sim.page, "follower-phone");
    } finally {
      await server.close();
    }
  },
);
