// What the tests of replies left "sending" share: the real server over a store of the test's
// (a fault wrapped around the memory store), its clock half a second into a second, agent qa
// online with follower oMine written, and the reply's status read back from history.

import assert from "node:assert/strict";
import { connectAgent, post, type TestAgent, textXml } from "../helpers/agent.ts";
import { startBridge, type TestBridge, waitRouted } from "../helpers/server.ts";
import type { Store } from "../../src/core/store.ts";

const B = "/im_component/wx_official_account";

/** The server's clock: half a second into a second, so a reply's send_time (whole seconds) of
 * the second the store opened is before that opening. */
export const clock = { t: Date.UTC(2026, 11, 1) + 500 };

/** The memory store's options on that clock. */
export const options = {
  companyId: "",
  now: () => clock.t,
  newId: () => crypto.randomUUID(),
  dedupTtlMs: 3600_000,
};

/** A bridge over `store`, `sockets` sockets of agent qa online, follower oMine written; `fn`
 * sends and looks. */
export async function withBridge(
  store: Store,
  fn: (server: TestBridge, ...agents: TestAgent[]) => Promise<void>,
  sockets = 1,
): Promise<void> {
  const server = await startBridge({ store, now: options.now });
  const agents: TestAgent[] = [];
  try {
    for (let i = 0; i < sockets; i++) {
      agents.push(await connectAgent(`${server.wsBase}${B}/msg?userid=qa`));
    }
    await waitRouted(server, "qa");
    const hi = await post(`${server.base}${B}/send_xml`, textXml("oMine", "gh", "hi", "9910001"));
    assert.equal(`${hi.status} ${hi.text}`, "200 success");
    for (const agent of agents) await agent.waitFor((e) => e.data["id"] === "9910001");
    await fn(server, ...agents);
  } finally {
    for (const agent of agents) await agent.close();
    await server.close();
  }
}

/** Agent `agent` replies to oMine with `clientId`. */
export const send = (agent: TestAgent, clientId: string) =>
  agent.send({
    data: { msg_type: "text", contact_id: "oMine", client_id: clientId, msg: { content: "在" } },
    result: { code: 1001, message: "common" },
  });

/** The reply's status in history, once it is recorded and no longer "sending" (or after 5 s). */
export async function settledStatus(server: TestBridge, clientId: string) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const { items } = await server.store.readHistory("oMine", null, 20);
    const status = items.find((i) => i["client_id"] === clientId)?.status;
    if ((status !== undefined && status !== "sending") || Date.now() > deadline) return status;
    await new Promise((r) => setTimeout(r, 50));
  }
}
