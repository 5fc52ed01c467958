// Reading a server's answers off a raw connection, for tests that write HTTP/1.1 bytes themselves
// (pipelined requests, odd framing) and count what comes back.

/**
 * Reads from `conn` until `count` status lines have arrived, the peer closes, or 3 s pass (then
 * the connection is closed: a server that neither answers nor closes fails the test instead of
 * holding it); the statuses, as "200", in order.
 */
export async function readStatuses(conn: Deno.Conn, count: number): Promise<string[]> {
  const buf = new Uint8Array(16 * 1024);
  let text = "";
  const timer = setTimeout(() => conn.close(), 3_000);
  try {
    while (true) {
      const statuses = text.match(/HTTP\/1\.1 \d{3}/g) ?? [];
      if (statuses.length >= count) return statuses.map((s) => s.slice(9));
      const n = await conn.read(buf).catch(() => null);
      if (n === null) return statuses.map((s) => s.slice(9));
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    clearTimeout(timer);
  }
}
