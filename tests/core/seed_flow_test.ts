import assert from "node:assert/strict";
import { connectAgent, post } from "../helpers/agent.ts";
import { SEED_XML } from "../helpers/seed.ts";
import { startBridge } from "../helpers/server.ts";

Deno.test("the seed's section 4 test works as written", async (t) => {
  const server = await startBridge({ env: { COMPANY_ID: "acme" } });
  try {
    const agent = await connectAgent(`ws://127.0.0.1:${server.port}?userId=1`, "echo");
    try {
      await t.step("the socket echoes the requested subprotocol", () => {
        assert.equal(agent.socket.protocol, "echo");
      });
      await t.step("XML posted to /send reaches agent 1 as a 102 system message", async () => {
        const res = await post(`${server.base}/send`, SEED_XML);
        assert.equal(res.status, 200);
        assert.equal(res.text, "success");
        const got = await agent.waitFor((e) =>
          e.result.code === 102 && e.data.msg?.["event"] === "unknown_type"
        );
        assert.equal(got.result.message, "common");
        assert.equal(got.data["msg_type"], "system");
        assert.equal(got.data["contact_id"], "system01");
        assert.equal(got.data["company_id"], "acme");
        assert.equal(got.data["id"], "19");
        assert.equal(got.data.msg?.["msg_type"], "enim");
        assert.equal(got.data.msg?.["content"], "occaecat ut in fugiat dolor");
        assert.equal(got.data.msg?.["follower_id"], "魏秀兰");
        // 1976-04-10 12:21:47 in China (+08:00).
        assert.equal(got.data["send_time"], Date.UTC(1976, 3, 10, 4, 21, 47) / 1000);
        assert.equal(typeof got.data.seq, "number");
      });
      await t.step("XML on /send is timed as WeChat's webhook", async () => {
        const text = await (await fetch(`${server.base}/metrics`)).text();
        assert.match(text, /^bridge_webhook_duration_seconds_count 1$/m);
      });
      await t.step("the 2.1 JSON posted to /send reaches agent 1", async () => {
        const body = {
          data: { msg_type: "text", contact_id: "1", msg: { content: "hello agent" } },
          result: { code: 1001, message: "common" },
        };
        const res = await post(`${server.base}/send`, JSON.stringify(body), {
          "content-type": "application/json",
        });
        assert.equal(res.status, 200, res.text);
        const got = await agent.waitFor((e) => e.data.msg?.["content"] === "hello agent");
        assert.equal(got.result.code, 1001);
        assert.equal(got.data["msg_type"], "text");
      });
      await t.step(
        'a code written as a string (the seed\'s "102") arrives as a number',
        async () => {
          const body = {
            data: { msg_type: "system", contact_id: "1", msg: { content: "notice" } },
            result: { code: "102", message: "common" },
          };
          const res = await post(`${server.base}/send`, JSON.stringify(body));
          assert.equal(res.status, 200, res.text);
          const got = await agent.waitFor((e) => e.data.msg?.["content"] === "notice");
          assert.deepEqual(got.result, { code: 102, message: "common" });
        },
      );
    } finally {
      await agent.close();
    }
  } finally {
    await server.close();
  }
});
