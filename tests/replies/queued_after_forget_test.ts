// A reply waiting its turn behind another to the same follower (one follower's replies leave in
// order) when the follower revoked its authorization (user_authorization_revoke: its data is
// forgotten) was still sent to WeChat once its turn came. After the revoke nothing more goes to
// that follower: the waiting reply is dropped, its socket agent is told nothing of it (as for a
// late outcome after a forget: the revoke's notice already dropped the conversation), and an
// HTTP caller still waiting is answered 410. As an agent over a real socket and `POST send`
// against the fake WeChat, on every store main.ts can open.

import assert from "node:assert/strict";
import { post, type Received, textXml } from "../helpers/agent.ts";
import { everyStore, revokeXml, withBridge } from "./_reply_env.ts";

const B = "/im_component/wx_official_account";
const AGENT = "qa";
const stores = await everyStore("queued_forget");

/** Whether an envelope is about the queued reply (client_id "queued"). */
const aboutQueued = (e: Received) => JSON.stringify(e).includes('"client_id":"queued"');

for (const store of stores) {
  Deno.test(`a reply waiting its turn when its follower is forgotten is not sent (${store.name})`, async () => {
    await withBridge(
      store,
      { appId: "wxqueued", agentId: AGENT },
      async ({ server, fake, agent, gate }) => {
        const res = await post(
          `${server.base}${B}/send_xml`,
          textXml("oQueued", "gh", "hi", "8830001"),
        );
        assert.equal(`${res.status} ${res.text}`, "200 success");
        await agent.waitFor((e) => e.data["id"] === "8830001");
        const reply = (clientId: string) =>
          fetch(`${server.base}${B}/send?userid=${AGENT}`, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify({
              data: {
                msg_type: "text",
                contact_id: "oQueued",
                client_id: clientId,
                msg: { content: clientId },
              },
            }),
          });
        // The first reply is at WeChat, unanswered; the second waits its turn behind it.
        const held = gate.holdNext();
        const first = reply("first");
        await held;
        const queued = reply("queued");
        await agent.waitFor((e) => aboutQueued(e) && e.data["status"] === "sending");
        const revoked = await post(`${server.base}${B}/send_xml`, revokeXml("oQueued"));
        assert.equal(revoked.status, 200, revoked.text);
        const told = agent.messages().length;

        gate.release();
        assert.equal((await first).status, 200);
        const answer = await queued;
        const body = await answer.json();
        assert.equal(answer.status, 410, JSON.stringify(body));
        assert.match(body.result.message, /Not sent: .*revoked its authorization/);
        assert.equal(body.data.client_id, "queued");
        // Nothing more went to WeChat for the follower, now or later.
        await new Promise((r) => setTimeout(r, 300));
        assert.deepEqual(
          fake.sent.map((m) => (m["text"] as Record<string, unknown>)["content"]),
          ["first"],
        );
        assert.deepEqual(agent.messages().slice(told).filter(aboutQueued), [], "told nothing");
      },
    );
  });
}

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);

for (const store of stores) {
  Deno.test(`a media_url reply whose follower is forgotten during its upload is not sent (${store.name})`, async () => {
    const files = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response(PNG, { headers: { "content-type": "image/png" } }),
    );
    try {
      await withBridge(store, {
        appId: "wxqueued",
        agentId: AGENT,
        gatePath: "/cgi-bin/media/upload",
        env: { MEDIA_URL_PRIVATE_HOSTS: `127.0.0.1:${files.addr.port}` },
      }, async ({ server, fake, agent, gate }) => {
        const res = await post(
          `${server.base}${B}/send_xml`,
          textXml("oUpload", "gh", "hi", "8840001"),
        );
        assert.equal(`${res.status} ${res.text}`, "200 success");
        await agent.waitFor((e) => e.data["id"] === "8840001");
        const held = gate.holdNext();
        const answer = fetch(`${server.base}${B}/send?userid=${AGENT}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            data: {
              msg_type: "image",
              contact_id: "oUpload",
              client_id: "queued",
              msg: { media_url: `http://127.0.0.1:${files.addr.port}/pic.png` },
            },
          }),
        });
        await held;
        const revoked = await post(`${server.base}${B}/send_xml`, revokeXml("oUpload"));
        assert.equal(revoked.status, 200, revoked.text);
        const told = agent.messages().length;

        gate.release();
        const res410 = await answer;
        const body = await res410.json();
        assert.equal(res410.status, 410, JSON.stringify(body));
        await new Promise((r) => setTimeout(r, 300));
        assert.deepEqual(fake.sent, [], "nothing sent");
        assert.deepEqual(agent.messages().slice(told).filter(aboutQueued), [], "told nothing");
      });
    } finally {
      await files.shutdown();
    }
  });
}
