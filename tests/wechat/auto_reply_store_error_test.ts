// A shared store's cooldown (Store.firstAutoReply) that throws (Redis failing over after the
// message was accepted) rejected answer(): the webhook answered WeChat 5xx, WeChat's retry of
// the same MsgId is then a "duplicate", which gets no auto-reply, so a store error silenced it.
// Expected: a failing shared cooldown falls back to this process's own (the follower gets the
// auto-reply, once per process per 30 minutes, as before the change).

import assert from "node:assert/strict";
import { createPassiveReplies } from "../../src/wechat/passive_reply.ts";

Deno.test("a failing shared cooldown neither silences nor repeats the auto-reply", async () => {
  const passive = createPassiveReplies(
    {
      transferCustomerService: false,
      autoReplyText: "away",
      workingHours: undefined,
      now: () => Date.now(),
      anyAgentOnline: () => Promise.resolve(false),
      firstAutoReply: () => Promise.reject(new Error("Connection is closed.")),
    } as unknown as Parameters<typeof createPassiveReplies>[0],
  );
  const message = { from: "oF", to: "gh", msgType: "text", content: "hi", msgId: "1" };
  // deno-lint-ignore no-explicit-any
  const first = await passive.answer(message as any, "accepted" as any);
  assert.ok(first?.includes("away"), `no auto-reply: ${first}`);
  // deno-lint-ignore no-explicit-any
  const second = await passive.answer({ ...message, msgId: "2" } as any, "accepted" as any);
  assert.equal(second, null, "the fallback cooldown must still hold");
});
