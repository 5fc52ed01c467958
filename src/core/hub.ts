// The registry of open agent sockets: several per agent (tabs, devices), who is online, and
// the one place frames leave the bridge. A socket still replaying its backlog buffers live
// frames so an agent never sees a message twice or out of order; a live frame that comes before
// the seqs below it (Redis: another instance's commits arrive a moment after this one's) waits
// for them, and past a short wait they are read from the log.

/** The part of a WebSocket the hub uses, so tests can pass a fake. */
export interface AgentSocket {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  readonly readyState: number;
  readonly bufferedAmount: number;
}

/** One open socket of one agent. */
export interface AgentConnection {
  readonly agentId: string;
  readonly socket: AgentSocket;
  /** While replaying `since=`, live frames wait here with their seq. */
  backlog: Array<[number, string]> | null;
  /** The highest seq written to this socket: every one below it was written or passed over. */
  lastSeq: number;
  /** Live frames above a seq not yet written, by seq; null when there are none. */
  held: Map<number, string> | null;
  /** Characters in `held`, or in `backlog` while replaying: past the unsent limit the socket is
   * closed 4001 (see offer and deliver). */
  heldChars: number;
  /** Fires when frames have been held gapWaitMs: the seqs below them are read from the log. */
  gapTimer: ReturnType<typeof setTimeout> | undefined;
  /** While the log is read for a gap (frames held meanwhile wait for that read). */
  filling: boolean;
  /** Characters sent since its unsent bytes were last read (see write). */
  unchecked: number;
  /** Which of the hub's heartbeat turns writes to it (see beat). */
  readonly slot: number;
}

/** Close code telling a client it fell behind and must reconnect with `since=`. */
export const CLOSE_RECONNECT = 4001;
const OPEN = 1;

/** Options for the hub. */
export interface HubOptions {
  /** Unsent bytes above which a socket is closed with 4001; the agent reconnects with since=. */
  maxBufferedBytes?: number;
  onOnline?: (agentId: string) => void;
  onOffline?: (agentId: string) => void;
  /** How many turns of beat() make one heartbeat interval (default 1: every socket each turn). */
  heartbeatSlots?: number;
  /** How long a live frame waits for the seqs below it before they are read from the log. */
  gapWaitMs?: number;
}

/** Told a seq of an agent's log was written live to one of its sockets (the agent's cursor). */
export type Written = (agentId: string, seq: number) => void;

/**
 * Reads an agent's logged entries with seqs in (after, upTo] as frames, leaving out what a
 * replay leaves out; what it does not return is passed over.
 */
export type GapReader = (
  agentId: string,
  after: number,
  upTo: number,
) => Promise<Array<[number, string]>>;

/** Creates the socket registry. */
export function createHub(options: HubOptions = {}) {
  const maxBuffered = options.maxBufferedBytes ?? 8 * 1024 * 1024;
  // Reading a socket's unsent bytes is a call into Deno (2 % of a message's time when made for
  // each frame): it is read once this much was sent since, so a stalled reader is closed within
  // a sixteenth of the limit past it (UTF-8 is at most 3 bytes a character).
  const checkEvery = Math.max(1, Math.floor(maxBuffered / 16 / 3));
  const byAgent = new Map<string, Set<AgentConnection>>();
  let socketCount = 0;
  // Sockets are dealt to the heartbeat's turns in the order they open, so each turn writes to a
  // share of them: one write to every socket at once held the thread that answers WeChat for
  // ~100 ms at 3,000 agents (BENCHMARKS.md, "Heartbeats, spread").
  const slots = Array.from(
    { length: Math.max(1, options.heartbeatSlots ?? 1) },
    () => new Set<AgentConnection>(),
  );
  let nextSlot = 0;
  let turn = 0;
  const gapWaitMs = options.gapWaitMs ?? 250;
  let readGap: GapReader | null = null;
  let written: Written | null = null;

  // Dealt in turn alone, sockets closing unevenly (short-lived ones between long-lived ones) left
  // the long-lived piled in a few turns and the burst came back: a socket goes to the turn with
  // the fewest, the next one in order among equals.
  function emptiestSlot(): number {
    let best = nextSlot;
    for (let k = 1; k < slots.length; k++) {
      const i = (nextSlot + k) % slots.length;
      if (slots[i]!.size < slots[best]!.size) best = i;
    }
    return best;
  }

  function write(conn: AgentConnection, seq: number, frame: string): boolean {
    if (conn.socket.readyState !== OPEN) return false;
    if (seq > 0 && seq <= conn.lastSeq) return true;
    if (conn.unchecked >= checkEvery) {
      conn.unchecked = 0;
      if (conn.socket.bufferedAmount > maxBuffered) {
        // A stalled reader must not grow our memory nor delay others: drop it, it resumes with
        // since=.
        conn.socket.close(CLOSE_RECONNECT, "too slow: reconnect with since=");
        return false;
      }
    }
    conn.unchecked += frame.length;
    try {
      conn.socket.send(frame);
    } catch {
      return false;
    }
    if (seq > 0) conn.lastSeq = seq;
    return true;
  }

  /** Writes a live frame in seq order: one above a seq not yet written waits for it. */
  function offer(conn: AgentConnection, seq: number, frame: string): boolean {
    if (seq > conn.lastSeq + 1) {
      if (conn.socket.readyState !== OPEN) return false;
      const held = conn.held ??= new Map();
      if (held.has(seq)) return true;
      held.set(seq, frame);
      // Held is memory the unsent limit does not see: a log read that hangs while a busy
      // agent's frames keep coming grew it without end.
      conn.heldChars += frame.length;
      if (conn.heldChars > maxBuffered) {
        dropHeld(conn);
        conn.socket.close(CLOSE_RECONNECT, "missed messages: reconnect with since=");
        return false;
      }
      if (!conn.filling) conn.gapTimer ??= setTimeout(() => fillSoon(conn), gapWaitMs);
      return true;
    }
    const wrote = write(conn, seq, frame);
    if (conn.held !== null) writeHeld(conn, false);
    return wrote;
  }

  // Run from a timer: anything it throws would be unhandled, and Deno exits (every socket).
  function fillSoon(conn: AgentConnection): void {
    fillGap(conn).catch(() => {
      dropHeld(conn);
      try {
        conn.socket.close(CLOSE_RECONNECT, "missed messages: reconnect with since=");
      } catch { /* already closing */ }
    });
  }

  function dropHeld(conn: AgentConnection): void {
    conn.held = null;
    conn.heldChars = 0;
  }

  /** Writes the held frames that follow on; `all`: every one, the seqs between passed over. */
  function writeHeld(conn: AgentConnection, all: boolean): void {
    const held = conn.held!;
    const before = conn.lastSeq;
    if (all) {
      for (const seq of [...held.keys()].sort((a, b) => a - b)) write(conn, seq, held.get(seq)!);
      held.clear();
    } else {
      for (let next = held.get(conn.lastSeq + 1); next !== undefined;) {
        const seq = conn.lastSeq + 1;
        held.delete(seq);
        conn.heldChars -= next.length;
        if (!write(conn, seq, next)) break;
        next = held.get(conn.lastSeq + 1);
      }
      // Seqs at or below one written since (by a replay) are there already.
      for (const [seq, frame] of held) {
        if (seq <= conn.lastSeq) {
          held.delete(seq);
          conn.heldChars -= frame.length;
        }
      }
    }
    if (conn.lastSeq > before) written?.(conn.agentId, conn.lastSeq);
    if (held.size > 0 && conn.socket.readyState === OPEN) return;
    dropHeld(conn);
    if (!conn.filling) {
      clearTimeout(conn.gapTimer);
      conn.gapTimer = undefined;
    }
  }

  /**
   * The seqs below held frames did not come: reads them from the log, then writes everything
   * in order, passing over what the log does not have (entries a replay leaves out). Without a
   * log to read, or when it cannot be read, the socket is closed 4001: the agent reconnects
   * with since= the last seq it got, and the replay brings the rest.
   */
  async function fillGap(conn: AgentConnection): Promise<void> {
    const held = conn.held;
    if (held === null || conn.socket.readyState !== OPEN) {
      conn.gapTimer = undefined;
      return;
    }
    conn.filling = true;
    try {
      // Not Math.max(...keys): past ~125,000 arguments it throws, unhandled, and Deno exits.
      let upTo = 0;
      for (const seq of held.keys()) if (seq > upTo) upTo = seq;
      let found: Array<[number, string]>;
      try {
        if (readGap === null) throw new Error("no log to read");
        found = await readGap(conn.agentId, conn.lastSeq, upTo);
      } catch {
        if (conn.held !== held) return;
        dropHeld(conn);
        conn.socket.close(CLOSE_RECONNECT, "missed messages: reconnect with since=");
        return;
      }
      // Written on meanwhile (and any new gap held in a new map, with its own wait).
      if (conn.held !== held) return;
      const later = new Map<number, string>();
      for (const [seq, frame] of held) if (seq > upTo) later.set(seq, frame);
      for (const seq of later.keys()) held.delete(seq);
      for (const [seq, frame] of found) {
        if (seq > conn.lastSeq && seq <= upTo && !held.has(seq)) held.set(seq, frame);
      }
      writeHeld(conn, true);
      if (later.size > 0 && conn.socket.readyState === OPEN) {
        conn.held = later;
        for (const frame of later.values()) conn.heldChars += frame.length;
        writeHeld(conn, false);
      }
    } finally {
      conn.filling = false;
      conn.gapTimer = conn.held === null ? undefined : setTimeout(() => fillSoon(conn), gapWaitMs);
    }
  }

  return {
    /** Registers a socket; it buffers live frames until `finishReplay`. */
    add(agentId: string, socket: AgentSocket): AgentConnection {
      const conn: AgentConnection = {
        agentId,
        socket,
        backlog: [],
        lastSeq: 0,
        held: null,
        heldChars: 0,
        gapTimer: undefined,
        filling: false,
        unchecked: 0,
        slot: emptiestSlot(),
      };
      slots[conn.slot]!.add(conn);
      nextSlot = (conn.slot + 1) % slots.length;
      let set = byAgent.get(agentId);
      const wasOffline = set === undefined;
      if (!set) byAgent.set(agentId, set = new Set());
      set.add(conn);
      socketCount++;
      if (wasOffline) options.onOnline?.(agentId);
      return conn;
    },

    /**
     * Writes the replayed frames' tail: live frames that arrived during replay, in seq order.
     * `readTo`: the last seq the replay read (written or left out), below which nothing waits.
     */
    finishReplay(conn: AgentConnection, readTo = 0): void {
      const pending = conn.backlog ?? [];
      conn.backlog = null;
      conn.heldChars = 0;
      pending.sort((a, b) => a[0] - b[0]);
      // Frames at or below it came while the replay ran (a replay from the cursor they moved
      // did not read them): written as they are; those above it, in order.
      for (const [seq, frame] of pending) {
        if (seq > readTo) {
          if (readTo > conn.lastSeq) conn.lastSeq = readTo;
          offer(conn, seq, frame);
        } else write(conn, seq, frame);
      }
      if (readTo > conn.lastSeq) conn.lastSeq = readTo;
    },

    /** Sets how the seqs a socket was not given live are read from the log, and who is told
     * what was written live (the switchboard: the agent's cursor). */
    readGapsWith(reader: GapReader, wrote?: Written): void {
      readGap = reader;
      written = wrote ?? null;
    },

    /** Unregisters a socket; returns true when it was the agent's last. */
    remove(conn: AgentConnection): boolean {
      const set = byAgent.get(conn.agentId);
      if (!set || !set.delete(conn)) return false;
      slots[conn.slot]?.delete(conn);
      clearTimeout(conn.gapTimer);
      dropHeld(conn);
      socketCount--;
      if (set.size > 0) return false;
      byAgent.delete(conn.agentId);
      options.onOffline?.(conn.agentId);
      return true;
    },

    /** Writes one frame directly to one socket (replay, per-socket errors). */
    writeTo(conn: AgentConnection, seq: number, frame: string): boolean {
      return write(conn, seq, frame);
    },

    /**
     * Sends a frame to every socket of an agent; returns how many took it (or buffered it).
     * Only one written tells `written`: a frame buffered for a replay or held for a seq below it
     * moved the cursor (where a socket without since= starts) past itself and that seq while no
     * socket had them, and a socket closed before writing them took them with it.
     */
    deliver(agentId: string, seq: number, frame: string): number {
      const set = byAgent.get(agentId);
      if (!set) return 0;
      let n = 0;
      let wrote = false;
      for (const conn of set) {
        if (conn.backlog) {
          // Frames waiting for a replay are memory the unsent limit does not see either: a
          // replay paced by a reader that stopped (up to 30 s) grew it without end.
          conn.heldChars += frame.length;
          if (conn.heldChars > maxBuffered) {
            conn.backlog = [];
            conn.heldChars = 0;
            conn.socket.close(CLOSE_RECONNECT, "too slow: reconnect with since=");
            continue;
          }
          conn.backlog.push([seq, frame]);
          n++;
        } else if (offer(conn, seq, frame)) {
          n++;
          if (conn.lastSeq >= seq) wrote = true;
        }
      }
      if (wrote) written?.(agentId, seq);
      return n;
    },

    /**
     * Writes an envelope that is not in the agent's log (a -1 the store could not take) to
     * every socket of the agent here, each with the seq of the last message it got as its
     * `data.seq`, as a socket's answer to its own frame carries (a fresh seq would be one no
     * replay knows); returns how many took it.
     */
    tell(agentId: string, envelope: { data: Record<string, unknown>; result: unknown }): number {
      let n = 0;
      for (const conn of byAgent.get(agentId) ?? []) {
        const frame = JSON.stringify({
          ...envelope,
          data: { ...envelope.data, seq: conn.lastSeq },
        });
        if (write(conn, 0, frame)) n++;
      }
      return n;
    },

    /**
     * Writes a socket's answer to one of its own frames (a -1), unless the socket holds more
     * unsent than the limit: then it is closed as a stalled reader is (4001). An agent writing
     * faster than it reads its answers grew the bridge's memory without bound.
     */
    answer(socket: AgentSocket, frame: string): boolean {
      if (socket.readyState !== OPEN) return false;
      if (socket.bufferedAmount > maxBuffered) {
        socket.close(CLOSE_RECONNECT, "too slow: reconnect with since=");
        return false;
      }
      socket.send(frame);
      return true;
    },

    /** Sends `frame` (the heartbeat) to the sockets of the next turn: called heartbeatSlots
     * times an interval, it reaches every socket once an interval, an interval apart. */
    beat(frame: string): void {
      const set = slots[turn]!;
      turn = (turn + 1) % slots.length;
      for (const conn of set) if (!conn.backlog) write(conn, 0, frame);
    },

    /** Closes every socket with the given code. */
    closeAll(code: number, reason: string): void {
      for (const set of byAgent.values()) {
        for (const conn of set) {
          try {
            conn.socket.close(code, reason);
          } catch { /* already closing */ }
        }
      }
    },

    isOnline(agentId: string): boolean {
      return byAgent.has(agentId);
    },
    onlineAgents(): IterableIterator<string> {
      return byAgent.keys();
    },
    socketsOf(agentId: string): number {
      return byAgent.get(agentId)?.size ?? 0;
    },
    get socketCount(): number {
      return socketCount;
    },
    get agentCount(): number {
      return byAgent.size;
    },
  };
}

/** The socket registry. */
export type Hub = ReturnType<typeof createHub>;
