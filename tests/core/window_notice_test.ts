import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const HOUR = 3600_000;

Deno.test("agents are told when a follower's 48-hour window is closing and closed", async (t) => {
  let clock = Date.UTC(2026, 10, 30, 2, 0, 0);
  const server = await startBridge({ now: () => clock });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=w1`);
  const notices = (event: string) =>
    agent.messages().filter((e) => e.result.code === 102 && e.data.msg?.["event"] === event);
  try {
    await post(`${server.base}${B}/send_xml`, textXml("oWin", "w1", "hi", "9100001"));
    await agent.waitFor((e) => e.data["id"] === "9100001");

    await t.step("nothing is due inside the window", async () => {
      clock += 40 * HOUR;
      assert.equal(await server.bridge.sweepWindows(), 0);
    });
    await t.step("an hour before it closes, a window_closing notice, once", async () => {
      clock += 7.5 * HOUR;
      assert.equal(await server.bridge.sweepWindows(), 1);
      const notice = await agent.waitFor((e) => e.data.msg?.["event"] === "window_closing");
      assert.equal(notice.data["contact_id"], "system01");
      assert.equal(notice.data.msg?.["follower_id"], "oWin");
      assert.equal(
        notice.data.msg?.["closes_at"],
        Math.floor((clock - 47.5 * HOUR + 48 * HOUR) / 1000),
      );
      assert.equal(typeof notice.data.seq, "number");
      assert.equal(await server.bridge.sweepWindows(), 0);
    });
    await t.step("once closed, a window_expired notice, once", async () => {
      clock += 1 * HOUR;
      assert.equal(await server.bridge.sweepWindows(), 1);
      await agent.waitFor((e) => e.data.msg?.["event"] === "window_expired");
      assert.equal(await server.bridge.sweepWindows(), 0);
      assert.equal(notices("window_expired").length, 1);
    });
    await t.step("a new message opens the window again and resets the notices", async () => {
      await post(`${server.base}${B}/send_xml`, textXml("oWin", "w1", "back", "9100002"));
      await agent.waitFor((e) => e.data["id"] === "9100002");
      assert.equal(await server.bridge.sweepWindows(), 0);
      clock += 47.5 * HOUR;
      assert.equal(await server.bridge.sweepWindows(), 1);
      await agent.waitFor(() => notices("window_closing").length === 2);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("the running server sweeps windows on its own timer (WINDOW_SWEEP_INTERVAL_S)", async () => {
  let clock = Date.UTC(2026, 10, 30, 2, 0, 0);
  const server = await startBridge({ env: { WINDOW_SWEEP_INTERVAL_S: "1" }, now: () => clock });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=w2`);
  try {
    await post(`${server.base}${B}/send_xml`, textXml("oTimer", "w2", "hi", "9100101"));
    await agent.waitFor((e) => e.data["id"] === "9100101");
    clock += 47.5 * HOUR;
    // Nobody calls sweepWindows(): the notice comes from the server's own timer.
    const notice = await agent.waitFor((e) => e.data.msg?.["event"] === "window_closing", 5000);
    assert.equal(notice.data.msg?.["follower_id"], "oTimer");
  } finally {
    await agent.close();
    await server.close();
  }
});
