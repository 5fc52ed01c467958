// An agent's socket handles its frames one at a time per `contact_id` and different contacts in
// parallel (src/agents/agent_socket.ts). A transfer names two parties: the follower
// (`contact_id`) and the agent it goes to (`msg.to`). An agent that transfers follower F to agent
// B and then writes to B ("F is yours now", `contact_id` = B) had its message to B reach B before
// B was told of the transfer: the two frames named different contacts, and the message overtook
// the transfer's store step. Here that step is held (the store's `transfer`, swapped as other
// tests swap side effects) until the test lets it go: the message to B waits for it, and a
// message to another agent meanwhile does not.

import assert from "node:assert/strict";
import { createMemoryStore } from "../../src/store/memory_store.ts";
import type { Store } from "../../src/core/store.ts";
import { post, type Received, textXml } from "../helpers/agent.ts";
import { connectRoutedAgent, startBridge } from "../helpers/server.ts";

const B = "/im_component/wx_official_account";

/** A memory store whose `transfer` waits for `release()`; `held` resolves once one waits. */
function storeWithHeldTransfer() {
  const store: Store = createMemoryStore({
    companyId: "",
    now: Date.now,
    newId: () => crypto.randomUUID(),
    dedupTtlMs: 60_000,
  });
  const held = Promise.withResolvers<void>();
  const released = Promise.withResolvers<void>();
  const transfer = store.transfer.bind(store);
  store.transfer = async (...args) => {
    held.resolve();
    await released.promise;
    return await transfer(...args);
  };
  return { store, held: held.promise, release: () => released.resolve() };
}

const isTransferIn = (e: Received) =>
  e.data.msg?.["event"] === "transferred_in" && e.data.msg?.["follower_id"] === "oMoved";

Deno.test("a message to the agent a follower was just transferred to comes after the transfer", async () => {
  const held = storeWithHeldTransfer();
  const server = await startBridge({ store: held.store });
  const alice = await connectRoutedAgent(server, "alice");
  const sent = await post(`${server.base}${B}/send_xml`, textXml("oMoved", "gh", "hi", "9710001"));
  assert.equal(sent.status, 200, sent.text);
  await alice.waitFor((e) => e.data["id"] === "9710001");
  const bob = await connectRoutedAgent(server, "bob");
  const carol = await connectRoutedAgent(server, "carol");
  try {
    alice.send({ data: { msg_type: "transfer", contact_id: "oMoved", msg: { to: "bob" } } });
    await held.held;
    alice.send({
      data: {
        msg_type: "text",
        contact_id: "bob",
        client_id: "m-1",
        msg: { content: "oMoved is yours" },
      },
    });
    alice.send({
      data: { msg_type: "text", contact_id: "carol", client_id: "m-2", msg: { content: "lunch?" } },
    });
    // Another agent's message is not held up behind the transfer.
    await carol.waitFor((e) => e.data.msg?.["content"] === "lunch?");
    held.release();

    await bob.waitFor(isTransferIn);
    await bob.waitFor((e) => e.data.msg?.["content"] === "oMoved is yours");
    const got = bob.messages();
    const told = got.findIndex(isTransferIn);
    const message = got.findIndex((e) => e.data.msg?.["content"] === "oMoved is yours");
    assert.ok(told < message, `bob read the message before the transfer: ${JSON.stringify(got)}`);
  } finally {
    held.release();
    await alice.close();
    await bob.close();
    await carol.close();
    await server.close();
  }
});
