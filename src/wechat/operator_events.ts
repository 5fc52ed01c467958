// Callbacks that are not a follower writing: reports on the account's own sends and reviews
// (counted, logged, and the rare ones shown to online agents as a 102 with no contact), and
// platform events about a user (a revoke forgets its data; a profile clean-up tells its agent).

import { getLogger } from "@logtape/logtape";
import type { Switchboard } from "../core/switchboard.ts";
import type { InboundItem, Store } from "../core/store.ts";
import type { Envelope } from "../protocol/envelope.ts";
import { placeOf } from "../core/location.ts";
import { isConversationReport, isPerRecipientReport } from "./event_kinds.ts";
import type { FollowerMessage } from "./message.ts";

const log = getLogger(["bridge", "wechat", "reports"]);

/** Retries of one report recognised this long (WeChat retries within about 15 s). */
const REPORT_DEDUP_MS = 10 * 60_000;
const REPORT_DEDUP_MAX = 10_000;

/** What the operator events need. */
export interface OperatorEventDeps {
  store: Store;
  switchboard: Switchboard;
  /** Agents online anywhere (every instance, with a shared store). */
  onlineAgents(): Promise<Iterable<string>>;
  countReport(event: string): void;
  now: () => number;
}

/** Creates the handlers the webhook calls for reports and platform events. */
export function createOperatorEvents(deps: OperatorEventDeps) {
  const seen = new Map<string, number>();

  /** Whether `key` was seen within REPORT_DEDUP_MS, here or (a shared store) on any instance;
   * remembers it. */
  async function isRetry(key: string): Promise<boolean> {
    const now = deps.now();
    const expiry = seen.get(key);
    if (expiry !== undefined && expiry > now) return true;
    if (seen.size >= REPORT_DEDUP_MAX) {
      for (const [k, at] of seen) if (at <= now || seen.size >= REPORT_DEDUP_MAX) seen.delete(k);
    }
    seen.set(key, now + REPORT_DEDUP_MS);
    // WeChat's retry may land on another instance behind the proxy: the shared store decides.
    if (deps.store.firstReport && !(await deps.store.firstReport(key, REPORT_DEDUP_MS))) {
      return true;
    }
    return false;
  }

  /** A report on a follower's conversation reaches its agent, if bound: nobody is bound for it,
   * and it is neither history nor unread (the follower wrote nothing). */
  async function tellFollowersAgent(
    message: FollowerMessage,
    envelope: Envelope,
    event: string,
  ): Promise<void> {
    deps.countReport(event);
    const agentId = (await deps.store.getContact(message.from))?.agent_id ?? null;
    log.info("Conversation report {event} for {follower_id}: {text}", {
      event,
      follower_id: message.from,
      text: envelope.data.msg["text"],
      agent_id: agentId,
    });
    if (agentId === null) return;
    await deps.switchboard.sendToAgents([{ agentId, envelope }]);
  }

  return {
    /** A report: a metric and a log line always; rare ones also reach every online agent. */
    async report(message: FollowerMessage, envelope: Envelope, dedupKey: string): Promise<void> {
      if (await isRetry(dedupKey)) return;
      const event = message.event ?? "unknown";
      const msg = envelope.data.msg;
      if (isConversationReport(event)) return tellFollowersAgent(message, envelope, event);
      // Not about a contact: the console must not open a conversation for it.
      delete msg["follower_id"];
      delete msg["follower_name"];
      msg["from_user_name"] = message.from;
      deps.countReport(event);
      log.info("Account report {event}: {text}", { event, text: msg["text"], msg });
      if (isPerRecipientReport(event)) return;
      const agents = [...await deps.onlineAgents()];
      if (agents.length === 0) return;
      await deps.switchboard.sendToAgents(agents.map((agentId) => ({ agentId, envelope })));
    },

    /** The user revoked its authorization: its contact, history and queue are deleted. */
    async forget(message: FollowerMessage, envelope: Envelope): Promise<void> {
      const forgotten = await deps.switchboard.apply(
        deps.store.forgetFollower(message.from, envelope),
      );
      log.info("{event}: follower {follower_id} forgotten ({known})", {
        event: message.event,
        follower_id: message.from,
        known: forgotten ? "had data" : "nothing stored",
      });
    },

    /** A location report: kept on the follower's contact (store.reportLocation). One whose
     * coordinates are not numbers, which WeChat does not send but anyone may post unsigned, is
     * kept in the history as the report it is: routed as a message, it bound an agent, was
     * unread and waited, none of which a LOCATION does. */
    async location(item: InboundItem): Promise<void> {
      const place = placeOf(item.envelope.data.msg, item.receivedAt);
      await deps.switchboard.apply(deps.store.reportLocation(item, place));
    },

    /** WeChat cleaned the user's profile: its agent is told; an unknown user needs nothing. */
    async profileChanged(item: InboundItem): Promise<void> {
      if (await deps.store.getContact(item.followerId) === null) {
        log.info("user_info_modified for {follower_id}, who has no conversation here", {
          follower_id: item.followerId,
        });
        return;
      }
      await deps.switchboard.accept(item);
    },
  };
}
