// Replies a bridge recorded "sending" and never wrote an outcome for: it stopped between the
// two (kill -9, a crash, a stop whose drain was cut short, an instance lost). History said
// "sending" for good, and the console showed the reply on its way after every reload. Each is
// settled as failed and unconfirmed (it may have reached the follower: WeChat was perhaps
// asked), and its agent told as of any failed reply, so the console says "Not confirmed".

import type { Envelope } from "../protocol/envelope.ts";
import type { Store, UnansweredReply } from "../core/store.ts";

/** What a reply left unanswered is failed with. */
export const UNANSWERED_ERROR =
  "No answer from WeChat was recorded (the bridge stopped while sending): it may have reached " +
  "the follower";

/** Replies read from the store at a time. */
const PAGE = 100;

/** What settling needs from the reply service. */
export interface UnansweredDeps {
  store: Store;
  /** Tells an agent (through its log), as a reply's result is told. */
  notify(agentId: string, envelope: Envelope): Promise<unknown>;
  /** Whether this process is still sending reply `id` (not another's to settle). */
  inFlight(id: string): boolean;
  newId(): string;
  now(): number;
  companyId: string;
}

/** Settles every reply recorded "sending" before `before` (ms) that nobody answered for;
 * resolves to how many. */
export async function settleUnanswered(deps: UnansweredDeps, before: number): Promise<number> {
  let settled = 0;
  for (;;) {
    const page = await deps.store.unansweredReplies(before, PAGE);
    const todo = page.filter((r) => !deps.inFlight(r.item.id));
    for (const reply of todo) {
      if (await settle(deps, reply)) settled++;
    }
    // A page of this process's own replies alone would be read again and again.
    if (page.length < PAGE || todo.length === 0) return settled;
  }
}

/** Fails one reply and tells its agent; false when another sweep (an instance sharing Redis)
 * or its own outcome came first: told once, by whoever wrote. */
async function settle(
  deps: UnansweredDeps,
  { followerId, n, item }: UnansweredReply,
): Promise<boolean> {
  const written = await deps.store.updateReply(
    followerId,
    { n, id: item.id },
    "failed",
    UNANSWERED_ERROR,
    { unconfirmed: true, onlySending: true },
  );
  if (!written) return false;
  const agentId = item.agent_id ?? item.name;
  if (!agentId) return true;
  const echo = typeof item["client_id"] === "string" ? { client_id: item["client_id"] } : {};
  await deps.notify(agentId, {
    data: {
      id: deps.newId(),
      name: "",
      avatar: "",
      msg_type: "error",
      company_id: deps.companyId,
      send_time: Math.floor(deps.now() / 1000),
      msg: { errcode: -1, errmsg: UNANSWERED_ERROR },
      ...echo,
      reply_id: item.id,
      contact_id: followerId,
      errcode: -1,
      errmsg: UNANSWERED_ERROR,
      unconfirmed: true,
    },
    result: { code: -1, message: `The reply may not have been sent: ${UNANSWERED_ERROR}` },
  });
  return true;
}
