// Agents alice and bob online on a bridge but taking no one (capacity 0), so a follower who
// writes waits for one of them: how the tests of the waiting list and of claiming begin.

import assert from "node:assert/strict";
import { connectAgent, type Received } from "./agent.ts";
import { startBridge } from "./server.ts";

const B = "/im_component/wx_official_account";

/** Whether an envelope is the 102 `name` about `follower`. */
export const event = (name: string, follower: string) => (e: Received): boolean =>
  e.result.code === 102 && e.data.msg?.["event"] === name &&
  e.data.msg?.["follower_id"] === follower;

/** Starts a bridge with alice and bob connected, both at capacity 0; `command` posts `{data}`
 * to `send` as an agent (its status and JSON body). */
export async function startFullTeam() {
  const server = await startBridge();
  const alice = await connectAgent(`${server.wsBase}${B}/msg?userid=alice`);
  const bob = await connectAgent(`${server.wsBase}${B}/msg?userid=bob`);
  const command = async (as: string, data: Record<string, unknown>) => {
    const res = await fetch(`${server.base}${B}/send?userid=${as}`, {
      method: "POST",
      body: JSON.stringify({ data }),
    });
    return { status: res.status, body: await res.json() };
  };
  const close = async () => {
    await alice.close();
    await bob.close();
    await server.close();
  };
  try {
    // Both online but full: a follower who writes waits.
    for (const as of ["alice", "bob"]) {
      assert.equal((await command(as, { msg_type: "capacity", msg: { max: 0 } })).status, 200);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return { server, alice, bob, command, close };
}
