// SPEC "Routing": a reply to a follower no agent serves claims it for the replier, the team is
// told, and a reply to a follower another agent serves is refused with 409. Real sockets, a
// real server; also the team routes the console uses beside it (agents, quick replies, search).

import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";
import { event, startFullTeam } from "../helpers/full_team.ts";

const B = "/im_component/wx_official_account";

Deno.test("a reply claims a waiting follower for its agent; the other agent is told and refused", async (t) => {
  const team = await startFullTeam();
  const { server, alice, bob, command } = team;
  const reply = (agent: typeof alice, text: string, clientId: string) =>
    agent.send({
      data: { msg_type: "text", contact_id: "oWait", client_id: clientId, msg: { content: text } },
    });
  try {
    await t.step("both agents see the follower start waiting, with what it asked", async () => {
      await post(
        `${server.base}${B}/send_xml`,
        textXml("oWait", "gh_acct", "退货怎么办", "7100001", String(Math.floor(Date.now() / 1000))),
      );
      for (const agent of [alice, bob]) {
        const notice = await agent.waitFor(event("waiting", "oWait"));
        assert.equal(notice.data.msg?.["preview"], "退货怎么办");
      }
      const listed = await (await fetch(`${server.base}${B}/contacts?userid=bob`)).json();
      assert.deepEqual(listed.waiting.map((w: { contact_id: string }) => w.contact_id), ["oWait"]);
    });

    await t.step("alice's reply takes it: bound, off the list, bob told", async () => {
      reply(alice, "您好，我来处理", "c-a1");
      await alice.waitFor((e) => e.data["id"] === "7100001");
      await alice.waitFor((e) => e.data.msg?.["event"] === "reply_sent");
      const told = await bob.waitFor(event("claimed", "oWait"));
      assert.equal(told.data.msg?.["agent_id"], "alice");
      const contact = await server.store.getContact("oWait");
      assert.equal(contact?.agent_id, "alice");
      const listed = await (await fetch(`${server.base}${B}/contacts?userid=bob`)).json();
      assert.deepEqual(listed.waiting, []);
    });

    await t.step("bob's reply is refused, over the socket and over HTTP (409)", async () => {
      reply(bob, "我也来", "c-b1");
      const refused = await bob.waitFor((e) =>
        e.result.code === -1 && e.data["client_id"] === "c-b1"
      );
      assert.match(refused.result.message, /served by alice/);
      assert.equal(refused.data["served_by"], "alice");
      const http = await command("bob", {
        msg_type: "text",
        contact_id: "oWait",
        msg: { content: "again" },
      });
      assert.equal(http.status, 409);
      assert.equal(http.body.data.served_by, "alice");
    });

    await t.step("closed, it is bob's to take with the claim command", async () => {
      alice.send({ data: { msg_type: "close", contact_id: "oWait", msg: {} } });
      await alice.waitFor(event("closed", "oWait"));
      const claimed = await command("bob", { msg_type: "claim", contact_id: "oWait", msg: {} });
      assert.equal(claimed.status, 200);
      const again = await command("alice", { msg_type: "claim", contact_id: "oWait", msg: {} });
      assert.equal(again.status, 409, "a follower bob serves is not alice's to claim");
      assert.match(again.body.result.message, /served by bob/);
      assert.equal(again.body.data.contact_id, "oWait");
      assert.equal(again.body.data.served_by, "bob", "and it says who does, as a reply's does");
      alice.send({
        data: { msg_type: "claim", contact_id: "oWait", client_id: "c-claim", msg: {} },
      });
      const refused = await alice.waitFor((e) =>
        e.result.code === -1 && e.data["client_id"] === "c-claim"
      );
      assert.equal(refused.data["contact_id"], "oWait");
      assert.equal(refused.data["served_by"], "bob", "over the socket too");
      await alice.waitFor((e) =>
        event("claimed", "oWait")(e) && e.data.msg?.["agent_id"] === "bob"
      );
    });

    await t.step("the agents route lists presence and load", async () => {
      const body = await (await fetch(`${server.base}${B}/agents?userid=alice`)).json();
      assert.deepEqual(
        body.agents.map((a: { agent_id: string; online: boolean; load: number }) => [
          a.agent_id,
          a.online,
          a.load,
        ]),
        [["alice", true, 0], ["bob", true, 1]],
      );
      const missing = await fetch(`${server.base}${B}/agents`);
      assert.equal(missing.status, 400, "an agent route needs a userid");
      await missing.body?.cancel();
    });
  } finally {
    await team.close();
  }
});

Deno.test("quick replies are the team's: saved, listed, replaced, removed, bounded", async () => {
  const server = await startBridge();
  try {
    const save = (body: unknown, as = "alice") =>
      fetch(`${server.base}${B}/quick_replies?userid=${as}`, {
        method: "POST",
        body: JSON.stringify(body),
      });
    const created = await save({ title: "问候", text: "{name}，您好！" });
    assert.equal(created.status, 201);
    const { quick_reply: q } = await created.json();
    assert.equal(q.updated_by, "alice");
    const replaced = await save({
      id: q.id,
      title: "问候",
      text: "{name}，您好，请问有什么可以帮您？",
    }, "bob");
    assert.equal(replaced.status, 200);
    await replaced.body?.cancel();
    const bad = await save({ title: "", text: "x" });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
    // Both paths, as every route.
    const listed = await (await fetch(`${server.base}/quick_replies?userid=carol`)).json();
    assert.deepEqual(listed.quick_replies.map((r: { text: string }) => r.text), [
      "{name}，您好，请问有什么可以帮您？",
    ]);
    const del = await fetch(`${server.base}${B}/quick_replies/${q.id}?userid=alice`, {
      method: "DELETE",
    });
    assert.equal(del.status, 200);
    await del.body?.cancel();
    const again = await fetch(`${server.base}${B}/quick_replies/${q.id}?userid=alice`, {
      method: "DELETE",
    });
    assert.equal(again.status, 404);
    await again.body?.cancel();
  } finally {
    await server.close();
  }
});

Deno.test("search finds text in the agent's conversations, newest first, paged", async () => {
  const server = await startBridge();
  const alice = await connectAgent(`${server.wsBase}${B}/msg?userid=alice`);
  try {
    for (let i = 1; i <= 30; i++) {
      const text = i % 2 === 0 ? `订单 ${i} 退款` : `hello ${i}`;
      await post(`${server.base}${B}/send_xml`, textXml(`oS${i % 3}`, "alice", text, `72000${i}`));
    }
    await alice.waitFor((e) => e.data["id"] === "7200030");
    const first =
      await (await fetch(`${server.base}${B}/search?userid=alice&q=${encodeURIComponent("退款")}`))
        .json();
    const all = [...first.results];
    let cursor = first.next_cursor;
    while (cursor) {
      const page = await (await fetch(
        `${server.base}${B}/search?userid=alice&q=${encodeURIComponent("退款")}&cursor=${cursor}`,
      )).json();
      all.push(...page.results);
      cursor = page.next_cursor;
    }
    assert.equal(all.length, 15);
    assert.ok(
      all.every((h: { message: { msg: { content: string } } }) =>
        h.message.msg.content.includes("退款")
      ),
    );
    const bob = await (await fetch(`${server.base}${B}/search?userid=bob&q=hello`)).json();
    assert.deepEqual(bob.results, [], "another agent's conversations are not searched");
    const one = await (await fetch(`${server.base}${B}/search?userid=alice&q=hello&contact_id=oS0`))
      .json();
    assert.ok(
      one.results.length > 0 &&
        one.results.every((h: { contact_id: string }) => h.contact_id === "oS0"),
    );
  } finally {
    await alice.close();
    await server.close();
  }
});
