// WebSocket frame sizes read off the wire (RFC 6455 §5.2), for the connection relay: Deno
// buffers a whole message before the bridge sees it (denoland/deno#15809), so a frame, or a
// fragmented message, larger than the limit is stopped here, by its header, before it is read.

/** Feeds client-to-server bytes of one WebSocket; false once a message is over the limit. */
export interface FrameMeter {
  /** Takes `bytes[from..end]` (all of them by default). */
  feed(bytes: Uint8Array, from?: number, end?: number): boolean;
}

/** Creates a meter for messages of at most `maxMessageBytes` (control frames aside). */
export function createFrameMeter(maxMessageBytes: number): FrameMeter {
  return new Meter(maxMessageBytes);
}

// Headers are gathered here (feed runs to its end before any other meter's): a meter keeps its
// own copy only of a header split across reads, so thousands of idle sockets hold none.
const scratch = new Uint8Array(14);

class Meter implements FrameMeter {
  /** The start of a header (2 to 14 bytes) that the last read ended inside of. */
  #partial: Uint8Array | null = null;
  /** Payload bytes of the current frame still to pass. */
  #remaining = 0;
  /** Bytes of the data message being assembled from fragments. */
  #message = 0;

  constructor(readonly max: number) {}

  feed(bytes: Uint8Array, from = 0, end = bytes.length): boolean {
    let i = from;
    let have = 0;
    if (this.#partial !== null) {
      scratch.set(this.#partial);
      have = this.#partial.length;
      this.#partial = null;
    }
    while (i < end) {
      if (this.#remaining > 0) {
        const skip = Math.min(this.#remaining, end - i);
        this.#remaining -= skip;
        i += skip;
        continue;
      }
      scratch[have++] = bytes[i++]!;
      const need = headerSize(scratch, have);
      if (need === null || have < need) continue;
      const length = payloadLength(scratch);
      const opcode = scratch[0]! & 0x0f;
      const fin = (scratch[0]! & 0x80) !== 0;
      have = 0;
      if (opcode >= 8) {
        // Control frames are at most 125 bytes (§5.5); a longer one is no WebSocket.
        if (length > 125) return false;
      } else {
        // A data frame starts a message; a continuation (0) adds to it.
        this.#message = opcode === 0 ? this.#message + length : length;
        if (this.#message > this.max) return false;
        if (fin) this.#message = 0;
      }
      this.#remaining = length;
    }
    if (have > 0) this.#partial = scratch.slice(0, have);
    return true;
  }
}

/** The header's full size once its first two bytes are known; null before. */
function headerSize(header: Uint8Array, have: number): number | null {
  if (have < 2) return null;
  const len7 = header[1]! & 0x7f;
  const masked = (header[1]! & 0x80) !== 0;
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
}

function payloadLength(header: Uint8Array): number {
  const len7 = header[1]! & 0x7f;
  if (len7 < 126) return len7;
  if (len7 === 126) return (header[2]! << 8) | header[3]!;
  // 64-bit length: anything past 2^53 is over every limit anyway.
  let n = 0;
  for (let k = 2; k < 10; k++) n = n * 256 + header[k]!;
  return n;
}
