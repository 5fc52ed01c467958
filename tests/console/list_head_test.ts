// The list entry's last message while replies of ours wait (static/console/list_head.js): a
// reply heads its entry over what was there, taken back it gives that back (passing over replies
// taken back too), a Try again keeps it, and a read of GET contacts (the real bridge's) that does
// not have it yet leaves it there. The page, in a real browser: tests/browser/console_outbox_test.

import assert from "node:assert/strict";
import {
  keepReplyOver,
  renameReply,
  showReply,
  withdrawReply,
} from "../../static/console/list_head.js";
import { startBridge } from "../helpers/server.ts";
import { B, postFollowerMessage } from "../browser/browser.ts";

type Contact = Record<string, unknown> & { last_message?: Record<string, unknown> | null };

const reply = (text: string) => ({
  last: { msg_type: "text", preview: text, direction: "out" },
  at: 2000,
  touched: 9,
});

function follower(): Contact {
  return {
    contact_id: "oF",
    last_message: { msg_type: "text", preview: "在吗", direction: "in" },
    last_message_time: 1000,
    touched: 3,
  };
}

const shown = (c: Contact) => ({
  preview: c.last_message?.["preview"],
  time: c.last_message_time,
  touched: c.touched,
});

Deno.test("showReply() and withdrawReply() give back what the entry showed", async (t) => {
  await t.step("one reply, taken back", () => {
    const c = follower();
    showReply(c, "c1", reply("马上查"));
    assert.deepEqual(shown(c), { preview: "马上查", time: 2000, touched: 9 });
    assert.equal(withdrawReply(c, "c1", () => false), true);
    assert.deepEqual(shown(c), { preview: "在吗", time: 1000, touched: 3 });
  });

  await t.step("two, the first taken back, then the second: neither shows", () => {
    const c = follower();
    showReply(c, "c1", reply("第一句"));
    showReply(c, "c2", reply("第二句"));
    const kept = new Set(["c1", "c2"]);
    kept.delete("c1");
    // Not the entry's head: nothing changes.
    assert.equal(withdrawReply(c, "c1", (id: string) => kept.has(id)), false);
    assert.equal(c.last_message?.["preview"], "第二句");
    kept.delete("c2");
    assert.equal(withdrawReply(c, "c2", (id: string) => kept.has(id)), true);
    assert.deepEqual(shown(c), { preview: "在吗", time: 1000, touched: 3 });
  });

  await t.step("two, the second taken back: the first, still waiting, shows", () => {
    const c = follower();
    showReply(c, "c1", reply("第一句"));
    showReply(c, "c2", reply("第二句"));
    assert.equal(withdrawReply(c, "c2", (id: string) => id === "c1"), true);
    assert.equal(c.last_message?.["preview"], "第一句");
  });

  await t.step("a reply tried again under a new client_id is still the one shown", () => {
    const c = follower();
    showReply(c, "c1", reply("第一句"));
    showReply(c, "c2", reply("第二句"));
    renameReply(c, "c1", "c1b");
    renameReply(c, "c2", "c2b");
    assert.equal(withdrawReply(c, "c2", () => true), false);
    assert.equal(withdrawReply(c, "c2b", (id: string) => id === "c1b"), true);
    assert.equal(c.last_message?.["preview"], "第一句");
  });

  await t.step("an entry never shown has nothing to give back", () => {
    assert.equal(withdrawReply(undefined, "c1", () => true), false);
    assert.equal(withdrawReply(follower(), "", () => true), false);
  });
});

Deno.test("keepReplyOver() keeps a waiting reply over GET contacts' listing", async (t) => {
  const server = await startBridge();
  try {
    const listed = async (): Promise<Contact> => {
      const res = await fetch(`${server.base}${B}/contacts?userid=agentL`);
      const { contacts } = await res.json();
      return contacts.find((c: Contact) => c.contact_id === "oF");
    };
    const ws = new WebSocket(`${server.wsBase}${B}/msg?userid=agentL`);
    await new Promise((resolve) => ws.onopen = resolve);
    await postFollowerMessage(server.base, "oF", { MsgType: "text", Content: "在吗" });
    const first = await listed();
    assert.ok(first, "the bridge lists the follower");

    await t.step("the bridge lists the follower's message: the reply stays, over it", async () => {
      const before: Contact = { ...first, touched: 3 };
      showReply(before, "c1", {
        ...reply("马上查"),
        at: Number(first.last_message_time) + 1,
      });
      const merged: Contact = { ...before, ...(await listed()) };
      assert.equal(keepReplyOver(before, merged, () => true), true);
      assert.equal(merged.last_message?.["preview"], "马上查");
      assert.equal(withdrawReply(merged, "c1", () => false), true);
      assert.equal(merged.last_message?.["preview"], "在吗");
      assert.equal(merged.last_message_time, first.last_message_time);
    });

    await t.step("the follower wrote since: the bridge's listing wins", async () => {
      const before: Contact = { ...first, touched: 3 };
      showReply(before, "c1", { ...reply("马上查"), at: Number(first.last_message_time) });
      await new Promise((r) => setTimeout(r, 1100));
      await postFollowerMessage(server.base, "oF", { MsgType: "text", Content: "还在吗" });
      const merged: Contact = { ...before, ...(await listed()) };
      assert.equal(keepReplyOver(before, merged, () => true), false);
      assert.equal(merged.last_message?.["preview"], "还在吗");
    });

    await t.step("the reply gone from the thread: the listing wins", async () => {
      const before: Contact = { ...first, touched: 3 };
      showReply(before, "c1", { ...reply("马上查"), at: Date.now() });
      const merged: Contact = { ...before, ...(await listed()) };
      assert.equal(keepReplyOver(before, merged, () => false), false);
    });
    ws.close();
    await new Promise((resolve) => ws.onclose = resolve);
  } finally {
    await server.close();
  }
});
