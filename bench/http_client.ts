// Keep-alive HTTP clients for the load generator, behind one interface so their cost can be
// compared (`deno task bench --clients`). "raw" writes HTTP/1.1 on pooled TCP connections and
// parses only the status line and the body's length: the client must cost less than the
// server it measures, on the same two cores.
import http from "node:http";

export type ClientKind = "raw" | "fetch" | "node";

/** A body made ready to send; `Poster.prepare` makes it, outside the measured loop. */
export type PreparedPost = string | Uint8Array<ArrayBuffer>;

export interface Poster {
  /** Encodes `body` (and the request head) ahead of time, so measuring does not encode. */
  prepare(body: string): PreparedPost;
  /** POSTs a prepared body; resolves to the status once the whole response is read. */
  post(prepared: PreparedPost): Promise<number>;
  close(): void;
}

/** A poster to `url` that keeps at most `connections` connections open. */
export function createPoster(kind: ClientKind, url: string, connections: number): Poster {
  if (kind === "fetch") return createFetchPoster(url);
  if (kind === "node") return createNodePoster(url, connections);
  return createRawPoster(url, connections);
}

function createFetchPoster(url: string): Poster {
  const headers = { "content-type": "text/xml" };
  return {
    prepare: (body) => body,
    async post(body) {
      const res = await fetch(url, { method: "POST", body, headers });
      await res.arrayBuffer();
      return res.status;
    },
    close() {},
  };
}

function createNodePoster(url: string, connections: number): Poster {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const target = new URL(url);
  return {
    prepare: (body) => body,
    post(body) {
      return new Promise((resolve, reject) => {
        const req = http.request({
          agent,
          host: target.hostname,
          port: target.port,
          path: target.pathname + target.search,
          method: "POST",
          headers: { "content-type": "text/xml", "content-length": Buffer.byteLength(body) },
        }, (res) => {
          res.on("data", () => {});
          res.on("end", () => resolve(res.statusCode ?? 0));
          res.on("error", reject);
        });
        req.on("error", reject);
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}

function createRawPoster(url: string, connections: number): Poster {
  const target = new URL(url);
  const head = `POST ${target.pathname}${target.search} HTTP/1.1\r\nhost: ${target.host}\r\n` +
    "content-type: text/xml\r\ncontent-length: ";
  const encoder = new TextEncoder();
  const idle: RawConnection[] = [];
  const waiting: ((conn: RawConnection) => void)[] = [];
  let opened = 0;
  let closed = false;

  async function acquire(): Promise<RawConnection> {
    const conn = idle.pop();
    if (conn) return conn;
    if (opened < connections) {
      opened++;
      try {
        return new RawConnection(
          await Deno.connect({ hostname: target.hostname, port: Number(target.port) }),
        );
      } catch (err) {
        opened--;
        throw err;
      }
    }
    return new Promise((resolve) => waiting.push(resolve));
  }

  function release(conn: RawConnection, reusable: boolean): void {
    if (!reusable || closed) {
      // A closed connection frees its slot; the next caller opens a fresh one.
      opened--;
      conn.close();
      const next = waiting.shift();
      if (next && !closed) acquire().then(next, () => {});
      return;
    }
    const next = waiting.shift();
    if (next) next(conn);
    else idle.push(conn);
  }

  const prepare = (body: string): Uint8Array<ArrayBuffer> => {
    const bytes = encoder.encode(body);
    const request = encoder.encode(`${head}${bytes.length}\r\n\r\n`);
    const whole = new Uint8Array(request.length + bytes.length);
    whole.set(request);
    whole.set(bytes, request.length);
    return whole;
  };
  return {
    prepare,
    async post(body) {
      const whole = typeof body === "string" ? prepare(body) : body;
      const conn = await acquire();
      try {
        const { status, keepAlive } = await conn.request(whole);
        release(conn, keepAlive);
        return status;
      } catch (err) {
        release(conn, false);
        throw err;
      }
    },
    close() {
      closed = true;
      for (const conn of idle.splice(0)) conn.close();
    },
  };
}

const CRLFCRLF = [13, 10, 13, 10];
const latin1 = new TextDecoder("latin1");

/** One keep-alive HTTP/1.1 connection: one request at a time, no pipelining. */
class RawConnection {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(16 * 1024);
  #len = 0;
  #closed = false;

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    conn.setNoDelay(true);
  }

  async request(bytes: Uint8Array): Promise<{ status: number; keepAlive: boolean }> {
    for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
    let headerEnd = -1;
    while ((headerEnd = this.#find(CRLFCRLF, 0)) < 0) await this.#fill();
    const header = latin1.decode(this.#buf.subarray(0, headerEnd)).toLowerCase();
    const status = Number(header.slice(9, 12));
    const keepAlive = !/\r\nconnection:\s*close/.test(header);
    let end = headerEnd + 4;
    const length = header.match(/\r\ncontent-length:\s*(\d+)/);
    if (length) {
      end += Number(length[1]);
      while (this.#len < end) await this.#fill();
    } else if (/\r\ntransfer-encoding:\s*chunked/.test(header)) {
      end = await this.#skipChunks(end);
    } else if (status !== 204 && status !== 304) {
      // No length: the body runs to the end of the connection.
      throw new Error(`Cannot read response: status ${status} without a length`);
    }
    this.#buf.copyWithin(0, end, this.#len);
    this.#len -= end;
    return { status, keepAlive };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed by the peer */ }
  }

  async #skipChunks(start: number): Promise<number> {
    let at = start;
    for (;;) {
      let lineEnd: number;
      while ((lineEnd = this.#find([13, 10], at)) < 0) await this.#fill();
      const size = parseInt(latin1.decode(this.#buf.subarray(at, lineEnd)), 16);
      if (!Number.isFinite(size)) throw new Error("Cannot read response: bad chunk size");
      at = lineEnd + 2 + size + 2; // the chunk, then its CRLF (the last chunk's is the trailer's)
      while (this.#len < at) await this.#fill();
      if (size === 0) return at;
    }
  }

  #find(needle: number[], from: number): number {
    const buf = this.#buf;
    const last = this.#len - needle.length;
    outer: for (let i = from; i <= last; i++) {
      for (let j = 0; j < needle.length; j++) if (buf[i + j] !== needle[j]) continue outer;
      return i;
    }
    return -1;
  }

  async #fill(): Promise<void> {
    if (this.#len === this.#buf.length) {
      const bigger = new Uint8Array(this.#buf.length * 2);
      bigger.set(this.#buf);
      this.#buf = bigger;
    }
    const n = await this.#conn.read(this.#buf.subarray(this.#len));
    if (n === null) throw new Error("Cannot read response: connection closed");
    this.#len += n;
  }
}
