// Follows what a client sends on one connection, as the relay passes it on: request heads,
// bodies (of a declared length, or chunked), and after a WebSocket upgrade request accepted the
// frames, whose sizes are checked by their headers (src/http/ws_frames.ts) before Deno reads them.

import { createFrameMeter, type FrameMeter } from "./ws_frames.ts";

/** Heads larger than this are no request Deno.serve accepts (Deno 2.9 answers them 400; the
 * guard answers 431, RFC 6585, on every request of a connection). */
export const MAX_HEAD_BYTES = 64 * 1024;
const EMPTY = new Uint8Array(0);
const latin1 = new TextDecoder("latin1");
/**
 * The meter's place while an upgrade request waits on its answer: what follows its head is
 * frames (101) or the next request (any other status), so none of it is fed until then.
 */
const AWAITED: FrameMeter = { feed: () => true };

/** Where a client's stream is, fed chunk by chunk in order. */
export class ClientStream {
  #head = EMPTY;
  #headLength = 0;
  #bodyLeft = 0;
  /** Inside a chunked body: reading a size line, a chunk's CRLF, or the trailer lines. */
  #chunked: "size" | "data-end" | "trailer" | null = null;
  #line = "";
  /** Something no request looks like: request boundaries are no longer known. */
  #lost = false;
  /** Lost at a head whose framing Deno's parser refuses too (answered 400, see badHead). */
  #badHead = false;
  /** The head refused was refused for its size (431, as Deno.serve answers a first one). */
  #tooLarge = false;
  #refusedAt = 0;
  /** Of a head refused for its size, the bytes passed on in earlier reads (see refusedTail). */
  #passed = 0;
  /** Lost in a chunked body's framing, which Deno's parser refuses too (see badBody). */
  #badBody = false;
  /** The last byte of a chunked body's framing was a CR: only its LF may follow. */
  #lineCR = false;
  /** Of a chunked body's trailer section, the bytes read so far (see MAX_TRAILER_BYTES). */
  #trailerBytes = 0;
  /** A head has begun and its request line has not ended yet. */
  #lineOpen = false;
  /** The last read ended on the CR of an empty line before a request line: its LF is next. */
  #emptyLineCR = false;
  #meter: FrameMeter | null = null;
  /** Where in the chunk fed last an awaited upgrade head ended (see heldFrom). */
  #heldFrom = 0;
  #heads = 0;

  constructor(readonly maxMessageBytes: number) {}

  /** A request body is still arriving (its Content-Length or chunks are not all here). */
  get inBody(): boolean {
    return this.#bodyLeft > 0 || (this.#chunked !== null && this.#chunked !== "trailer");
  }

  /** True once an upgrade request's head has passed: its answer is awaited, or it was 101. */
  get upgrading(): boolean {
    return this.#meter !== null;
  }

  /** An upgrade request's head has passed and its answer is not known: nothing more is fed. */
  get awaiting(): boolean {
    return this.#meter === AWAITED;
  }

  /**
   * While awaiting: where in the chunk fed last the upgrade head ended. The bytes from there are
   * not taken; they are fed again once the answer is known (see accepted and refused).
   */
  get heldFrom(): number {
    return this.#heldFrom;
  }

  /**
   * Request heads read whole and not refused, and one refused for its size (the relay passes a
   * request of its own in its place, answered 431): each is a request Deno will answer.
   */
  get heads(): number {
    return this.#heads;
  }

  /**
   * Of the heads, the requests read whole, body too, each owed an answer: all but one whose
   * body is still arriving (a head begun and not ended is no request yet).
   */
  get whole(): number {
    return this.#heads - (this.#bodyLeft > 0 || this.#chunked !== null ? 1 : 0);
  }

  /**
   * True once a head was refused for its framing (RFC 9112 §6.3: a Content-Length that is no
   * number of at most 15 digits or two that differ, Transfer-Encoding beside one or not ending in
   * chunked, a folded line; an upgrade with a body) or its size: a request boundary, where a 400
   * can be answered.
   */
  get badHead(): boolean {
    return this.#badHead;
  }

  /**
   * True once a chunked body's framing was refused (a line not ending in CRLF, a size line that
   * is not SIZE_LINE, a trailer that is no field line): nothing from its byte on passes, and the
   * request is answered 400 (see Link.pass).
   */
  get badBody(): boolean {
    return this.#badBody;
  }

  /** True once a head was refused for its size alone (MAX_HEAD_BYTES): answered 431. */
  get headTooLarge(): boolean {
    return this.#tooLarge;
  }

  /**
   * Where in the chunk fed last the refused head began (0: in an earlier one); of a refused
   * body, its refused byte.
   */
  get refusedAt(): number {
    return this.#refusedAt;
  }

  /**
   * Where Deno's parser is in a head refused for its size: "none" when none of it was passed on
   * (it began in the chunk fed last), else where the part passed on in earlier reads ends: at a
   * line's end ("lf"), after a header line's CR ("cr"), inside a header line ("mid"); null when
   * no header line can follow (its request line not whole, or an empty line's CR).
   */
  get refusedTail(): "none" | "lf" | "cr" | "mid" | null {
    const passed = this.#passed;
    if (passed === 0) return "none";
    const head = this.#head;
    if (head.subarray(0, passed).indexOf(10) === -1) return null;
    const last = head[passed - 1];
    if (last === 10) return "lf";
    if (last === 13) return head[passed - 2] === 10 ? null : "cr";
    return "mid";
  }

  /** The upgrade was accepted (101): what follows is frames, measured from the first. */
  accepted(): void {
    this.#meter = createFrameMeter(this.maxMessageBytes);
  }

  /** The upgrade was refused: the connection goes on as HTTP, at a request boundary. */
  refused(): void {
    this.#meter = null;
    this.#headLength = 0;
    this.#bodyLeft = 0;
  }

  /**
   * Takes the next bytes, `chunk[0..end]`; false once a WebSocket message is over the limit.
   * Pushes onto `lineEnds` where in `chunk` each request line ended (just past its LF), for the
   * relay to add its own header line there.
   */
  feed(chunk: Uint8Array, lineEnds: number[] | null = null, end = chunk.length): boolean {
    let i = 0;
    while (i < end) {
      if (this.#meter !== null) {
        if (this.#meter === AWAITED) break;
        return this.#meter.feed(chunk, i, end);
      }
      // What cannot be followed is not passed on: Deno would refuse it anyway.
      if (this.#lost) return false;
      if (this.#bodyLeft > 0) {
        const skip = Math.min(this.#bodyLeft, end - i);
        this.#bodyLeft -= skip;
        i += skip;
        if (this.#bodyLeft === 0 && this.#chunked === "size") this.#chunked = "data-end";
        continue;
      }
      i = this.#chunked === null
        ? this.#readHead(chunk, i, end, lineEnds)
        : this.#readChunked(chunk, i);
    }
    if (this.#meter === AWAITED) this.#heldFrom = i;
    // Lost on the chunk's last bytes (a head too large, read to its end): none of it passes.
    return !this.#lost;
  }

  /**
   * Reads head bytes from `chunk[i..end]`; returns where the head ended, or `end`. A head that
   * arrives whole in one chunk (the usual case) is read where it lies; only one split across
   * reads is copied, and the copy is let go once the head is complete.
   */
  #readHead(chunk: Uint8Array, i: number, end: number, lineEnds: number[] | null): number {
    if (this.#headLength === 0) {
      // Empty lines before a request line (CRLF or a bare LF) are ignored (RFC 9112 §2.2), as
      // Deno's parser does: a request's first LF is the one that ends its request line, not
      // theirs, even when an empty line's CR and LF come in two reads.
      if (this.#emptyLineCR && chunk[i] === 10) i++;
      this.#emptyLineCR = false;
      while (i < end) {
        if (chunk[i] === 10) i++;
        else if (chunk[i] === 13 && i + 1 < end && chunk[i + 1] === 10) i += 2;
        else break;
      }
      if (i + 1 === end && chunk[i] === 13) {
        this.#emptyLineCR = true;
        return end;
      }
      if (i === end) return i;
    }
    const before = this.#headLength;
    const take = Math.min(end - i, MAX_HEAD_BYTES - before);
    if (before === 0) this.#lineOpen = true;
    if (this.#lineOpen) {
      // The first LF of a head ends its request line (at or before the head's own end).
      const lf = chunk.indexOf(10, i);
      if (lf !== -1 && lf < i + take) {
        this.#lineOpen = false;
        lineEnds?.push(lf + 1);
      }
    }
    if (before > 0) this.#keepHead(chunk.subarray(i, i + take));
    // Head byte j is buf[base + j].
    const buf = before > 0 ? this.#head : chunk;
    const base = before > 0 ? 0 : i;
    const length = before + take;
    // A line ends at its LF, with a CR before it or not (RFC 9112 §2.2 lets a recipient take a
    // bare LF, and Deno's parser, nginx and the guard all do, so that a request ends at the same
    // byte for each); an empty line ends the head. Head byte 0 is no LF (skipped above).
    for (let k = Math.max(1, before); k < length; k++) {
      const at = base + k;
      if (buf[at] !== 10) continue;
      const prev = buf[at - 1];
      if (prev !== 10 && !(prev === 13 && k >= 2 && buf[at - 2] === 10)) continue;
      this.#headLength = 0;
      this.#startBody(buf, base, at + 1);
      if (this.#badHead) this.#refusedAt = before > 0 ? 0 : i;
      else this.#heads++;
      if (before > 0) this.#head = EMPTY;
      return i + (k + 1 - before);
    }
    if (before === 0) this.#keepHead(chunk.subarray(i, i + take));
    this.#headLength = length;
    // Too large for Deno too (431, to a request the relay passes in its place, after Deno's
    // answers before it: see Link.pass): refused at its start, so those are still answered.
    if (length >= MAX_HEAD_BYTES) {
      this.#lost = this.#badHead = this.#tooLarge = true;
      this.#refusedAt = before > 0 ? 0 : i;
      this.#passed = before;
      this.#heads++;
      return end;
    }
    return i + take;
  }

  /** Appends `bytes` to the part of a head kept from earlier reads. */
  #keepHead(bytes: Uint8Array): void {
    const before = this.#headLength;
    if (before + bytes.length > this.#head.length) {
      const size = Math.min(MAX_HEAD_BYTES, Math.max(2048, (before + bytes.length) * 2));
      const bigger = new Uint8Array(size);
      bigger.set(this.#head.subarray(0, before));
      this.#head = bigger;
    }
    this.#head.set(bytes, before);
  }

  /**
   * One byte of a chunked body's framing (RFC 9112 §7.1): size lines, CRLFs, trailers. Each line
   * ends in CRLF, as Deno's parser requires (it takes no bare LF here, unlike in a head); framing
   * it refuses is refused here first, at its byte (see badBody), since Deno reads a bare LF as
   * part of a trailer and waits, or fails the body only once more bytes come.
   */
  #readChunked(chunk: Uint8Array, i: number): number {
    const byte = chunk[i]!;
    if (this.#chunked === "trailer" && ++this.#trailerBytes > MAX_TRAILER_BYTES) {
      return this.#refuseBody(i);
    }
    if (this.#lineCR) {
      this.#lineCR = false;
      if (byte !== 10) return this.#refuseBody(i);
    } else if (byte === 13) {
      this.#lineCR = true;
      return i + 1;
    } else if (
      byte === 10 || this.#chunked === "data-end" ||
      (this.#chunked === "size" && this.#line.length > 4096)
    ) {
      return this.#refuseBody(i);
    } else {
      this.#line += String.fromCharCode(byte);
      return i + 1;
    }
    const line = this.#line;
    this.#line = "";
    if (this.#chunked === "data-end") {
      this.#chunked = "size";
    } else if (this.#chunked === "size") {
      const size = SIZE_LINE.exec(line)?.[1];
      if (size === undefined) return this.#refuseBody(i);
      // Past 2^53 (13 or more hex digits) the count is not exact: no body that long is whole
      // within the relay's body deadline, so it never reaches 0 either way.
      const length = Number.parseInt(size, 16);
      if (length === 0) {
        this.#chunked = "trailer";
        this.#trailerBytes = 0;
      } else this.#bodyLeft = length;
    } else if (line === "") {
      this.#chunked = null; // the empty line after the trailers ends the request
    } else if (!TRAILER.test(line)) {
      return this.#refuseBody(i);
    }
    return i + 1;
  }

  /** Refuses the body being read at byte `i` of the chunk fed last (see badBody). */
  #refuseBody(i: number): number {
    this.#lost = this.#badBody = true;
    this.#refusedAt = i;
    return i + 1;
  }

  /** Reads what follows the head `buf[start..end]`: a body of some length, chunks, or frames. */
  #startBody(buf: Uint8Array, start: number, end: number): void {
    // Deno joins a header sent on several lines (", "): Transfer-Encoding lines make one list,
    // whose last coding says whether it is chunked. Deno.upgradeWebSocket takes any Upgrade value
    // that contains "websocket" ("h2c, websocket", the header twice): each is metered as one.
    let upgrade = false;
    let coding: string | undefined;
    let length: number | undefined;
    let bad = false;
    // Line by line as a multiline regex over the whole head sees lines (any CR or LF ends one),
    // each decoded as Latin-1 (one character a byte: no U+2028 from a value to start a line Deno
    // never saw); only a line that starts with one of the three names is decoded at all.
    for (let i = start; i < end && !bad;) {
      let j = i;
      while (j < end && buf[j] !== 13 && buf[j] !== 10) j++;
      // A folded line (obs-fold) could carry a framing header one parser sees and another not.
      if (i > start && (buf[i] === 32 || buf[i] === 9)) bad = true;
      else if (startsWith(buf, i, j, UPGRADE_NAME)) {
        upgrade ||= UPGRADE.test(latin1.decode(buf.subarray(i, j)));
      } else if (startsWith(buf, i, j, CODING_NAME)) {
        const value = CODING.exec(latin1.decode(buf.subarray(i, j)))?.[1];
        if (value !== undefined) coding = coding === undefined ? value : `${coding}, ${value}`;
      } else if (startsWith(buf, i, j, LENGTH_NAME)) {
        const value = LENGTH.exec(latin1.decode(buf.subarray(i, j)))?.[1];
        // Deno reads up to 20 digits; more than 15 would not be exact as a JavaScript number.
        const digits = value?.replace(LEADING_ZEROS, "");
        if (digits === undefined || !DIGITS.test(digits)) bad = true;
        else if (length !== undefined && length !== Number(digits)) bad = true;
        else length = Number(digits);
      }
      i = j + 1;
    }
    // Deno refuses each of these (400) but for a long length, which it would wait for while the
    // relay read what follows as requests; Transfer-Encoding beside Content-Length is the classic
    // smuggling request, refused by nginx too.
    // An upgrade head with a body, too: Deno never upgrades one (400 with `Connection: upgrade`),
    // and what follows it waits for the answer, which would wait for the body (see awaiting).
    if (
      bad || (coding !== undefined && (length !== undefined || !CHUNKED_LAST.test(coding))) ||
      (upgrade && (coding !== undefined || (length ?? 0) > 0))
    ) {
      this.#lost = this.#badHead = true;
      return;
    }
    if (upgrade) {
      this.#meter = AWAITED;
      return;
    }
    if (coding !== undefined) this.#chunked = "size";
    else this.#bodyLeft = length ?? 0;
  }
}

// The headers that say what follows a head, matched on one line each (see #startBody).
const UPGRADE = /^upgrade:.*websocket/i;
const CODING = /^transfer-encoding:[ \t]*(.*?)[ \t]*$/i;
const LENGTH = /^content-length:[ \t]*(.*?)[ \t]*$/i;
/**
 * Deno takes a trailer section of up to 64 KiB, each line's CRLF and the empty line's counted,
 * in lines of any length (and waits, never answering, on a larger one).
 */
const MAX_TRAILER_BYTES = 64 * 1024;
/**
 * A chunk's size line as Deno 2.9's parser takes it (measured against Deno.serve alone, see
 * tests/http/relay_chunked_test.ts): spaces, never a tab, before and after the size (RFC 9112
 * §7.1.1's BWS before ";"), zeros before it, a size that fits in 64 bits (16 hex digits; more
 * overflow), and an extension of any bytes but controls (a tab included).
 */
const SIZE_LINE = /^ *0*([0-9a-f]{1,16}) *(?:;[\x20-\x7e\x80-\xff]*)?$/i;
// A trailer is a field line, as Deno's parser reads one: a name, a colon, a value of no controls.
const TRAILER = /^[!#$%&'*+.^_`|~0-9a-z-]+:[\t\x20-\x7e\x80-\xff]*$/i;
const LEADING_ZEROS = /^0+(?=.)/;
const DIGITS = /^\d{1,15}$/;
const CHUNKED_LAST = /(^|,)[ \t]*chunked$/i;
const UPGRADE_NAME = nameBytes("upgrade:");
const CODING_NAME = nameBytes("transfer-encoding:");
const LENGTH_NAME = nameBytes("content-length:");

function nameBytes(name: string): Uint8Array {
  return new TextEncoder().encode(name);
}

/**
 * Whether `buf[i..j]` may start with `name` (lower case), ignoring ASCII case: a filter only
 * (a byte OR 0x20 can pass for another), the regex decides.
 */
function startsWith(buf: Uint8Array, i: number, j: number, name: Uint8Array): boolean {
  if (j - i < name.length) return false;
  for (let k = 0; k < name.length; k++) {
    if ((buf[i + k]! | 0x20) !== name[k]) return false;
  }
  return true;
}
