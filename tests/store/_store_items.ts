// What the store tests feed the stores: a follower's text as the webhook hands it over, and an
// agent's reply as the reply service records it.

import type { Envelope } from "../../src/protocol/envelope.ts";
import type { HistoryItem, InboundItem } from "../../src/core/store.ts";

/** Follower `followerId`'s text `id` (its content too) at `at`, for agentW, deduplicated by id. */
export function message(
  followerId: string,
  id: string,
  at: number,
  kind: InboundItem["kind"] = "message",
): InboundItem {
  const envelope: Envelope = {
    data: {
      id,
      name: followerId,
      avatar: "",
      msg_type: "text",
      contact_id: followerId,
      company_id: "",
      send_time: Math.floor(at / 1000),
      msg: { content: id },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId,
    name: null,
    to: "agentW",
    envelope,
    kind,
    receivedAt: at,
    dedupKey: `m|${id}`,
  };
}

/** Agent `agentId`'s text reply `id` to `followerId`, on its way to WeChat. */
export function replyItem(agentId: string, followerId: string, id: string): HistoryItem {
  return {
    id,
    name: agentId,
    avatar: "",
    msg_type: "text",
    contact_id: followerId,
    company_id: "",
    send_time: 0,
    msg: { content: id },
    direction: "out",
    status: "sending",
    agent_id: agentId,
  };
}
