// The agents of the load generator: real WebSocket clients that count what they receive,
// and one "slow" agent on a raw TCP socket that completes the handshake and never reads.
import { isHeartbeat, receiptId } from "./messages.ts";

/** What the agents received: first receipt time per message id, and everything else. */
export class Receipts {
  readonly receivedAt = new Map<string, number>();
  duplicates = 0;
  heartbeats = 0;
  /** Frames that are neither a tracked message nor a heartbeat (system messages, …). */
  others = 0;
  #expected: Set<string> | Map<string, number>;
  #format: "json" | "raw";
  #onAll: (() => void) | null = null;
  #goal = Infinity;

  /** `expected` holds the ids the run posts (a Map from id to send time works too). */
  constructor(format: "json" | "raw", expected: Set<string> | Map<string, number>) {
    this.#format = format;
    this.#expected = expected;
  }

  record(frame: string, now: number): void {
    const id = receiptId(frame, this.#format);
    if (id === "" || !this.#expected.has(id)) {
      if (isHeartbeat(frame)) this.heartbeats++;
      else this.others++;
      return;
    }
    if (this.receivedAt.has(id)) {
      this.duplicates++;
      return;
    }
    this.receivedAt.set(id, now);
    if (this.receivedAt.size >= this.#goal) this.#onAll?.();
  }

  /** Resolves once `count` distinct messages arrived, or after `timeoutMs`. */
  waitFor(count: number, timeoutMs: number): Promise<void> {
    if (this.receivedAt.size >= count) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      this.#goal = count;
      this.#onAll = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    });
  }
}

export interface AgentPool {
  sockets: WebSocket[];
  /** Sockets the server closed (or that failed) after they had opened. */
  closedByServer(): number;
  close(): void;
}

/**
 * Opens one WebSocket per id at `wsBase + id`, `batch` handshakes at a time, and resolves once
 * every socket is open. Frames go to `receipts`.
 */
export async function connectAgents(
  wsBase: string,
  ids: readonly string[],
  receipts: Receipts,
  options: { batch?: number; timeoutMs?: number } = {},
): Promise<AgentPool> {
  const batch = options.batch ?? 200;
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  const sockets: WebSocket[] = [];
  let closing = false;
  let closedByServer = 0;
  for (let start = 0; start < ids.length; start += batch) {
    const opening = ids.slice(start, start + batch).map((id) =>
      new Promise<WebSocket>((resolve, reject) => {
        const ws = new WebSocket(wsBase + encodeURIComponent(id));
        ws.onmessage = (e) => receipts.record(String(e.data), performance.now());
        ws.onopen = () => {
          ws.onclose = () => {
            if (!closing) closedByServer++;
          };
          resolve(ws);
        };
        ws.onerror = () => reject(new Error(`Cannot connect agent ${id}`));
        ws.onclose = (e) => reject(new Error(`Cannot connect agent ${id}: closed ${e.code}`));
      })
    );
    const left = deadline - Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const opened = await Promise.race([
      Promise.all(opening),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("Cannot connect agents: timed out")), left);
      }),
    ]).finally(() => clearTimeout(timer));
    sockets.push(...opened);
  }
  return {
    sockets,
    closedByServer: () => closedByServer,
    close() {
      closing = true;
      for (const ws of sockets) ws.close();
    },
  };
}

/**
 * An agent that never reads: a raw TCP WebSocket handshake, then nothing. Its receive buffer
 * fills and the server's writes to it back up, as with an agent whose laptop went to sleep.
 */
export async function connectStalledAgent(wsUrl: string): Promise<Deno.Conn> {
  const url = new URL(wsUrl);
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const request = `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
    `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
    "Sec-WebSocket-Version: 13\r\n\r\n";
  await conn.write(new TextEncoder().encode(request));
  // Read the handshake response (it is small), then stop reading. Frames the server sent right
  // after it may share its read (a relay passes both on at once): they are kept for the drain.
  const buf = new Uint8Array(1024);
  const n = await conn.read(buf);
  const got = buf.subarray(0, n ?? 0);
  const head = new TextDecoder().decode(got);
  const end = head.indexOf("\r\n\r\n");
  if (!head.startsWith("HTTP/1.1 101") || end === -1) {
    conn.close();
    throw new Error(`Cannot connect stalled agent: ${head.split("\r\n")[0]}`);
  }
  // The head is ASCII: its length in characters is its length in bytes.
  firstFrames.set(conn, got.slice(end + 4));
  return conn;
}

/** Bytes after the handshake response that `connectStalledAgent` read with it. */
const firstFrames = new WeakMap<Deno.Conn, Uint8Array>();

/**
 * Reads what the server sent the stalled agent, for up to `timeoutMs`, and says how it ended:
 * "closed CODE reason" when the server sent a close frame, "dropped" when it closed the TCP
 * connection without one, "open" when it is still sending or waiting.
 */
export async function drainStalledAgent(conn: Deno.Conn, timeoutMs: number): Promise<string> {
  const first = firstFrames.get(conn) ?? new Uint8Array(0);
  const chunks: Uint8Array[] = [first];
  let size = first.length;
  let ended = false;
  const deadline = performance.now() + timeoutMs;
  const buf = new Uint8Array(256 * 1024);
  while (size < 256 * 1024 * 1024 && performance.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const n = await Promise.race([
      conn.read(buf),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), Math.max(1, deadline - performance.now()));
      }),
    ]).catch(() => null).finally(() => clearTimeout(timer));
    if (n === undefined) break; // timed out: the server keeps the socket open
    if (n === null) {
      ended = true;
      break;
    }
    chunks.push(buf.slice(0, n));
    size += n;
  }
  const close = findCloseFrame(chunks, size);
  if (close) return `closed ${close}`;
  return ended ? "dropped" : "open";
}

/** The code and reason of the first close frame in the server's (unmasked) frames, or "". */
function findCloseFrame(chunks: Uint8Array[], size: number): string {
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.length;
  }
  let at = 0;
  while (at + 2 <= size) {
    const opcode = all[at]! & 0x0f;
    let length = all[at + 1]! & 0x7f;
    let head = 2;
    if (length === 126) {
      length = (all[at + 2]! << 8) | all[at + 3]!;
      head = 4;
    } else if (length === 127) {
      length = Number(new DataView(all.buffer, at + 2, 8).getBigUint64(0));
      head = 10;
    }
    if (at + head + length > size) return "";
    if (opcode === 0x8) {
      const body = all.subarray(at + head, at + head + length);
      const code = body.length >= 2 ? (body[0]! << 8) | body[1]! : 1005;
      return `${code} ${new TextDecoder().decode(body.subarray(2))}`.trim();
    }
    at += head + length;
  }
  return "";
}
