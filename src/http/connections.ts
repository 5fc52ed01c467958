// The listening socket: our own accept loop in front of Deno.serve, because Deno.serve has no
// header or idle timeout, no connection cap, and dies when accept() fails ("Too many open
// files"). Each client connection is relayed to a Deno.serve on a Unix socket in a private
// directory; the handler there tells us when a connection's requests start and finish, so the
// loop knows which ones are waiting for a client that never finishes its headers.

import { getLogger } from "@logtape/logtape";
import { ClientStream, MAX_HEAD_BYTES } from "./client_stream.ts";
import { errorBody, errorResponse, JSON_HEADERS } from "./router.ts";

const log = getLogger(["bridge", "http"]);

/** How long connections may wait on a client, and how many may be open. */
export interface ConnectionLimits {
  /** Open client connections; past it the one idle longest is closed, else the new one refused. */
  maxConnections: number;
  /** From accept to the end of the first request's headers. */
  headersTimeoutMs: number;
  /** Between requests on a kept-alive connection (also bounds the next request's headers). */
  keepAliveTimeoutMs: number;
  /** A WebSocket message (frame or fragments) larger than this closes the connection. */
  maxMessageBytes: number;
  /**
   * A write to the client that takes none of its bytes for this long closes the connection
   * (120 s unless set): a client that stopped reading, whose socket would otherwise stay open.
   */
  stalledWriteMs?: number;
}

/** What the handler learns about the connection a request came on. */
export interface ConnectionInfo {
  /** The client's address (the relay's own on a connection that did not come through it). */
  remoteAddr: Deno.NetAddr;
}

/** A request handler behind the front. */
export type GuardedHandler = (
  req: Request,
  info: ConnectionInfo,
) => Response | Promise<Response>;

/** A running front: the public listener, the connections, and the Deno.serve behind it. */
export interface GuardedServer {
  readonly addr: Deno.NetAddr;
  /** Open client connections. */
  readonly connections: number;
  /** Stops accepting; open connections stay until `closeConnections()` or their timeouts. */
  stopAccepting(): void;
  /** Closes every client connection at once (what is in flight fails). */
  closeConnections(): void;
  /**
   * Stops everything: the listener, connections waiting on their client at once, the others
   * after at most `graceMs` (closing sockets pass their close frames on), then Deno.serve.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/** Every connection costs three descriptors: the client's, ours to Deno.serve, and its side. */
const FDS_PER_CONNECTION = 3;
/** Descriptors kept for the store, media files, outbound requests and ffmpeg's pipes. */
const RESERVED_FDS = 128;
/** Waiting this long after an accept error lets other descriptors close first. */
const ACCEPT_RETRY_MS = 100;
const SWEEP_MS = 1_000;
/** A request body must be whole this long after its request started. */
const BODY_DEADLINE_MS = 30_000;
/** How long Deno may take to close a socket whose client sent a message over the limit. */
const CUT_GRACE_MS = 1_000;
/** A request whose client sent nothing for this long may be closed to make room. */
const QUIET_MS = 1_000;
/**
 * Deno's WebSocket has no timeout on a write, so a socket whose client stopped reading stayed
 * open for good (its close frame and its idle ping queue behind the unsent bytes), still online
 * to the hub and holding one of the agent's places. Twice nginx's send_timeout: Linux wakes a
 * blocked writer only once about a third of a send buffer of up to 4 MB has drained, so a client
 * reading a steady 16 KiB/s (a replay to a phone on a poor link) saw a write take nothing for
 * 91 s; at 120 s one that reads at 12 KiB/s or more is left alone.
 */
const STALLED_WRITE_MS = 120_000;
// Reading a request's head starts with 2 KiB; the relay's buffers start at 256 bytes (see Pump).
const HEAD_CHUNK = 2 * 1024;
const MIN_CHUNK = 256;
const MAX_CHUNK = 64 * 1024;
const EMPTY = new Uint8Array(0);
const REFUSAL = rawError(503, "Service Unavailable", "Too many connections: retry", {
  "retry-after": "1",
});

/** The defaults for a process allowed `openFiles` descriptors. */
export function defaultConnectionLimits(openFiles: number): ConnectionLimits {
  return {
    maxConnections: Math.max(16, Math.floor((openFiles - RESERVED_FDS) / FDS_PER_CONNECTION)),
    headersTimeoutMs: 10_000,
    // Longer than nginx's upstream keepalive_timeout (60 s), so the proxy closes first and never
    // sends a request on a connection we are closing.
    keepAliveTimeoutMs: 75_000,
    // Well above the agents' 24 KiB (answered with a -1 envelope), far below Deno's own 64 MiB.
    maxMessageBytes: 256 * 1024,
    stalledWriteMs: STALLED_WRITE_MS,
  };
}

/**
 * The process's soft limit on open files (Deno raises it to the hard limit at start): from
 * /proc on Linux, else from `ulimit -n` in a child shell, which inherits it (reading /proc/self
 * needs --allow-all, a shell only --allow-run); `fallback` when neither answers.
 */
export function openFilesLimit(fallback = 1024): number {
  const parse = (text: string | undefined) =>
    text === "unlimited" ? 1 << 20 : text !== undefined && /^\d+$/.test(text) ? Number(text) : null;
  try {
    const text = Deno.readTextFileSync("/proc/self/limits");
    const found = parse(/^Max open files\s+(\d+|unlimited)/m.exec(text)?.[1]);
    if (found !== null) return found;
  } catch { /* not Linux, or no --allow-all */ }
  try {
    const out = new Deno.Command("sh", { args: ["-c", "ulimit -n"], stderr: "null" }).outputSync();
    const found = parse(new TextDecoder().decode(out.stdout).trim());
    if (found !== null) return found;
  } catch { /* no shell, or no --allow-run */ }
  return fallback;
}

type Phase = "fresh" | "busy" | "kept" | "upgraded";

/**
 * The relay's next read buffer after a read of `n` bytes into `size` (`wasFull`: the read before
 * filled its buffer): double after a full read, up to 64 KiB; back to 256 bytes after a small
 * read on its own (a heartbeat, say), but not after the short read that ends a burst, which
 * would split every message of a busy connection into two reads and two writes.
 */
export function nextReadSize(size: number, n: number, wasFull: boolean): number {
  if (n === size) return Math.min(size * 2, MAX_CHUNK);
  if (!wasFull && n * 4 <= size) return MIN_CHUNK;
  return size;
}

/** What a link reports to the server that owns it. */
interface LinkOwner {
  /** Closes the link and forgets it. */
  drop(link: Link): void;
  /** The client's WebSocket message was over the limit (the link is cut, see Link.cut). */
  tooLarge(): void;
}

/**
 * One client connection and its relay to Deno.serve (opened once its first headers are in).
 * It copies both directions itself, with no closures or promises of its own beyond a pending
 * read or write per direction: thousands of idle agent sockets each hold one of these.
 */
class Link {
  phase: Phase = "fresh";
  since = performance.now();
  /** The queue of links in this phase that holds this one, and its neighbours there. */
  queue: PhaseQueue | null = null;
  prev: Link | null = null;
  next: Link | null = null;
  active = 0;
  closed = false;
  /** When the client last sent a byte. */
  heard = performance.now();
  inner: Deno.Conn | undefined;
  /**
   * `x-bridge-link: TOKEN` CRLF, added after each request line passed on, so the handler
   * behind knows the link (a Unix socket has no peer address to tell links apart). Random, so
   * nothing that reaches the socket some other way can claim a link; gone after an upgrade.
   */
  tokenLine: Uint8Array | null = null;
  token = "";
  /**
   * Made on the link's first request and kept for the next ones (none after an upgrade): what
   * the handler is told of the connection, and what runs when a response has been sent.
   */
  info: ConnectionInfo | null = null;
  settle: (() => void) | null = null;
  /** A head was refused: nothing more of the client's passes (see pass). */
  refusing = false;
  /** Answers Deno has sent: fewer than the stream's heads while some request waits on one. */
  answered = 0;
  /**
   * The client half-closed with answers owed, or a head too large went as a request of the
   * guard's own (see pass): the end is passed on once the answers are sent (see answer).
   */
  #endHeld = false;
  /** The client's end came while an upgrade's answer was awaited (see upgradeAnswered). */
  #endAwaited = false;
  /** What the client sent so far: where its requests end, its frames after an upgrade. */
  readonly stream: ClientStream;
  /**
   * Since when (as the sweep saw it) the write to the client has taken none of its bytes; 0
   * while none waits. Kept by the sweep, not by each write: a clock read a chunk is ~0.1 µs.
   */
  stalledSince = 0;
  /** The writes to the client completed when the sweep last looked. */
  #seenWrites = -1;
  #up: Pump | undefined;
  #down: Pump | undefined;

  constructor(readonly client: Deno.Conn, maxMessageBytes: number, readonly owner: LinkOwner) {
    this.stream = new ClientStream(maxMessageBytes);
  }

  /**
   * Starts copying both ways once `marked` (what `pass` made of `head`, all the client sent so
   * far) is passed on; written by the pump toward Deno, so that nothing held after an upgrade
   * head can go before it.
   */
  start(inner: Deno.Conn, head: Uint8Array<ArrayBuffer>, marked: Uint8Array): void {
    this.inner = inner;
    this.#up = new Pump(this.client, inner, this);
    this.#down = new Pump(inner, this.client, this);
    this.#down.start();
    if (this.stream.awaiting) this.#up.hold(head, head.length - this.stream.heldFrom);
    this.#up.send(marked);
  }

  /**
   * The first `n` bytes of `buf`, read by `pump`: what to pass on (in `buf` when it has room
   * for the token lines), or null when nothing is to be now (closed, or held by `pump`).
   */
  chunk(pump: Pump, buf: Uint8Array, n: number): Uint8Array | null {
    if (this.closed) return null;
    if (pump !== this.#up) {
      // Deno writes once its handler answered 101 (an earlier request's answer may come first):
      // what waited behind the head goes on as frames from here, not while Deno may still be
      // choosing; one over the limit closes the link only once Deno has closed (see cut).
      if (this.stream.awaiting && this.phase === "upgraded") this.upgradeAnswered(true);
      return buf.subarray(0, n);
    }
    this.heard = performance.now();
    // After an upgrade head, frames or the next request: which, its answer says.
    if (this.stream.awaiting) {
      pump.held = n;
      return null;
    }
    const marked = this.pass(buf, n);
    if (marked === null) {
      if (this.stream.upgrading) this.cut();
      else this.owner.drop(this);
    } else if (!this.refusing && this.stream.awaiting) pump.held = n - this.stream.heldFrom;
    return marked;
  }

  /**
   * A WebSocket message over the limit: nothing more of the client's passes, but what Deno wrote
   * before it still goes out (the answers before an upgrade and its 101 may be unread yet: the
   * frames go on at the first bytes Deno writes once its handler answered 101). Deno is told the
   * client is done, and closes; the link is dropped then, or after CUT_GRACE_MS.
   */
  cut(): void {
    this.refusing = true;
    this.#passEnd();
    Deno.unrefTimer(setTimeout(() => this.owner.drop(this), CUT_GRACE_MS));
  }

  /**
   * The handler behind answered the upgrade request the stream awaits on (`upgraded`: 101):
   * what the client sent after its head goes on, as frames measured from the first, or as
   * requests with the link's token (what Deno answers when it does not upgrade).
   */
  upgradeAnswered(upgraded: boolean): void {
    if (!this.stream.awaiting) return;
    if (upgraded) this.stream.accepted();
    else this.stream.refused();
    if (this.#endAwaited) {
      this.#endAwaited = false;
      this.#clientEnded();
    }
    this.#up?.resume();
  }

  /**
   * What of the client's `buf[0..n]` to pass on: marked (see mark), or null. A head Deno's
   * parser refuses too, or would read otherwise, is not passed on, nor anything after; in its
   * place goes a head no HTTP parser takes, so that Deno answers the requests before it, then
   * 400, and closes: the answers stay in order, however long the ones before take. A head too
   * large goes as a request of the guard's own (see tooLargeStandIn), which the handler behind
   * answers 431: Deno sends that only if it is still reading, after whole answers (one cut short,
   * or a request that asked to close, closes the connection first), and the client's end is
   * passed on once it is sent.
   */
  pass(buf: Uint8Array, n: number): Uint8Array | null {
    const marked = this.mark(buf, n);
    if (marked !== null || !(this.stream.badHead || this.stream.badBody)) return marked;
    this.refusing = true;
    const at = this.stream.refusedAt;
    const before = this.withTokens(buf, at, lineEnds.filter((end) => end <= at).length);
    let after: Uint8Array = UNPARSABLE_HEAD;
    if (this.stream.badBody) {
      // The body's request already runs behind (its handler started: the answered and the
      // active count it): its body read fails at once on a line Deno's parser cannot take.
      // Before it starts, the guard's handler answers it 400 in its place (see serveGuarded).
      if (this.answered + this.active < this.stream.heads) return before;
      after = BAD_CHUNK_LINE;
    } else if (this.stream.headTooLarge) {
      after = this.tooLargeStandIn();
      this.#endHeld = true;
    }
    const out = new Uint8Array(before.length + after.length);
    out.set(before);
    out.set(after, before.length);
    return out;
  }

  /**
   * What goes to Deno in place of a head too large: a request of its own with a line that names
   * the link's token (TOO_LARGE_HEADER), or, if part of the head has gone on already, the end of
   * that head with the line, made so that it cannot end the head before the line; where no line
   * can follow, a head no parser takes (Deno answers 400, in order, as for a head it refuses).
   */
  tooLargeStandIn(): Uint8Array {
    const tail = this.stream.refusedTail;
    const line = `${TOO_LARGE_HEADER}: ${this.token}\r\n\r\n`;
    if (tail === "none") {
      return encoder.encode(`GET / HTTP/1.1\r\n${LINK_HEADER}: ${this.token}\r\n${line}`);
    }
    if (tail === null) return UNPARSABLE_HEAD;
    return encoder.encode((tail === "lf" ? "" : tail === "cr" ? "\n" : "\r\n") + line);
  }

  /**
   * Feeds the first `n` bytes of `buf` (client bytes) to the stream; they come back with the
   * link's token after each request line, or null when they must not pass (a WebSocket
   * message over the limit). The lines go in `buf` itself when it has room past `n` (a read
   * that leaves the buffer's last 49 bytes free: nearly all, the buffer grows while reads fill
   * it), so a request costs no copy of its own.
   */
  mark(buf: Uint8Array, n: number): Uint8Array | null {
    lineEnds.length = 0;
    if (!this.stream.feed(buf, lineEnds, n)) {
      if (this.stream.upgrading) this.owner.tooLarge();
      return null;
    }
    const at = this.stream.awaiting ? this.stream.heldFrom : n;
    if (at === n) return this.withTokens(buf, n, lineEnds.length);
    // Bytes came after an upgrade head: they wait at the buffer's start for its answer, so what
    // passes now is a copy (its token lines would overwrite them in place).
    const head = buf.subarray(0, at);
    const out = lineEnds.length > 0 ? this.withTokens(head, at, lineEnds.length) : head.slice();
    buf.copyWithin(0, at, n);
    return out;
  }

  /** `buf[0..n]` with the link's token after each of the first `count` lineEnds. */
  withTokens(buf: Uint8Array, n: number, count: number): Uint8Array {
    const line = this.tokenLine;
    if (count === 0 || line === null) return buf.subarray(0, n);
    const total = n + line.length * count;
    if (total > buf.length) {
      const out = new Uint8Array(total);
      let from = 0;
      let to = 0;
      for (let k = 0; k < count; k++) {
        const end = lineEnds[k]!;
        out.set(buf.subarray(from, end), to);
        to += end - from;
        out.set(line, to);
        to += line.length;
        from = end;
      }
      out.set(buf.subarray(from, n), to);
      return out;
    }
    // From the last line back, so that no byte is overwritten before it has moved.
    let end = n;
    let to = total;
    for (let k = count - 1; k >= 0; k--) {
      const at = lineEnds[k]!;
      to -= end - at;
      buf.copyWithin(to, at, end);
      to -= line.length;
      buf.set(line, to);
      end = at;
    }
    return buf.subarray(0, total);
  }

  /** The sweep's look at the write to the client: since when it has taken nothing, or 0. */
  lookAtWrites(now: number): number {
    const down = this.#down;
    if (down === undefined || !down.writing) return this.stalledSince = 0;
    if (down.writes !== this.#seenWrites) {
      this.#seenWrites = down.writes;
      this.stalledSince = now;
    }
    return this.stalledSince;
  }

  /** Deno sent the answer to one more request. */
  answer(): void {
    this.answered++;
    if (this.#endHeld && this.answered >= this.stream.whole) {
      this.#endHeld = false;
      this.#passEnd();
    } else if (this.refusing && this.stream.badBody && this.answered === this.stream.heads) {
      // The refused body's request is answered: Deno would wait for the rest of its body before
      // closing, as its 400 asks; the client's end, passed on, closes it now.
      this.#passEnd();
    }
  }

  /** `pump`'s source ended or failed. */
  ended(pump: Pump): void {
    if (pump === this.#up && !this.closed) {
      // Behind an upgrade head, whether the connection stays HTTP is its answer's to say.
      if (this.stream.awaiting) this.#endAwaited = true;
      else this.#clientEnded();
    } else {
      this.owner.drop(this);
    }
  }

  /**
   * The client finished sending. Deno drops a connection once it reads its end, answers under
   * way with it: the end waits until every request sent whole has its answer, also when one cut
   * short follows (it has none coming: Deno reads it only after the others are answered), and an
   * agent's socket closes its own way.
   */
  #clientEnded(): void {
    if (!this.stream.upgrading && this.answered < this.stream.whole) this.#endHeld = true;
    else this.#passEnd();
  }

  /** Passes the client's half-close on: Deno answers what it has, then closes. */
  #passEnd(): void {
    this.inner?.closeWrite().catch(() => this.owner.drop(this));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const conn of [this.client, this.inner]) {
      try {
        conn?.close();
      } catch { /* closed already */ }
    }
  }
}

/**
 * Copies `from` to `to` until `from` ends or fails, telling its link of each chunk. Each chunk
 * is written before the next read, so a reader that stops reading holds its writer back. The
 * buffer starts small, because most of these wait on an idle agent socket (see nextReadSize).
 */
class Pump {
  #buf = new Uint8Array(MIN_CHUNK);
  /**
   * Client bytes at the start of the buffer, read after an upgrade head and waiting for its
   * answer (see Link.chunk): passed on as read, from `start`, once it is known.
   */
  held = 0;
  /** What is being written (the part of the chunk not written yet). */
  #out: Uint8Array = EMPTY;
  #last = 0;
  #wasFull = false;
  /** Writes completed (whole or in part): the sweep sees a stalled one by this not moving. */
  writes = 0;

  constructor(readonly from: Deno.Conn, readonly to: Deno.Conn, readonly link: Link) {}

  start(): void {
    if (this.held > 0) {
      if (this.link.stream.awaiting) return;
      const n = this.held;
      this.held = 0;
      return this.#onRead(n);
    }
    this.from.read(this.#buf).then(this.#onRead, this.#onEnd);
  }

  /** Takes `buf`, whose first `n` bytes wait for an upgrade's answer, as its buffer. */
  hold(buf: Uint8Array<ArrayBuffer>, n: number): void {
    if (n === 0) return;
    this.#buf = buf;
    this.held = n;
  }

  /** Writes `chunk` (read before the pump was made), then goes on as after any write. */
  send(chunk: Uint8Array): void {
    this.#out = chunk;
    this.to.write(chunk).then(this.#onWritten, this.#onEnd);
  }

  /** The upgrade's answer is known: held bytes go on now, or after the write under way. */
  resume(): void {
    if (this.held > 0 && !this.writing) this.start();
  }

  readonly #onRead = (n: number | null): void => {
    if (n === null) return this.link.ended(this);
    let chunk: Uint8Array | null;
    try {
      chunk = this.link.chunk(this, this.#buf, n);
    } catch (error) {
      // Thrown in a promise's callback it would be an unhandled rejection, which ends Deno.
      log.error("Relay failed: {error}", { error });
      this.link.owner.drop(this.link);
      return;
    }
    if (chunk === null) return;
    this.#last = n;
    // One write nearly always takes the whole chunk: no async loop around it (see #onWritten).
    this.#out = chunk;
    this.to.write(chunk).then(this.#onWritten, this.#onEnd);
  };

  /** Whether a write is waiting on `to`. */
  get writing(): boolean {
    return this.#out !== EMPTY;
  }

  readonly #onWritten = (written: number): void => {
    this.writes++;
    if (written < this.#out.length) {
      this.#out = this.#out.subarray(written);
      this.to.write(this.#out).then(this.#onWritten, this.#onEnd);
      return;
    }
    this.#out = EMPTY;
    const size = this.#buf.length;
    const next = nextReadSize(size, this.#last, this.#wasFull);
    // Held bytes are in the buffer: it is kept until they have gone on.
    if (next !== size && this.held === 0) this.#buf = new Uint8Array(next);
    this.#wasFull = this.#last === size;
    // Nothing more of the client's is read once a head was refused (see Link.pass).
    if (this.link.refusing && this.to === this.link.inner) return;
    this.start();
  };

  // A reset, or closed by the other direction or a timeout.
  readonly #onEnd = (): void => this.link.ended(this);
}

/**
 * The links in one phase, oldest first: an intrusive list (each link holds its neighbours),
 * so a link changing phase on every request allocates nothing and reorders no table.
 */
class PhaseQueue {
  head: Link | null = null;
  tail: Link | null = null;

  /** Appends `link`, which is in no queue. */
  push(link: Link): void {
    link.queue = this;
    link.prev = this.tail;
    link.next = null;
    if (this.tail === null) this.head = link;
    else this.tail.next = link;
    this.tail = link;
  }

  /** Takes `link` out of this queue, which holds it. */
  remove(link: Link): void {
    if (link.prev === null) this.head = link.next;
    else link.prev.next = link.next;
    if (link.next === null) this.tail = link.prev;
    else link.next.prev = link.prev;
    link.queue = null;
    link.prev = null;
    link.next = null;
  }
}

/** Serves `handler` on `hostname:port` behind the accept loop; listening when it returns. */
export function serveGuarded(
  options: { port: number; hostname: string; limits: ConnectionLimits },
  handler: GuardedHandler,
): GuardedServer {
  const { limits } = options;
  // Links by their token (Link.tokenLine): the handler behind finds its request's link by it.
  const byToken = new Map<string, Link>();
  const links = new Set<Link>();
  // Connections waiting on their client, oldest first.
  const fresh = new PhaseQueue();
  const kept = new PhaseQueue();
  const busy = new PhaseQueue();
  let accepting = true;

  // Under attack these repeat for every connection: one line in 10 s says it.
  const lastWarnings = new Map<string, number>();
  const warnAtMostEvery10s = (message: string, error: unknown) => {
    const t = performance.now();
    if (t - (lastWarnings.get(message) ?? -Infinity) < 10_000) return;
    lastWarnings.set(message, t);
    log.warn(message, { error });
  };

  const setPhase = (link: Link, phase: Phase) => {
    link.queue?.remove(link);
    link.phase = phase;
    link.since = performance.now();
    if (phase === "fresh") fresh.push(link);
    else if (phase === "kept") kept.push(link);
    else if (phase === "busy") busy.push(link);
  };
  const drop = (link: Link) => {
    link.close();
    links.delete(link);
    link.queue?.remove(link);
    if (link.token !== "") byToken.delete(link.token);
  };

  // Made once a link, not a closure a request (innerHandler's scope captures nothing of its own).
  const settler = (link: Link) => () => {
    link.active--;
    link.answer();
    if (link.active === 0 && link.phase === "busy") setPhase(link, "kept");
  };
  // Not async: most requests need nothing after the handler, so they cost no promise of ours
  // (Deno.serve takes a response or a promise, and answers a thrown error through onError).
  const innerHandler = (
    req: Request,
    info: Deno.ServeHandlerInfo<Deno.UnixAddr>,
  ): Response | Promise<Response> => {
    // A client's own x-bridge-link header comes after ours: the joined value matches no link.
    const link = byToken.get(req.headers.get(LINK_HEADER) ?? "");
    if (link === undefined) {
      // Only our relay knows the tokens; anything else would skip every limit.
      return new Response("Connect through the public port", { status: 421 });
    }
    // Deno names a request on a Unix socket http+unix://HOST/…: the bridge builds the URLs it
    // hands out (media, the console's) from req.url, so it sees what the client asked for.
    urlProperty.value = publicUrl(req.url, listener.addr as Deno.NetAddr);
    Object.defineProperty(req, "url", urlProperty);
    // As Deno.upgradeWebSocket reads it (any value containing "websocket"), and as the relay
    // does, so that no socket it upgrades goes unmetered.
    const upgrade = req.headers.get("upgrade")?.toLowerCase().includes("websocket") ?? false;
    link.active++;
    if (link.phase !== "upgraded") setPhase(link, "busy");
    // One reaction whether the response went out or failed (a rejection handled here too).
    const settle = link.settle ??= settler(link);
    info.completed.then(settle, settle);
    if (link.refusing) {
      // The guard's stand-in for a head too large: the client's own header of that name comes
      // before the guard's, whose token no client knows.
      if (req.headers.get(TOO_LARGE_HEADER)?.endsWith(link.token)) {
        return errorResponse(431, HEAD_TOO_LARGE_MESSAGE, { connection: "close" });
      }
      // The request whose chunked body was refused before it started (see Link.pass): nothing
      // of it from the refused byte on reached Deno, which would wait for the rest.
      if (link.stream.badBody && link.answered + link.active === link.stream.heads) {
        return errorResponse(400, BAD_CHUNKED_BODY, { connection: "close" });
      }
    }
    if (upgrade && !link.stream.awaiting) {
      // The relay did not read it as an upgrade: the frames after it would not be measured.
      return new Response("Open the WebSocket on a connection of its own", { status: 400 });
    }
    const connection = link.info ??= { remoteAddr: link.client.remoteAddr as Deno.NetAddr };
    if (!upgrade) return handler(req, connection);
    // Only an upgrade request can be answered 101 (Deno.upgradeWebSocket checks the header), and
    // it is the one the stream awaits on: nothing after its head has been passed on. A throw is
    // Deno's to answer (500, as a rejection): the connection stays HTTP.
    try {
      return upgraded(link, handler(req, connection));
    } catch (error) {
      link.upgradeAnswered(false);
      throw error;
    }
  };
  /** After the handler's answer to an upgrade request: the link is an agent's socket, or HTTP. */
  const upgraded = async (link: Link, answer: Response | Promise<Response>) => {
    let res: Response;
    try {
      res = await answer;
    } catch (error) {
      link.upgradeAnswered(false); // Deno answers 500 (onError) and reads on
      throw error;
    }
    // An upgraded connection is an agent's socket: its own heartbeat and idle timeout guard it.
    // No request follows on it, so it needs no token from here on.
    if (res.status === 101) {
      setPhase(link, "upgraded");
      byToken.delete(link.token);
      link.token = "";
      link.tokenLine = null;
      link.settle = null;
      link.info = null;
    } else link.upgradeAnswered(false); // on 101, once Deno writes it (see Link.chunk)
    return res;
  };
  let shuttingDown = false;
  // Other users cannot reach a socket in a directory only we may enter (makeTempDir: 0700).
  let socketDir: string;
  try {
    socketDir = Deno.makeTempDirSync({ prefix: "bridge_http_" });
  } catch (error) {
    throw new Error(
      `Cannot create the connection relay's socket directory under TMPDIR: ${error}`,
      { cause: error },
    );
  }
  let socketCount = 0;
  /**
   * Deno.serve's own accept loop ends, with a rejection that would end the process, when it
   * runs out of descriptors (the cap set above the limit, or other files open): log it and
   * serve again on a new socket, for the connections accepted from then on.
   */
  const serveInner = (): Deno.HttpServer<Deno.UnixAddr> => {
    const path = `${socketDir}/http${socketCount++}.sock`;
    const server = Deno.serve({
      path,
      onListen: () => {},
      onError: (error) => {
        log.error("Request failed: {error}", { error });
        return new Response("Internal error", { status: 500 });
      },
    }, innerHandler);
    server.finished.catch(async (error) => {
      Deno.remove(path).catch(() => {});
      if (shuttingDown) return;
      log.error("The HTTP server behind the relay stopped ({error}); starting it again", {
        error,
      });
      await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
      while (!shuttingDown) {
        try {
          inner = serveInner();
          return;
        } catch (error) {
          log.error("Cannot start the HTTP server again: {error}", { error });
          await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS * 10));
        }
      }
    });
    return server;
  };
  let inner = serveInner();

  const listener = Deno.listen({ port: options.port, hostname: options.hostname });

  /**
   * Makes room for one more connection by closing the one that waited longest on its client:
   * headers never finished, then kept alive with nothing to do, then a request whose client
   * went quiet in its body or takes none of its answer (stalled). False when every connection
   * is working. A request sent whole and not yet answered is never closed: its client is quiet
   * because it waits on us (a reply through WeChat's API takes seconds), and bodies trickled on
   * the other places would otherwise outlast it.
   */
  const makeRoom = (): boolean => {
    if (links.size < limits.maxConnections) return true;
    let victim = fresh.head ?? kept.head;
    if (victim === null) {
      const quiet = performance.now() - QUIET_MS;
      for (let link = busy.head; link !== null; link = link.next) {
        const stalled = link.stalledSince !== 0 && link.stalledSince < quiet;
        if (link.heard < quiet && (link.stream.inBody || stalled)) {
          victim = link;
          break;
        }
      }
    }
    // Every connection busy: the oldest request still sending its body gives way, so bodies
    // trickled a byte at a time cannot hold every place.
    if (victim === null) {
      for (let link = busy.head; link !== null; link = link.next) {
        if (link.stream.inBody) {
          victim = link;
          break;
        }
      }
    }
    if (victim === null) return false;
    drop(victim);
    return true;
  };

  const owner: LinkOwner = {
    drop,
    tooLarge: () =>
      log.warn("Closed a WebSocket whose message is over {max} bytes", {
        max: limits.maxMessageBytes,
      }),
  };

  const relay = async (client: Deno.Conn) => {
    const link = new Link(client, limits.maxMessageBytes, owner);
    links.add(link);
    setPhase(link, "fresh");
    // Until its first headers are complete a connection costs one descriptor, not three: a
    // thousand clients that never finish them hold a thousand, and the sweep closes them.
    const head = await readHead(client);
    if (head === HEAD_TOO_LARGE) await client.write(HEADERS_TOO_LARGE).catch(() => {});
    if (head === null || head === HEAD_TOO_LARGE || link.closed) {
      drop(link);
      return;
    }
    link.token = newToken();
    link.tokenLine = encoder.encode(`${LINK_HEADER}: ${link.token}\r\n`);
    byToken.set(link.token, link);
    const marked = link.pass(head, head.length);
    if (marked === null) {
      drop(link);
      return;
    }
    let innerConn: Deno.Conn;
    try {
      innerConn = await Deno.connect({ transport: "unix", path: inner.addr.path });
    } catch (error) {
      warnAtMostEvery10s("Cannot relay a connection: {error}", error);
      drop(link);
      return;
    }
    if (link.closed) {
      innerConn.close();
      return;
    }
    // The connection stays "fresh" (and evictable) until Deno.serve has the request; from here
    // the link copies on its own, and this function returns so that nothing of it stays.
    link.start(innerConn, head, marked);
  };

  const sweep = setInterval(() => {
    const now = performance.now();
    for (
      const [queue, limit] of [[fresh, limits.headersTimeoutMs], [
        kept,
        limits.keepAliveTimeoutMs,
      ]] as const
    ) {
      while (queue.head !== null && now - queue.head.since >= limit) drop(queue.head);
    }
    // A body, however slowly it trickles, has a deadline from its request's start.
    for (let link = busy.head; link !== null;) {
      if (now - link.since < BODY_DEADLINE_MS) break;
      const next = link.next;
      if (link.stream.inBody) drop(link);
      link = next;
    }
    // A client that reads nothing of what is sent to it, in any phase (upgraded sockets too).
    const stalledMs = limits.stalledWriteMs ?? STALLED_WRITE_MS;
    for (const link of links) {
      const since = link.lookAtWrites(now);
      if (since !== 0 && now - since >= stalledMs) drop(link);
    }
  }, SWEEP_MS);
  Deno.unrefTimer(sweep);

  const accepted = (async () => {
    while (accepting) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch (error) {
        if (!accepting || error instanceof Deno.errors.BadResource) break;
        // Out of descriptors, or a connection reset before it was accepted: never fatal.
        warnAtMostEvery10s("Cannot accept a connection: {error}", error);
        await new Promise((r) => setTimeout(r, ACCEPT_RETRY_MS));
        continue;
      }
      if (!makeRoom()) {
        refuse(client);
        continue;
      }
      // Deno.serve writes without Nagle's delay; the relay must not add it back (a chunk
      // written right after another would wait for the client's delayed ACK, up to 40 ms).
      try {
        (client as Deno.TcpConn).setNoDelay(true);
      } catch { /* reset already */ }
      relay(client).catch((error) => log.warn("Relay failed: {error}", { error }));
    }
  })();

  const stopAccepting = () => {
    if (!accepting) return;
    accepting = false;
    try {
      listener.close();
    } catch { /* closed already */ }
  };
  const closeConnections = () => {
    for (const link of [...links]) drop(link);
  };

  return {
    addr: listener.addr as Deno.NetAddr,
    get connections() {
      return links.size;
    },
    stopAccepting,
    closeConnections,
    async shutdown(graceMs = 0) {
      stopAccepting();
      await accepted;
      clearInterval(sweep);
      const deadline = performance.now() + graceMs;
      while (true) {
        while (fresh.head !== null) drop(fresh.head);
        while (kept.head !== null) drop(kept.head);
        if (links.size === 0 || performance.now() >= deadline) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      closeConnections();
      shuttingDown = true;
      await inner.shutdown();
      await Deno.remove(socketDir, { recursive: true }).catch(() => {});
    },
  };
}

const UNIX_SCHEME = "http+unix://";

/**
 * `url` of a request that came over the Unix socket, as the client addressed it: http://, with
 * the Host header's host; without one Deno names the socket's path (percent-encoded, no "/"),
 * which becomes the public listener's address.
 */
export function publicUrl(url: string, listening: Deno.NetAddr): string {
  if (!url.startsWith(UNIX_SCHEME)) return url;
  const rest = url.slice(UNIX_SCHEME.length);
  if (!rest.startsWith("%2F")) return "http://" + rest;
  const slash = rest.indexOf("/");
  const host = listening.hostname.includes(":")
    ? `[${listening.hostname}]:${listening.port}`
    : `${listening.hostname}:${listening.port}`;
  return `http://${host}${slash === -1 ? "/" : rest.slice(slash)}`;
}

const LINK_HEADER = "x-bridge-link";
/** On the guard's stand-in for a head too large, with the link's token (see tooLargeStandIn). */
const TOO_LARGE_HEADER = "x-bridge-too-large";
/** The descriptor innerHandler gives req.url (reused: defineProperty reads it at once). */
const urlProperty: PropertyDescriptor = { value: "" };
const encoder = new TextEncoder();
/** Where request lines ended in the chunk just fed (reused: feeding is synchronous). */
const lineEnds: number[] = [];

/** 128 random bits, the token of one link. */
function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let hex = "";
  for (const b of bytes) hex += (b < 16 ? "0" : "") + b.toString(16);
  return hex;
}

/** A request line with no target or version: Deno's parser answers it 400 and closes. */
// A NUL is no byte of a method, a header name or a header value: whatever part of the refused
// head Deno already has (one begun in an earlier read), this cannot complete it as a request.
const UNPARSABLE_HEAD = new TextEncoder().encode("\0REFUSED\r\n\r\n");
/**
 * After a chunked body's refused byte, in its place: a line Deno's parser fails at once, in any
 * part of a body's framing (a size line, after a chunk's data or its CR, a trailer).
 */
const BAD_CHUNK_LINE = new TextEncoder().encode("\0\r\n");
// Said as the handler's own body read says it (src/http/limits.ts), and why.
const BAD_CHUNKED_BODY = "Cannot read request body: its framing is invalid (each line of a " +
  "chunked body's framing ends in CRLF, a size is a hex number of at most 64 bits with no tab " +
  "or other control byte around it or in its extension, a trailer a header line)";
const HEAD_TOO_LARGE = "too large" as const;
const HEAD_TOO_LARGE_MESSAGE = `Request header fields too large: a request line and headers ` +
  `of at most ${MAX_HEAD_BYTES / 1024} KiB`;
/** The guard's 431 to a connection's first head: the one Deno sends for a later one (see pass). */
const HEADERS_TOO_LARGE = rawError(
  431,
  "Request Header Fields Too Large",
  HEAD_TOO_LARGE_MESSAGE,
);

/**
 * An answer the guard writes itself, with no Deno.serve behind it, closing the connection: the
 * bridge's JSON error (see errorResponse), made once at start.
 */
function rawError(
  status: number,
  reason: string,
  message: string,
  headers: Record<string, string> = {},
): Uint8Array {
  // Its own encoder: REFUSAL is made above the module's `encoder`, before that is set.
  const bytes = new TextEncoder();
  const body = bytes.encode(JSON.stringify(errorBody(message)));
  const lines = Object.entries({ ...JSON_HEADERS, ...headers, connection: "close" })
    .map(([name, value]) => `${name}: ${value}\r\n`).join("");
  const head = bytes.encode(
    `HTTP/1.1 ${status} ${reason}\r\n${lines}content-length: ${body.length}\r\n\r\n`,
  );
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/**
 * Reads until the end of the first request's headers (CRLF CRLF) and returns all bytes read;
 * null when the client closed or failed first.
 */
async function readHead(
  conn: Deno.Conn,
): Promise<Uint8Array<ArrayBuffer> | null | typeof HEAD_TOO_LARGE> {
  let buf = new Uint8Array(HEAD_CHUNK);
  let length = 0;
  /** Where the request line begins, past empty lines (-1: not yet). */
  let begun = -1;
  try {
    while (true) {
      if (length === buf.length) {
        if (buf.length >= MAX_HEAD_BYTES) return HEAD_TOO_LARGE;
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const n = await conn.read(buf.subarray(length));
      if (n === null) return null;
      // Byte by byte up to the end of the head (body bytes may follow in the same read), at its
      // first empty line, CRLF or a bare LF as for Deno's parser. Where requests end is the
      // stream's to say (ClientStream): this only tells when to open the relay.
      const start = length;
      length += n;
      for (let i = start; i < length; i++) {
        const byte = buf[i];
        if (begun === -1) {
          if (byte !== 10 && byte !== 13) begun = i;
          continue;
        }
        if (byte !== 10) continue;
        const prev = buf[i - 1];
        if (prev === 10 || (prev === 13 && i - 2 >= begun && buf[i - 2] === 10)) {
          return buf.subarray(0, length);
        }
      }
    }
  } catch {
    return null;
  }
}

/** Answers 503 and closes, without waiting on a client that may not read. */
function refuse(conn: Deno.Conn): void {
  conn.write(REFUSAL).catch(() => {}).finally(() => {
    try {
      conn.close();
    } catch { /* closed already */ }
  });
}

/**
 * Deno.serve on its own, for a bridge behind a reverse proxy that already times out slow
 * clients and caps connections (CONNECTION_GUARD=off): no relay, so each connection costs one
 * descriptor and no copy, but nothing here protects against held connections.
 */
export function serveDirect(
  options: { port: number; hostname: string },
  handler: GuardedHandler,
): GuardedServer {
  let open = 0;
  const server = Deno.serve(
    { port: options.port, hostname: options.hostname, onListen: () => {} },
    async (req, info) => {
      open++;
      try {
        // Deno's own info, whose address is made only when read (anonymous pushes to /send).
        return await handler(req, info);
      } finally {
        open--;
      }
    },
  );
  return {
    addr: server.addr,
    get connections() {
      return open;
    },
    // Deno.serve cannot stop accepting alone: the bridge answers 503 while stopping instead.
    stopAccepting() {},
    closeConnections() {},
    shutdown: () => server.shutdown(),
  };
}
