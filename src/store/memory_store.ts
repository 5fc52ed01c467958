// The store without persistence: the routing model plus logs and history in memory, bounded.
// For tests, for `STORE=memory`, and as the baseline the benchmark compares Deno KV against.

import { keyCollector } from "../core/media_refs.ts";
import {
  type ForgetCut,
  Model,
  type ModelOptions,
  modelReads,
  sortQuickReplies,
} from "../core/model.ts";
import type { Envelope } from "../protocol/envelope.ts";
import {
  type Applied,
  type HistoryEntry,
  type HistoryItem,
  type InboundItem,
  type InboundOutcome,
  isUnanswered,
  type LogEntry,
  type Presence,
  type QuickReply,
  replyOutcome,
  type ReplyOutcomeOptions,
  type Store,
  type UnansweredReply,
} from "../core/store.ts";

/** How much each agent's log and each conversation keeps in memory. */
const MAX_LOG = 5_000;
const MAX_HISTORY = 2_000;

/** Creates a store that lives and dies with the process. */
export function createMemoryStore(options: ModelOptions): Store {
  const model = new Model(options);
  const logs = new Map<string, LogEntry[]>();
  const histories = new Map<string, HistoryEntry[]>();
  const quickReplies = new Map<string, QuickReply>();
  /** Forgotten followers' cuts, by follower (Store.forgetCuts). */
  const cuts = new Map<string, ForgetCut>();
  const pruner = setInterval(() => {
    model.pruneSeen(options.now());
    pruneCuts();
  }, 60_000);
  Deno.unrefTimer(pruner);

  /** Drops the cuts no log reaches below any more: its logs are bounded by length, not time. */
  function pruneCuts(): void {
    for (const [followerId, cut] of cuts) {
      const reached = Object.entries(cut).some(([agentId, seq]) =>
        (logs.get(agentId)?.[0]?.seq ?? Infinity) <= seq
      );
      if (!reached) cuts.delete(followerId);
    }
  }

  function commit<T>(value: T): Applied<T> {
    const changes = model.takeChanges();
    for (const entry of changes.log) {
      let log = logs.get(entry.agentId);
      if (!log) logs.set(entry.agentId, log = []);
      log.push(entry);
      if (log.length > MAX_LOG * 1.2) log.splice(0, log.length - MAX_LOG);
    }
    for (const h of changes.history) {
      let list = histories.get(h.followerId);
      if (!list) histories.set(h.followerId, list = []);
      list.push(h);
      if (list.length > MAX_HISTORY * 1.2) list.splice(0, list.length - MAX_HISTORY);
    }
    for (const id of changes.forgotten) histories.delete(id);
    for (const { followerId, cut } of changes.cuts) cuts.set(followerId, cut);
    return { value, deliveries: changes.log };
  }

  const run = <T>(fn: () => T): Promise<Applied<T>> => {
    try {
      return Promise.resolve(commit(fn()));
    } catch (error) {
      model.takeChanges();
      return Promise.reject(error);
    }
  };

  return {
    acceptInbound(items: InboundItem[], presence: Presence) {
      return run(() => items.map((item): InboundOutcome => model.inbound(item, presence)));
    },
    reportLocation(item, place) {
      return run(() => model.location(item, place));
    },
    appendToAgents(entries) {
      return run(() => entries.map((e) => model.append(e.agentId, e.envelope)));
    },
    agentOnline(agentId: string, presence: Presence) {
      return run(() => model.agentOnline(agentId, undefined, presence.onlineAgents()));
    },
    readLog(agentId: string, afterSeq: number, limit: number): Promise<LogEntry[]> {
      const log = logs.get(agentId) ?? [];
      // Seqs are dense and increasing, so the start is found by arithmetic, not a scan.
      const first = log[0]?.seq ?? 1;
      const start = Math.max(0, afterSeq + 1 - first);
      return Promise.resolve(log.slice(start, start + limit));
    },
    markDelivered(agentId: string, seq: number): void {
      const record = model.agents.get(agentId);
      if (record && seq > record.cursor) record.cursor = seq;
    },
    ...modelReads(() => model),
    readHistory(followerId: string, before: number | null, limit: number) {
      const list = histories.get(followerId) ?? [];
      let end = list.length;
      if (before !== null) {
        const first = list[0]?.n ?? 1;
        end = Math.max(0, Math.min(list.length, before - first));
      }
      const start = Math.max(0, end - limit);
      const items = list.slice(start, end).map((h) => h.item);
      const nextBefore = start > 0 ? list[start]!.n : null;
      return Promise.resolve({ items, nextBefore });
    },
    recordReply(agentId: string, followerId: string, item: HistoryItem) {
      return run(() => ({ n: model.reply(agentId, followerId, item) }));
    },
    updateReply(
      followerId: string,
      reply: { n: number; id: string },
      status: "sent" | "failed",
      error?: string,
      outcomeOptions?: ReplyOutcomeOptions,
    ) {
      const list = histories.get(followerId) ?? [];
      const first = list[0]?.n ?? 1;
      const h = list[reply.n - first];
      const write = h !== undefined && h.n === reply.n && h.item.id === reply.id &&
        (!outcomeOptions?.onlySending || isUnanswered(h.item));
      if (write) h.item = { ...h.item, ...replyOutcome(status, error, outcomeOptions) };
      return Promise.resolve(write);
    },
    unansweredReplies(before: number, limit: number) {
      // A scan: nothing of this store outlives its process, so only a stop cut short leaves
      // one, and the sweep that asks runs once a minute.
      const found: UnansweredReply[] = [];
      for (const [followerId, list] of histories) {
        for (const h of list) {
          if (isUnanswered(h.item) && h.item.send_time * 1000 < before) {
            found.push({ followerId, n: h.n, item: h.item });
          }
        }
      }
      found.sort((a, b) => a.item.send_time - b.item.send_time);
      return Promise.resolve(found.slice(0, limit));
    },
    transfer(followerId: string, fromAgent: string, toAgent: string, note?: string) {
      return run(() => model.transfer(followerId, fromAgent, toAgent, note));
    },
    claim(followerId: string, agentId: string) {
      return run(() => model.claim(agentId, followerId));
    },
    addNote(agentId: string, followerId: string, text: string) {
      return run(() => ({ n: model.note(agentId, followerId, text) }));
    },
    listAgents() {
      return Promise.resolve([...model.agents.values()].map((a) => ({ ...a })));
    },
    listQuickReplies() {
      return Promise.resolve(sortQuickReplies([...quickReplies.values()]));
    },
    putQuickReply(reply: QuickReply) {
      quickReplies.set(reply.id, { ...reply });
      return Promise.resolve();
    },
    deleteQuickReply(id: string) {
      return Promise.resolve(quickReplies.delete(id));
    },
    closeConversation(followerId: string, agentId: string) {
      return run(() => model.close(followerId, agentId));
    },
    async closeWindow(followerId: string, errcode: number, countedIn: number) {
      await run(() => model.closeWindow(followerId, errcode, countedIn));
    },
    async returnReply(followerId: string, n: number, countedIn: number) {
      return (await run(() => model.returnReply(followerId, n, countedIn))).value;
    },
    forgetFollower(followerId: string, notice: Envelope) {
      return run(() => model.forget(followerId, notice));
    },
    forgetCuts(agentId: string, followerIds: readonly string[]) {
      const found = new Map<string, number>();
      for (const id of followerIds) {
        const seq = cuts.get(id)?.[agentId];
        if (seq !== undefined) found.set(id, seq);
      }
      return Promise.resolve(found);
    },
    async mediaInHistory(keys: readonly string[]) {
      const named = new Set<string>();
      const collect = keyCollector(keys);
      let read = 0;
      for (const list of [...histories.values()]) {
        for (const h of list) collect(JSON.stringify(h.item), named);
        // Callbacks waiting behind the scan are answered between its pages.
        if (++read % 1000 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
      }
      return named;
    },
    async setCapacity(agentId: string, capacity: number | null) {
      await run(() => model.setCapacity(agentId, capacity));
    },
    async renameContact(agentId: string, followerId: string, name: string) {
      await run(() => model.rename(agentId, followerId, name));
    },
    async setLabels(agentId: string, followerId: string, labels: string[]) {
      await run(() => model.setLabels(agentId, followerId, labels));
    },
    async markRead(agentId: string, followerId: string) {
      await run(() => model.markRead(agentId, followerId));
    },
    sweepWindows(now: number) {
      return run(() => model.sweepWindows(now));
    },
    queueDepth(): Promise<number> {
      return Promise.resolve(model.queuedCount);
    },
    ping(): Promise<void> {
      return Promise.resolve();
    },
    close(): Promise<void> {
      clearInterval(pruner);
      return Promise.resolve();
    },
  };
}
