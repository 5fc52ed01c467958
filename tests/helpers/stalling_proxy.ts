// A TCP relay in front of a server whose links can be stalled one at a time: a stalled link
// stays open and passes nothing either way, as one a NAT or firewall dropped without a word.

/** A running relay: its port, the links it accepted (in order), and a way to stall one. */
export interface StallingProxy {
  readonly port: number;
  /** Links accepted so far. */
  readonly accepted: number;
  /** Stops relaying on the `n`th accepted link (1-based), keeping it open. */
  stall(n: number): void;
  close(): void;
}

/** Relays 127.0.0.1:<free port> to `targetPort`. */
export function startStallingProxy(targetPort: number): StallingProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const links: Array<{ stalled: boolean; conns: Deno.Conn[] }> = [];
  let closed!: () => void;
  // A stalled pump waits for the relay's close, so nothing is left pending after it.
  const closing = new Promise<void>((resolve) => closed = resolve);
  const pump = async (from: Deno.Conn, to: Deno.Conn, link: { stalled: boolean }) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        // Stalled: what comes is kept from the other side, and nothing more is read after it.
        if (link.stalled) return await closing;
        await to.write(buf.subarray(0, n));
      }
    } catch { /* a side closed */ }
    try {
      to.close();
    } catch { /* closed already */ }
  };
  (async () => {
    for await (const client of listener) {
      const server = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
      const link = { stalled: false, conns: [client, server] };
      links.push(link);
      void pump(client, server, link);
      void pump(server, client, link);
    }
  })().catch(() => {/* closed */});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return links.length;
    },
    stall(n) {
      links[n - 1]!.stalled = true;
    },
    close() {
      closed();
      listener.close();
      for (const link of links) {
        for (const conn of link.conns) {
          try {
            conn.close();
          } catch { /* closed already */ }
        }
      }
    },
  };
}
