// Puts an agent's log entries back in seq order on their way to this instance's sockets. They
// come two ways (this instance's commits, other instances' over pub/sub) and the hub drops a
// seq at or below the last it wrote, so a late entry would be lost: it is held until the gap fills.

import type { LogEntry } from "../core/store.ts";

/** What the ordering needs from the store. */
export interface OrderOptions {
  /** Reads the log after `afterSeq`, for a gap that pub/sub did not fill. */
  fill(agentId: string, afterSeq: number): Promise<LogEntry[]>;
  /** Hands entries released by a fill or a late arrival to the sockets. */
  emit(entries: LogEntry[]): void;
  /** How long a gap may stay open before the log is read (ms). */
  gapMs: number;
  onError?(error: unknown): void;
}

interface Track {
  /** The next seq to release; null until the agent's start point is known. */
  next: number | null;
  held: Map<number, LogEntry>;
  timer?: ReturnType<typeof setTimeout>;
}

/** Most entries held for one agent before the gap is given up on. */
const MAX_HELD = 5_000;

/** Creates the per-agent ordering for the agents connected to this instance. */
export function createAgentOrder(options: OrderOptions) {
  const tracks = new Map<string, Track>();
  /** Agents whose start point was just set: entries held before it may be due. */
  const begun = new Set<string>();

  function drain(agentId: string, track: Track, out: LogEntry[]): void {
    if (track.next === null) return;
    if (track.held.size > MAX_HELD) track.next = Math.min(...track.held.keys());
    for (let e = track.held.get(track.next); e; e = track.held.get(track.next)) {
      track.held.delete(track.next);
      out.push(e);
      track.next++;
    }
    if (track.held.size > 0 && track.timer === undefined) {
      track.timer = setTimeout(() => fillGap(agentId), options.gapMs);
    }
  }

  function hold(entries: LogEntry[]): Set<string> {
    const touched = new Set<string>();
    for (const entry of entries) {
      const track = tracks.get(entry.agentId);
      if (!track || (track.next !== null && entry.seq < track.next)) continue;
      track.held.set(entry.seq, entry);
      touched.add(entry.agentId);
    }
    return touched;
  }

  /** Reads what is missing from the log; entries trimmed from it are skipped. */
  async function fillGap(agentId: string): Promise<void> {
    const track = tracks.get(agentId);
    if (!track) return;
    if (track.timer !== undefined) clearTimeout(track.timer);
    track.timer = undefined;
    if (track.next === null) return;
    try {
      const entries = await options.fill(agentId, track.next - 1);
      if (tracks.get(agentId) !== track || track.next === null) return;
      const first = entries[0];
      if (first && first.seq > track.next) track.next = first.seq;
      options.emit(admit(entries));
    } catch (error) {
      options.onError?.(error);
      if (tracks.get(agentId) === track && track.timer === undefined) {
        track.timer = setTimeout(() => fillGap(agentId), options.gapMs);
      }
    }
  }

  /** Takes entries from any source; returns those now in order for agents tracked here.
   * Entries for agents not connected here pass through untouched. */
  function admit(entries: LogEntry[]): LogEntry[] {
    const untracked = entries.filter((e) => !tracks.has(e.agentId));
    const out: LogEntry[] = [...untracked];
    const due = hold(entries);
    for (const agentId of begun) due.add(agentId);
    begun.clear();
    for (const agentId of due) {
      const track = tracks.get(agentId);
      if (track) drain(agentId, track, out);
    }
    return out;
  }

  return {
    admit,

    /** Starts holding the agent's entries; its start point comes with `begin`. */
    track(agentId: string): void {
      if (!tracks.has(agentId)) tracks.set(agentId, { next: null, held: new Map() });
    },

    /** Sets where a newly tracked agent starts: entries up to `seq` reach it by replay. The
     * next `admit` releases what was held and is now due. */
    begin(agentId: string, seq: number): void {
      const track = tracks.get(agentId);
      if (!track || track.next !== null) return;
      track.next = seq + 1;
      for (const s of track.held.keys()) if (s <= seq) track.held.delete(s);
      begun.add(agentId);
    },

    /** Stops tracking an agent whose last socket here closed. */
    untrack(agentId: string): void {
      const track = tracks.get(agentId);
      if (track?.timer !== undefined) clearTimeout(track.timer);
      tracks.delete(agentId);
      begun.delete(agentId);
    },

    /** Reads every tracked agent's log after what it was given: a subscriber that reconnected
     * missed what was published meanwhile. */
    catchUp(): void {
      for (const [agentId, track] of tracks) if (track.next !== null) void fillGap(agentId);
    },

    close(): void {
      for (const track of tracks.values()) if (track.timer !== undefined) clearTimeout(track.timer);
      tracks.clear();
    },
  };
}

/** The per-agent ordering. */
export type AgentOrder = ReturnType<typeof createAgentOrder>;
