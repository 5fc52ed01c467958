// Follows what a client sends on one connection, as the relay passes it on: request heads,
// bodies (of a declared length, or chunked), and after a WebSocket upgrade request the frames,
// whose sizes are checked by their headers (src/http/ws_frames.ts) before Deno reads them whole.

import { createFrameMeter, type FrameMeter } from "./ws_frames.ts";

/** Heads larger than this are no request Deno.serve accepts (it answers 431). */
export const MAX_HEAD_BYTES = 64 * 1024;

/** Where a client's stream is, fed chunk by chunk in order. */
export class ClientStream {
  #head = new Uint8Array(0);
  #headLength = 0;
  #bodyLeft = 0;
  /** Inside a chunked body: reading a size line, a chunk's CRLF, or the trailer lines. */
  #chunked: "size" | "data-end" | "trailer" | null = null;
  #line = "";
  /** Something no request looks like: request boundaries are no longer known. */
  #lost = false;
  #meter: FrameMeter | null = null;

  constructor(readonly maxMessageBytes: number) {}

  /** True once an upgrade request's head has passed and its frames are being measured. */
  /** A request body is still arriving (its Content-Length or chunks are not all here). */
  get inBody(): boolean {
    return this.#bodyLeft > 0 || (this.#chunked !== null && this.#chunked !== "trailer");
  }

  get upgrading(): boolean {
    return this.#meter !== null;
  }

  /** The upgrade was refused: the connection goes on as HTTP, at a request boundary. */
  refused(): void {
    this.#meter = null;
    this.#headLength = 0;
    this.#bodyLeft = 0;
  }

  /** Takes the next bytes; false once a WebSocket message is over the limit. */
  feed(chunk: Uint8Array): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.#meter !== null) return this.#meter.feed(chunk.subarray(i));
      // What cannot be followed is not passed on: Deno would refuse it anyway.
      if (this.#lost) return false;
      if (this.#bodyLeft > 0) {
        const skip = Math.min(this.#bodyLeft, chunk.length - i);
        this.#bodyLeft -= skip;
        i += skip;
        if (this.#bodyLeft === 0 && this.#chunked === "size") this.#chunked = "data-end";
        continue;
      }
      i = this.#chunked === null ? this.#readHead(chunk, i) : this.#readChunked(chunk, i);
    }
    return true;
  }

  /** Adds head bytes from `chunk[i..]`; returns where the head ended, or the chunk's end. */
  #readHead(chunk: Uint8Array, i: number): number {
    const before = this.#headLength;
    const take = Math.min(chunk.length - i, MAX_HEAD_BYTES - before);
    if (before + take > this.#head.length) {
      const bigger = new Uint8Array(Math.min(MAX_HEAD_BYTES, Math.max(2048, (before + take) * 2)));
      bigger.set(this.#head.subarray(0, before));
      this.#head = bigger;
    }
    this.#head.set(chunk.subarray(i, i + take), before);
    const length = before + take;
    const buf = this.#head;
    for (let k = Math.max(0, before - 3); k + 3 < length; k++) {
      // A bare LF ends lines for Deno's parser but not for ours: refused, so both agree on where
      // a request ends and its frames begin.
      if (buf[k + 3] === 10 && buf[k + 2] !== 13) {
        this.#lost = true;
        return chunk.length;
      }
      if (buf[k] === 13 && buf[k + 1] === 10 && buf[k + 2] === 13 && buf[k + 3] === 10) {
        this.#headLength = 0;
        this.#startBody(new TextDecoder().decode(buf.subarray(0, k + 4)));
        return i + (k + 4 - before);
      }
    }
    this.#headLength = length;
    if (length >= MAX_HEAD_BYTES) this.#lost = true;
    return i + take;
  }

  /** One byte of a chunked body's framing (RFC 9112 §7.1): size lines, CRLFs, trailers. */
  #readChunked(chunk: Uint8Array, i: number): number {
    const byte = chunk[i]!;
    if (byte !== 10) {
      if (this.#line.length > 4096) this.#lost = true;
      else if (byte !== 13) this.#line += String.fromCharCode(byte);
      return i + 1;
    }
    const line = this.#line;
    this.#line = "";
    if (this.#chunked === "data-end") {
      this.#chunked = "size";
    } else if (this.#chunked === "size") {
      const size = /^([0-9a-f]{1,12})(;.*)?$/i.exec(line.trim())?.[1];
      if (size === undefined) this.#lost = true;
      else if (Number.parseInt(size, 16) === 0) this.#chunked = "trailer";
      else this.#bodyLeft = Number.parseInt(size, 16);
    } else if (line === "") {
      this.#chunked = null; // the empty line after the trailers ends the request
    }
    return i + 1;
  }

  #startBody(head: string): void {
    if (/^upgrade:[ \t]*websocket[ \t]*$/im.test(head)) {
      this.#meter = createFrameMeter(this.maxMessageBytes);
      // An agent's socket stays open for hours: it keeps no head buffer meanwhile.
      this.#head = new Uint8Array(0);
      return;
    }
    const coding = /^transfer-encoding:[ \t]*(.*?)[ \t]*$/im.exec(head)?.[1];
    if (coding !== undefined) {
      if (/(^|,)[ \t]*chunked$/i.test(coding)) this.#chunked = "size";
      else this.#lost = true;
      return;
    }
    const length = /^content-length:[ \t]*(\d{1,15})[ \t]*$/im.exec(head)?.[1];
    this.#bodyLeft = length === undefined ? 0 : Number(length);
  }
}
