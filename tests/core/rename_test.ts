import assert from "node:assert/strict";
import { connectAgent, post, textXml } from "../helpers/agent.ts";
import { startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

Deno.test("an agent names a follower with the rename command", async (t) => {
  const server = await startBridge();
  const alice = await connectAgent(`${server.wsBase}${B}/msg?userid=alice`);
  const bob = await connectAgent(`${server.wsBase}${B}/msg?userid=bob`);
  const rename = (agent: typeof alice, contact: string, name: unknown) =>
    agent.send({ data: { msg_type: "rename", contact_id: contact, msg: { name } } });
  try {
    await post(`${server.base}${B}/send_xml`, textXml("oQW8FuN_x", "alice", "hi", "9200001"));
    await alice.waitFor((e) => e.data["id"] === "9200001");

    await t.step("the contact list and later envelopes carry the name", async () => {
      rename(alice, "oQW8FuN_x", "王女士 (order 4821)");
      for (let i = 0; i < 50; i++) {
        const body = await (await fetch(`${server.base}${B}/contacts?userid=alice`)).json();
        if (body.contacts[0]?.name === "王女士 (order 4821)") break;
        await new Promise((r) => setTimeout(r, 10));
      }
      const body = await (await fetch(`${server.base}${B}/contacts?userid=alice`)).json();
      assert.equal(body.contacts[0].name, "王女士 (order 4821)");
      await post(`${server.base}${B}/send_xml`, textXml("oQW8FuN_x", "gh", "again", "9200002"));
      const e = await alice.waitFor((e) => e.data["id"] === "9200002");
      assert.equal(e.data["name"], "王女士 (order 4821)");
    });
    await t.step("another agent may not, and an empty name is refused", async () => {
      rename(bob, "oQW8FuN_x", "mine now");
      const refused = await bob.waitFor((e) => e.result.code === -1);
      assert.match(refused.result.message, /not served by bob/);
      rename(alice, "oQW8FuN_x", "  ");
      const empty = await alice.waitFor((e) => e.result.code === -1);
      assert.match(empty.result.message, /msg.name/);
    });
  } finally {
    await alice.close();
    await bob.close();
    await server.close();
  }
});
