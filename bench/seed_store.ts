// A DATA_DIR holding a large store, written straight into the SQLite store's tables (far
// faster than posting the messages): `agents` agents, each serving `perAgent` followers named
// as the load generator names them (messages.ts followerFor), so its messages hit them.

import { contactRow, openSqliteDatabase } from "../src/store/sqlite_store.ts";
import type { AgentRecord, Contact } from "../src/core/store.ts";

/** Creates `dir/bridge.sqlite` with the contacts and agents; returns the ms it took. */
export function seedStore(dir: string, agents: number, perAgent: number): number {
  const started = performance.now();
  const db = openSqliteDatabase(`${dir}/bridge.sqlite`);
  try {
    db.exec("BEGIN");
    // Marked as started before, so no Deno KV migration is looked for.
    db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('origin', 'bench seed')").run();
    const contact = db.prepare(
      `INSERT OR REPLACE INTO contacts (follower_id, json, agent_key, at, closes_at)
       VALUES (?, ?, ?, ?, ?)`,
    );
    const agent = db.prepare("INSERT OR REPLACE INTO agents (agent_id, json) VALUES (?, ?)");
    const now = Date.now();
    for (let a = 0; a < agents; a++) {
      const agentId = `agent${a}`;
      const record: AgentRecord = { agent_id: agentId, seq: 0, cursor: 0, capacity: null, load: 0 };
      record.load = perAgent;
      agent.run(agentId, JSON.stringify(record));
      for (let k = 0; k < perAgent; k++) {
        const id = `obench_${agentId}_${k}`;
        const c: Contact = {
          follower_id: id,
          name: id,
          avatar: "",
          agent_id: agentId,
          last_agent_id: agentId,
          status: "open",
          last_inbound_at: now,
          last_inbound_kind: "message",
          replies_since_inbound: 0,
          last_message: { msg_type: "text", preview: "an earlier question", direction: "in" },
          last_message_at: now,
          unread: 1,
          waiting_since: null,
          history_seq: 0,
          subscribed: true,
        };
        contact.run(...contactRow(c, JSON.stringify(c)));
      }
    }
    db.exec("COMMIT");
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } finally {
    db.close();
  }
  return performance.now() - started;
}
