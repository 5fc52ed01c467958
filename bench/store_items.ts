// What the store benches feed the stores: message `i` as the webhook hands it over (a text from
// one of `followers` followers, its MsgId unique), and the calling thread's CPU time.
import type { Envelope } from "../src/protocol/envelope.ts";
import type { InboundItem } from "../src/core/store.ts";
import { msgId } from "./messages.ts";

/** Message `i`: `content` from follower i % `followers`, as acceptInbound takes it. */
export function storeItem(i: number, followers: number, content: string): InboundItem {
  const followerId = `obench_follower_${String(i % followers).padStart(6, "0")}`;
  const envelope: Envelope = {
    data: {
      id: msgId(i),
      name: followerId,
      avatar: "",
      msg_type: "text",
      contact_id: followerId,
      company_id: "",
      send_time: 1_700_000_000 + i,
      msg: { content },
    },
    result: { code: 1001, message: "common" },
  };
  return {
    followerId,
    name: null,
    to: "gh_account",
    envelope,
    kind: "message",
    receivedAt: Date.now(),
    dedupKey: `msg:${envelope.data.id}`,
  };
}

/** CPU time of the calling thread, ns (Linux): what the main thread spent. */
export function threadCpuNs(): number {
  return Number(Deno.readTextFileSync("/proc/thread-self/schedstat").split(" ")[0]);
}
