// Every Deno KV key the bridge writes, built by named functions in this one module, so the
// layout of the database can be read on one screen and no key is spelled twice.
// Numbers in keys sort numerically, so `list()` walks logs and histories in order.

/** A contact (follower): `Contact`. */
export function contactKey(followerId: string): Deno.KvKey {
  return ["contacts", followerId];
}

/** All contacts. */
export function contactsPrefix(): Deno.KvKey {
  return ["contacts"];
}

/** An agent: `AgentRecord` (seq, cursor, capacity, load). */
export function agentKey(agentId: string): Deno.KvKey {
  return ["agents", agentId];
}

/** All agents. */
export function agentsPrefix(): Deno.KvKey {
  return ["agents"];
}

/** One envelope of an agent's log, by seq. */
export function logKey(agentId: string, seq: number): Deno.KvKey {
  return ["log", agentId, seq];
}

/** An agent's whole log; without an agent, every agent's. */
export function logPrefix(agentId?: string): Deno.KvKey {
  return agentId === undefined ? ["log"] : ["log", agentId];
}

/** One item of a follower's conversation, by history number. */
export function historyKey(followerId: string, n: number): Deno.KvKey {
  return ["history", followerId, n];
}

/** A follower's whole conversation; without a follower, every one. */
export function historyPrefix(followerId?: string): Deno.KvKey {
  return followerId === undefined ? ["history"] : ["history", followerId];
}

/** A reply recorded "sending" at `sendTime` (s) whose outcome is not written yet. */
export function unansweredKey(sendTime: number, followerId: string, n: number): Deno.KvKey {
  return ["unanswered", sendTime, followerId, n];
}

/** Every unanswered reply, by time; with `sendTime`, those before it (an end key). */
export function unansweredPrefix(sendTime?: number): Deno.KvKey {
  return sendTime === undefined ? ["unanswered"] : ["unanswered", sendTime];
}

/** A forgotten follower's cut in one agent's log (model.ts ForgetCut): the seq at its forget. */
export function forgetCutKey(followerId: string, agentId: string): Deno.KvKey {
  return ["forget_cuts", followerId, agentId];
}

/** A message waiting for an agent, by follower and history number. */
export function queuedKey(followerId: string, n: number): Deno.KvKey {
  return ["queue", followerId, n];
}

/** Every waiting message. */
export function queuePrefix(): Deno.KvKey {
  return ["queue"];
}

/** The WeChat retry keys one commit saw, with their expiries; `id` orders nothing. */
export function dedupKey(id: number): Deno.KvKey {
  return ["dedup", id];
}

/** Every dedup record. */
export function dedupPrefix(): Deno.KvKey {
  return ["dedup"];
}

/** One of the team's quick replies, by id. */
export function quickReplyKey(id: string): Deno.KvKey {
  return ["quick_replies", id];
}

/** Every quick reply. */
export function quickRepliesPrefix(): Deno.KvKey {
  return ["quick_replies"];
}

/** A contact in the list of the agent that serves it (or last served it), by last message
 * time: `list()` in reverse gives an agent's contacts newest first without loading the rest. */
export function servedKey(agentId: string, at: number, followerId: string): Deno.KvKey {
  return ["served", agentId, at, followerId];
}

/** One agent's contact list. */
export function servedPrefix(agentId: string): Deno.KvKey {
  return ["served", agentId];
}

/** A served follower's 48-hour window, by the time it closes: the sweep for window notices
 * reads the ones closing soon, not every contact. */
export function windowKey(closesAt: number, followerId: string): Deno.KvKey {
  return ["windows", closesAt, followerId];
}

/** Every window the sweep may have to tell an agent about. */
export function windowsPrefix(): Deno.KvKey {
  return ["windows"];
}

/** Which layout the database has (2: with the served and windows indexes). */
export function layoutKey(): Deno.KvKey {
  return ["meta", "layout"];
}

/** With WECHAT_MAX_AGE_S, the body a plain WeChat signature first carried: [hash, expiry]. */
export function signedBodyKey(signature: string): Deno.KvKey {
  return ["signed_bodies", signature];
}

/** Every signature's first body. */
export function signedBodiesPrefix(): Deno.KvKey {
  return ["signed_bodies"];
}
