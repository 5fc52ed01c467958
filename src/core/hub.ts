// The registry of open agent sockets: several per agent (tabs, devices), who is online, and
// the one place frames leave the bridge. A socket still replaying its backlog buffers live
// frames so an agent never sees a message twice or out of order.

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
  /** The highest seq written to this socket. */
  lastSeq: number;
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
}

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

  return {
    /** Registers a socket; it buffers live frames until `finishReplay`. */
    add(agentId: string, socket: AgentSocket): AgentConnection {
      const conn: AgentConnection = {
        agentId,
        socket,
        backlog: [],
        lastSeq: 0,
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

    /** Writes the replayed frames' tail: live frames that arrived during replay, in seq order. */
    finishReplay(conn: AgentConnection): void {
      const pending = conn.backlog ?? [];
      conn.backlog = null;
      pending.sort((a, b) => a[0] - b[0]);
      for (const [seq, frame] of pending) write(conn, seq, frame);
    },

    /** Unregisters a socket; returns true when it was the agent's last. */
    remove(conn: AgentConnection): boolean {
      const set = byAgent.get(conn.agentId);
      if (!set || !set.delete(conn)) return false;
      slots[conn.slot]?.delete(conn);
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

    /** Sends a frame to every socket of an agent; returns how many took it (or buffered it). */
    deliver(agentId: string, seq: number, frame: string): number {
      const set = byAgent.get(agentId);
      if (!set) return 0;
      let n = 0;
      for (const conn of set) {
        if (conn.backlog) {
          conn.backlog.push([seq, frame]);
          n++;
        } else if (write(conn, seq, frame)) n++;
      }
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
