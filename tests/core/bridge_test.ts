import assert from "node:assert/strict";
import { connectAgent, post, type Received, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";
const SAMPLES = new URL("../fixtures/wechat/samples/", import.meta.url);

const xml = (fields: Record<string, string>) =>
  `<xml>${Object.entries(fields).map(([k, v]) => `<${k}><![CDATA[${v}]]></${k}>`).join("")}</xml>`;

Deno.test("bridge delivers every follower message type with SPEC's envelope", async (t) => {
  const server = await startBridge({ env: { COMPANY_ID: "c-9" } });
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=alice`);
  try {
    const send = async (body: string) => {
      const res = await post(`${server.base}${B}/send_xml`, body);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, "success");
    };
    const last = (id: string) => agent.waitFor((e) => e.data["id"] === id);
    const base = { ToUserName: "gh_account", FromUserName: "oF1", CreateTime: "1348831860" };

    await t.step("text keeps ids and content as strings", async () => {
      await send(xml({ ...base, MsgType: "text", Content: "00123", MsgId: "6054768590064713728" }));
      const e = await last("6054768590064713728");
      assert.deepEqual(e.result, { code: 1001, message: "common" });
      assert.deepEqual(
        { ...e.data, seq: 0 },
        {
          id: "6054768590064713728",
          seq: 0,
          name: "oF1",
          avatar: "",
          msg_type: "text",
          contact_id: "oF1",
          company_id: "c-9",
          send_time: 1348831860,
          msg: { content: "00123", msg_id: "6054768590064713728" },
          account: "gh_account",
        },
      );
    });
    await t.step("location and link", async () => {
      await send(await Deno.readTextFile(new URL("location.xml", SAMPLES)));
      const loc = await agent.waitFor((e) => e.data["msg_type"] === "location");
      assert.equal(loc.result.code, 1006);
      assert.deepEqual(loc.data.msg, {
        latitude: 23.134521,
        longitude: 113.358803,
        scale: 20,
        label: "位置信息",
        location_x: 23.134521,
        location_y: 113.358803,
        msg_id: "1234567890123456",
      });
      await send(
        xml({
          ...base,
          MsgType: "link",
          Title: "T",
          Description: "D",
          Url: "https://x.example/",
          MsgId: "701",
        }),
      );
      const link = await last("701");
      assert.equal(link.result.code, 1007);
      assert.deepEqual(link.data.msg, {
        title: "T",
        description: "D",
        url: "https://x.example/",
        msg_id: "701",
      });
    });
    await t.step("an unknown MsgType becomes a 102 carrying type and content", async () => {
      await send(xml({ ...base, MsgType: "enim", Content: "occaecat", MsgId: "702" }));
      const e = await last("702");
      assert.equal(e.result.code, 102);
      assert.equal(e.data["contact_id"], "system01");
      assert.equal(e.data.msg?.["msg_type"], "enim");
      assert.equal(e.data.msg?.["content"], "occaecat");
    });
    await t.step("seq increases per agent", () => {
      const seqs = agent.messages().map((e) => e.data.seq!);
      assert.ok(seqs.length >= 4);
      for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1);
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("bridge routes followers to agents", async (t) => {
  const server = await startBridge();
  const url = (id: string) => `${server.wsBase}${B}/msg?userid=${id}`;
  const a = await connectAgent(url("a"));
  const a2 = await connectAgent(`${server.wsBase}/?userId=a`);
  const b = await connectAgent(url("b"));
  try {
    await t.step("four followers spread two and two, and stay put", async () => {
      for (let i = 1; i <= 4; i++) {
        await post(
          `${server.base}/send_xml`,
          textXml(`f${i}`, "gh_account", `hello ${i}`, `${100 + i}`),
        );
      }
      const owner = async (follower: string) => {
        const got = await Promise.race([
          a.waitFor((e) => e.data["contact_id"] === follower).then(() => "a"),
          b.waitFor((e) => e.data["contact_id"] === follower).then(() => "b"),
        ]);
        return got;
      };
      const owners = [];
      for (let i = 1; i <= 4; i++) owners.push(await owner(`f${i}`));
      assert.equal(owners.filter((o) => o === "a").length, 2, owners.join());
      for (let i = 1; i <= 4; i++) {
        await post(
          `${server.base}/send_xml`,
          textXml(`f${i}`, "gh_account", `again ${i}`, `${200 + i}`),
        );
      }
      for (let i = 1; i <= 4; i++) {
        const agent = owners[i - 1] === "a" ? a : b;
        await agent.waitFor((e) => e.data["id"] === `${200 + i}`);
      }
    });
    await t.step("every socket of an agent receives its messages", async () => {
      const mine = a.messages().filter((e) => e.result.code === 1001).map((e) => e.data["id"]);
      await a2.waitFor((e) => e.data["id"] === mine.at(-1));
      const theirs = a2.messages().filter((e) => e.result.code === 1001).map((e) => e.data["id"]);
      assert.deepEqual(theirs, mine);
    });
    await t.step("a ToUserName naming an agent delivers there and binds", async () => {
      const f = a.messages().find((e) => e.result.code === 1001)!.data["contact_id"] as string;
      await post(`${server.base}/send_xml`, textXml(f, "b", "to b", "301"));
      await b.waitFor((e) => e.data["id"] === "301");
      await post(`${server.base}/send_xml`, textXml(f, "gh_account", "still b", "302"));
      await b.waitFor((e) => e.data["id"] === "302");
      assert.equal(a.messages().some((e) => e.data["id"] === "302"), false);
    });
    await t.step("contacts lists each agent's followers", async () => {
      const res = await fetch(`${server.base}${B}/contacts?userid=b`);
      const body = await res.json();
      assert.equal(res.status, 200);
      assert.ok(body.contacts.length >= 3);
      for (const c of body.contacts) {
        assert.equal(typeof c.window_expires_at, "number");
        assert.ok(c.window_expires_at > Date.now() / 1000 + 47 * 3600);
      }
    });
  } finally {
    await a.close();
    await a2.close();
    await b.close();
    await server.close();
  }
});

Deno.test("bridge keeps messages for the first agent when none is online", async () => {
  const server = await startBridge();
  try {
    for (let i = 1; i <= 3; i++) {
      const res = await post(
        `${server.base}/send_xml`,
        textXml("lonely", "gh_account", `m${i}`, `${400 + i}`),
      );
      assert.equal(res.text, "success");
    }
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=late`);
    try {
      const got = await agent.waitForCount(4);
      assert.equal(got[0]!.result.code, 102);
      assert.equal(got[0]!.data.msg?.["event"], "assigned");
      assert.deepEqual(got.slice(1).map((e) => e.data.msg?.["content"]), ["m1", "m2", "m3"]);
    } finally {
      await agent.close();
    }
  } finally {
    await server.close();
  }
});

Deno.test("bridge sends the 101 heartbeat", async () => {
  const server = await startBridge({ env: { HEARTBEAT_INTERVAL_S: "1" } });
  const agent = await connectAgent(`${server.wsBase}/?userId=hb`);
  try {
    const beat: Received = await agent.waitFor((e) => e.result.code === 101, 3000);
    assert.deepEqual(beat, { data: {}, result: { code: 101, message: "heartbeat" } });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("bridge refuses bad input clearly and keeps serving", async (t) => {
  const server = await startBridge();
  const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=x`);
  try {
    await t.step("broken XML is 400", async () => {
      const res = await post(`${server.base}${B}/send_xml`, "<xml><ToUserName>x</xml>");
      assert.equal(res.status, 400);
      assert.match(res.text, /Cannot parse WeChat XML/);
    });
    await t.step("XML without FromUserName is 400", async () => {
      const res = await post(
        `${server.base}/send`,
        "<xml><ToUserName>x</ToUserName><MsgType>text</MsgType></xml>",
      );
      assert.equal(res.status, 400);
      assert.match(res.text, /FromUserName/);
    });
    await t.step("broken JSON is 400", async () => {
      const res = await post(`${server.base}${B}/send`, "{nope");
      assert.equal(res.status, 400);
      assert.match(res.text, /Cannot parse body/);
    });
    await t.step("JSON without contact_id is 400 with a -1 envelope", async () => {
      const res = await post(
        `${server.base}${B}/send`,
        JSON.stringify({ data: { msg_type: "text", msg: {} } }),
      );
      assert.equal(res.status, 400);
      const body = JSON.parse(res.text);
      assert.equal(body.result.code, -1);
      assert.match(body.result.message, /contact_id/);
    });
    await t.step("JSON to nobody is 404", async () => {
      const res = await post(
        `${server.base}${B}/send`,
        JSON.stringify({ data: { msg_type: "text", contact_id: "ghost", msg: { content: "?" } } }),
      );
      assert.equal(res.status, 404);
    });
    await t.step("unknown path 404, wrong method 405 with Allow", async () => {
      const missing = await fetch(`${server.base}/nope`);
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
      const wrong = await fetch(`${server.base}${B}/send`, { method: "PUT", body: "x" });
      assert.equal(wrong.status, 405);
      assert.equal(wrong.headers.get("allow"), "POST");
      await wrong.body?.cancel();
      // HEAD is answered wherever GET is, and the Allow header says so.
      const put = await fetch(`${server.base}/healthz`, { method: "PUT", body: "x" });
      assert.equal(put.status, 405);
      assert.equal(put.headers.get("allow"), "GET, HEAD");
      await put.body?.cancel();
      const head = await fetch(`${server.base}/healthz`, { method: "HEAD" });
      assert.equal(head.status, 200);
    });
    await t.step("a socket without userid is 400 and not upgraded", async () => {
      const res = await fetch(`${server.base}${B}/msg`, {
        headers: {
          upgrade: "websocket",
          connection: "Upgrade",
          "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
          "sec-websocket-version": "13",
        },
      });
      assert.equal(res.status, 400);
      await res.body?.cancel();
    });
    await t.step("garbage over the socket gets a -1 and the socket stays open", async () => {
      agent.send("not json");
      const err = await agent.waitFor((e) => e.result.code === -1);
      assert.match(err.result.message, /not JSON/);
      agent.send({ data: { msg_type: "text" } });
      await agent.waitFor((e) => e.result.code === -1 && /contact_id/.test(e.result.message));
      assert.equal(agent.socket.readyState, WebSocket.OPEN);
    });
    await t.step("the bridge still delivers afterwards", async () => {
      await post(`${server.base}/send_xml`, textXml("fine", "x", "ok", "501"));
      await agent.waitFor((e) => e.data["id"] === "501");
    });
  } finally {
    await agent.close();
    await server.close();
  }
});

Deno.test("bridge takes the simulator's display name in demo mode only", async (t) => {
  const demo = await startBridge();
  const agent = await connectAgent(`${demo.wsBase}${B}/msg?userid=n1`);
  try {
    await t.step("the envelope and the contact list carry it", async () => {
      await post(`${demo.base}${B}/send_xml?name=Mei%20美`, textXml("oMei", "gh", "hi", "601"));
      const e = await agent.waitFor((e) => e.data["id"] === "601");
      assert.equal(e.data["name"], "Mei 美");
      await post(`${demo.base}${B}/send_xml`, textXml("oMei", "gh", "again", "602"));
      const again = await agent.waitFor((e) => e.data["id"] === "602");
      assert.equal(again.data["name"], "Mei 美", "a learnt name names later messages");
      const body = await (await fetch(`${demo.base}${B}/contacts?userid=n1`)).json();
      assert.equal(body.contacts[0].name, "Mei 美");
    });
  } finally {
    await agent.close();
    await demo.close();
  }
  const real = await startBridge({ env: { WECHAT_APPID: "wx1", WECHAT_SECRET: "s" } });
  const agent2 = await connectAgent(`${real.wsBase}${B}/msg?userid=n2`);
  try {
    await t.step("with WeChat credentials, ?name= is ignored", async () => {
      await post(`${real.base}${B}/send_xml?name=Forged`, textXml("oReal", "gh", "hi", "603"));
      const e = await agent2.waitFor((e) => e.data["id"] === "603");
      assert.equal(e.data["name"], "oReal");
    });
  } finally {
    await agent2.close();
    await real.close();
  }
});
