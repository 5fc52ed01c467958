// Writes a Deno KV database with many followers, straight, with the store's own key functions:
// for tests and the memory benchmark (bench/contacts_memory.ts) that start main.ts on it.

import * as keys from "../../src/store/kv_keys.ts";
import type { AgentRecord, Contact } from "../../src/core/store.ts";

/** Agents the followers are spread over: agent0 … agent49. */
export const AGENTS = 50;
const HOUR = 3600_000;

/** A contact as a busy account has them: named, with a Chinese preview, served by an agent. */
export function contactOf(i: number, now: number): Contact {
  const agent = `agent${i % AGENTS}`;
  const at = now - (i % 1000) * HOUR / 10 - i;
  return {
    follower_id: `oFollower${String(i).padStart(22, "0")}`,
    name: `粉丝${i}`,
    avatar: "",
    agent_id: agent,
    last_agent_id: agent,
    status: "open",
    last_inbound_at: at,
    last_inbound_kind: "message",
    replies_since_inbound: 1,
    last_message: {
      msg_type: "text",
      preview: "您好，我想问一下订单的发货时间，谢谢",
      direction: "in",
    },
    last_message_at: at,
    unread: 1,
    waiting_since: null,
    history_seq: 4,
    subscribed: true,
  };
}

/** Writes `n` contacts and their agents into a KV file at `path`, with whatever index keys the store keeps. */
export async function generateContacts(path: string, n: number): Promise<void> {
  const kv = await Deno.openKv(path);
  const now = Date.now();
  const index = keys as unknown as Record<string, (...args: unknown[]) => Deno.KvKey>;
  try {
    for (let start = 0; start < n; start += 300) {
      const op = kv.atomic();
      for (let i = start; i < Math.min(n, start + 300); i++) {
        const c = contactOf(i, now);
        op.set(keys.contactKey(c.follower_id), JSON.stringify(c));
        // Index keys, where the store has them (written by the same functions it uses).
        if (index["servedKey"]) {
          op.set(index["servedKey"](c.agent_id, c.last_message_at, c.follower_id), 1);
        }
        if (index["windowKey"]) op.set(index["windowKey"](c.last_inbound_at, c.follower_id), 1);
      }
      const res = await op.commit();
      if (!res.ok) throw new Error("Cannot write contacts");
    }
    const op = kv.atomic();
    for (let a = 0; a < AGENTS; a++) {
      const record: AgentRecord = {
        agent_id: `agent${a}`,
        seq: 0,
        cursor: 0,
        capacity: null,
        load: Math.ceil(n / AGENTS),
      };
      op.set(keys.agentKey(record.agent_id), record);
    }
    if (index["layoutKey"]) op.set(index["layoutKey"](), 2);
    await op.commit();
  } finally {
    kv.close();
  }
}
