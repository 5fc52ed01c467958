// Issue 14, item 1: nobody can crash the bridge by holding connections. A main.ts process under
// `ulimit -n 1024` gets 1,100 requests that never finish (half their headers, or a body that
// stalls) with no credentials; it must stay up and answer /healthz and a signed webhook.

import assert from "node:assert/strict";
import { computeSignature } from "../../src/wechat/signature.ts";
import { connectAgent, textXml } from "../helpers/agent.ts";
import { spawnBridge, waitReady } from "../helpers/spawn.ts";

const B = "/im_component/wx_official_account";
const TOKEN = "connections-test-token";
const encoder = new TextEncoder();

/** Opens `n` connections that each send a request they never finish. */
async function holdHalfSentRequests(port: number, n: number): Promise<Deno.Conn[]> {
  const held: Deno.Conn[] = [];
  for (let i = 0; i < n; i++) {
    // Refused or reset once the bridge is full: that is the point, keep going.
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      held.push(conn);
      const half = i % 2 === 0
        ? "GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: "
        : `POST ${B}/send_xml HTTP/1.1\r\nHost: bridge\r\nContent-Length: 4000\r\n\r\n<xml>`;
      await conn.write(encoder.encode(half));
    } catch { /* refused */ }
  }
  return held;
}

function signedQuery(): string {
  const timestamp = String(Math.floor(Date.now() / 1000));
  const nonce = "n" + crypto.randomUUID().slice(0, 8);
  return `timestamp=${timestamp}&nonce=${nonce}&signature=${
    computeSignature(TOKEN, timestamp, nonce)
  }`;
}

Deno.test("1,100 half-sent requests at a 1,024-descriptor limit do not take the bridge down", async (t) => {
  const bridge = spawnBridge({ WECHAT_TOKEN: TOKEN }, { openFiles: 1024 });
  let held: Deno.Conn[] = [];
  try {
    await waitReady(bridge);
    const agent = await connectAgent(`${bridge.wsBase}${B}/msg?userid=alice`);
    await agent.waitFor((e) => e.result.code === 101 || e.result.code === 102, 5000).catch(
      () => {},
    );

    await t.step("the attack: 1,100 connections that never finish a request", async () => {
      held = await holdHalfSentRequests(bridge.port, 1100);
      let exited = false;
      bridge.status.then(() => exited = true);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(exited, false, JSON.stringify(await Promise.race([bridge.output, "alive"])));
    });

    await t.step("the bridge still answers /healthz", async () => {
      const res = await fetch(`${bridge.base}/healthz`);
      assert.equal(`${res.status} ${await res.text()}`, '200 {"status":"ok"}');
    });

    await t.step("and a signed webhook, delivered to the agent", async () => {
      const xml = textXml("oFollower1", "gh_account", "still here", "91001");
      const res = await fetch(`${bridge.base}${B}/send_xml?${signedQuery()}`, {
        method: "POST",
        body: xml,
      });
      assert.equal(`${res.status} ${await res.text()}`, "200 success");
      const got = await agent.waitFor((e) => e.data.msg?.["content"] === "still here", 10_000);
      assert.equal(got.data.contact_id, "oFollower1");
    });

    await t.step("the agent's socket opened before the attack is still open", () => {
      assert.equal(agent.socket.readyState, WebSocket.OPEN);
    });
    await agent.close();
  } finally {
    for (const conn of held) {
      try {
        conn.close();
      } catch { /* closed by the bridge */ }
    }
    const status = await bridge.stop();
    const { stderr, stdout } = await bridge.output;
    assert.doesNotMatch(stdout + stderr, /Too many open files|panicked/);
    assert.equal(status.code, 0, stderr);
  }
});

Deno.test("out of descriptors anyway (MAX_CONNECTIONS above the limit): logged, survived", async () => {
  // The cap is what normally keeps accept() from failing; set too high, accept fails with
  // "Too many open files" in our loop and in Deno.serve's, and neither may end the process.
  const bridge = spawnBridge({ WECHAT_TOKEN: TOKEN, MAX_CONNECTIONS: "3000" }, { openFiles: 1024 });
  let held: Deno.Conn[] = [];
  try {
    await waitReady(bridge);
    held = await holdHalfSentRequests(bridge.port, 1100);
    // Closing what we hold frees descriptors; the bridge must then answer again.
    for (const conn of held) {
      try {
        conn.close();
      } catch { /* closed by the bridge */ }
    }
    held = [];
    const deadline = performance.now() + 20_000;
    let answer = "";
    while (performance.now() < deadline) {
      try {
        const res = await fetch(`${bridge.base}/healthz`, { signal: AbortSignal.timeout(2000) });
        answer = `${res.status} ${await res.text()}`;
        if (res.status === 200) break;
      } catch (error) {
        answer = String(error);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(answer, '200 {"status":"ok"}');
    const xml = textXml("oFollower2", "gh_account", "after the storm", "91002");
    const res = await fetch(`${bridge.base}${B}/send_xml?${signedQuery()}`, {
      method: "POST",
      body: xml,
    });
    assert.equal(`${res.status} ${await res.text()}`, "200 success");
  } finally {
    for (const conn of held) {
      try {
        conn.close();
      } catch { /* closed by the bridge */ }
    }
    const status = await bridge.stop();
    const { stderr, stdout } = await bridge.output;
    assert.doesNotMatch(stdout + stderr, /Uncaught|panicked/);
    assert.equal(status.code, 0, stderr);
  }
});
