// Demo mode's stand-in for WeChat: without credentials, replies land here, per follower, so the
// console's follower simulator can show them and the whole loop can be tried locally.

/** One reply as the simulator shows it. */
export interface DemoReply {
  n: number;
  msg_type: string;
  msg: Record<string, unknown>;
  send_time: number;
  agent_id: string;
}

const MAX_PER_FOLLOWER = 500;

/** Creates the outbox. */
export function createDemoOutbox() {
  const replies = new Map<string, DemoReply[]>();
  const typingUntil = new Map<string, number>();
  let n = 0;
  return {
    add(followerId: string, reply: Omit<DemoReply, "n">): DemoReply {
      let list = replies.get(followerId);
      if (!list) replies.set(followerId, list = []);
      const entry = { n: ++n, ...reply };
      list.push(entry);
      if (list.length > MAX_PER_FOLLOWER) list.shift();
      typingUntil.delete(followerId);
      return entry;
    },
    /** Replies to a follower after `since`, oldest first. */
    since(
      followerId: string,
      since: number,
    ): { replies: DemoReply[]; next_since: number; typing: boolean } {
      const list = (replies.get(followerId) ?? []).filter((r) => r.n > since);
      const typing = (typingUntil.get(followerId) ?? 0) > Date.now();
      return { replies: list, next_since: list.at(-1)?.n ?? since, typing };
    },
    typing(followerId: string, on: boolean): void {
      if (on) typingUntil.set(followerId, Date.now() + 15_000);
      else typingUntil.delete(followerId);
    },
  };
}

/** The demo outbox. */
export type DemoOutbox = ReturnType<typeof createDemoOutbox>;
