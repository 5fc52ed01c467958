// Samples from other SDKs' test suites (tests/fixtures/wechat/, each with its source) replayed
// against the running bridge where the other tests do not reach: what each must become for
// agents and operators, as SPEC.md says.

import assert from "node:assert/strict";
import { post, type Received, type TestAgent, textXml } from "../helpers/agent.ts";
import { connectRoutedAgent, startBridge, type TestBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

const fixture = (path: string) =>
  Deno.readTextFile(new URL(`../fixtures/wechat/${path}`, import.meta.url));

async function postXml(server: TestBridge, xml: string, query = ""): Promise<void> {
  const res = await post(`${server.base}${B}/send_xml${query}`, xml);
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "success");
}

/** Posts a text marker and waits for it: whatever was posted before has been handled. */
async function marker(server: TestBridge, agent: TestAgent, id: string): Promise<void> {
  await postXml(server, textXml(`o-marker-${id}`, "gh_account", "marker", id));
  await agent.waitFor((e) => e.data["id"] === id);
}

async function reportCount(server: TestBridge, event: string): Promise<number> {
  const text = await (await fetch(`${server.base}/metrics`)).text();
  const line = text.split("\n").find((l) =>
    l.startsWith(`bridge_account_reports_total{event="${event}"}`)
  );
  return line === undefined ? 0 : Number(line.split(" ").at(-1));
}

const isEvent = (event: string) => (e: Received) =>
  e.result.code === 102 && e.data.msg?.["event"] === event;

Deno.test("reports on two sends finishing in one second are two reports, not a retry", async (t) => {
  const server = await startBridge();
  const agent = await connectRoutedAgent(server, "ops");
  try {
    await t.step("two template messages to one follower: both counted", async () => {
      // wechatpy's sample, and WeChat's second one (状态 failed:user block) for another send.
      const first = await fixture("wechatpy/template_send_job_finish.xml");
      const second = first.replace("200163836", "200163840")
        .replace("[success]", "[failed:user block]");
      await postXml(server, first);
      await postXml(server, second);
      await postXml(server, second); // WeChat's retry of the second
      await marker(server, agent, "9001");
      assert.equal(await reportCount(server, "TEMPLATESENDJOBFINISH"), 2);
    });
    await t.step("two mass sends finishing together both reach the agents", async () => {
      const first = await fixture("wechatpy/mass_send_job_finish.xml");
      await postXml(server, first);
      await postXml(server, first.replace("1000001625", "1000001626"));
      await postXml(server, first); // WeChat's retry of the first
      await marker(server, agent, "9002");
      const ids = agent.messages().filter(isEvent("MASSSENDJOBFINISH")).map((e) =>
        e.data.msg?.["msg_id"]
      );
      assert.deepEqual(ids, ["1000001625", "1000001626"]);
      assert.equal(await reportCount(server, "MASSSENDJOBFINISH"), 2);
    });
    await t.step("subscribe messages: the MsgID inside the list tells them apart", async () => {
      const first = await fixture("wechatpy/template_subscribe_msg_sent.xml");
      await postXml(server, first);
      await postXml(server, first.replace("1700827132819554304", "1700827132819554305"));
      await postXml(server, first);
      await marker(server, agent, "9003");
      assert.equal(await reportCount(server, "subscribe_msg_sent_event"), 2);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("wechatpy's parser samples reach the agent typed as SPEC's table says", async (t) => {
  const server = await startBridge();
  const agent = await connectRoutedAgent(server, "parser-agent");
  // The three samples share FromUserName and MsgId, which would make the later two retries of
  // the first: each is sent as from its own follower.
  const replay = async (name: string) => {
    const follower = `o-${name}`;
    const xml = (await fixture(`wechatpy_parser/${name}.xml`)).replace(
      "[fromUser]",
      `[${follower}]`,
    );
    await postXml(server, xml);
    return await agent.waitFor((e) =>
      e.data["contact_id"] === follower ||
      (e.data.msg?.["follower_id"] === follower && e.data.msg?.["event"] !== "assigned")
    );
  };
  try {
    await t.step("video: 1004 with its media and thumb ids", async () => {
      const e = await replay("video_message");
      assert.equal(e.result.code, 1004);
      assert.equal(e.data["msg_type"], "video");
      assert.equal(e.data["id"], "1234567890123456");
      assert.equal(e.data.msg?.["media_id"], "media_id");
      assert.equal(e.data.msg?.["thumb_media_id"], "thumb_media_id");
      assert.equal(e.data["send_time"], 1357290913);
    });
    await t.step("link: 1007 with title, description and url", async () => {
      const e = await replay("link_message");
      assert.equal(e.result.code, 1007);
      assert.equal(e.data["msg_type"], "link");
      assert.deepEqual(
        [e.data.msg?.["title"], e.data.msg?.["description"], e.data.msg?.["url"]],
        ["公众平台官网链接", "公众平台官网链接", "url"],
      );
      assert.equal(e.data["account"], "toUser");
    });
    await t.step(
      "device_text, a type the bridge does not take: a 102 with its content",
      async () => {
        const e = await replay("device_text");
        assert.equal(e.result.code, 102);
        assert.equal(e.data.msg?.["event"], "unknown_type");
        assert.equal(e.data.msg?.["msg_type"], "device_text");
        assert.equal(e.data.msg?.["content"], "MTIz");
        assert.equal(e.data.msg?.["device_id"], "123");
      },
    );
    await t.step("device_event keeps WeChat's Event (bind) beside unknown_type", async () => {
      const e = await replay("device_event");
      assert.equal(e.result.code, 102);
      assert.equal(e.data.msg?.["event"], "unknown_type");
      assert.equal(e.data.msg?.["msg_type"], "device_event");
      assert.equal(e.data.msg?.["wechat_event"], "bind");
      assert.match(e.data.msg?.["text"] as string, /device_event/);
    });
    await t.step("a MsgType nobody knows (notsure): a 102 naming it", async () => {
      const e = await replay("unknown_message");
      assert.equal(e.result.code, 102);
      assert.equal(e.data.msg?.["event"], "unknown_type");
      assert.equal(e.data.msg?.["msg_type"], "notsure");
      assert.equal(e.data["id"], "1234567890123456");
    });
  } finally {
    await agent.close();
    await server.close();
  }
});
