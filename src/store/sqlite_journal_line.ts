// A journal line: one commit of the SQLite store, as the store writes it to the journal file
// and hands its bytes to the worker. Fields are separated by U+001F (which JSON text never holds
// raw), so frames, items and contacts go in as the JSON they already are, and reading a line
// back is a split, not a parse: `<id> t <tag> fields… <tag> fields…\n`, see TAGS.
// (`tr '\037' '\n' < 00000000000000000001.log` shows one field a line.)

import type { HistoryItem } from "../core/store.ts";
import type { Commit } from "./sqlite_journal.ts";

const US = "\x1f";

/**
 * The sections of a line, by tag, and how many fields follow each tag. Ids are JSON strings;
 * numbers are decimal; `-` stands for "none".
 * `l` log: agent, seq, frame. `h` history: follower, n, item. `i` history that is a logged
 * follower message (its frame's data without `seq`, `direction` "in"): follower, n, the log
 * entry's place among this line's `l` (they come first). `q` queued: follower, n, stamp,
 * envelope. `d` dequeued: follower, n. `c` contact: follower, JSON, list agent (JSON or -),
 * list time, window close (or -). `a` agent: id, JSON. `k` dedup: key, expiry. `f` forgotten:
 * follower. `g` a forget's cut: follower, JSON (model.ts ForgetCut). `o` a reply's outcome:
 * follower, n, reply id, status, error (JSON or -), `unconfirmed` (it may have reached the
 * follower) or -; `v` is one without the last field and `u` one without the reply id either,
 * as lines before them were written. `p` quick reply put:
 * id, JSON. `x` quick reply deleted: id. `s` the body a plain WeChat signature first carried:
 * signature, body hash, expiry.
 */
const TAGS: Record<string, number> = {
  l: 3,
  h: 3,
  i: 3,
  q: 4,
  d: 2,
  c: 5,
  a: 2,
  k: 2,
  f: 1,
  g: 2,
  u: 4,
  v: 5,
  o: 6,
  p: 2,
  x: 1,
  s: 3,
};

const id = (value: string): string => JSON.stringify(value);

/** Builds one commit's line, section by section; JSON arguments go in as they are. */
export class CommitLine {
  #text: string;

  /** Commit `commitId`, made at `t` (ms): expiries are counted from it. */
  constructor(commitId: number, t: number) {
    this.#text = `${commitId}${US}${t}`;
  }

  /** An agent's log entry. */
  log(agentId: string, seq: number, frame: string): void {
    this.#text += `${US}l${US}${id(agentId)}${US}${seq}${US}${frame}`;
  }

  /** A history item. */
  history(followerId: string, n: number, item: string): void {
    this.#text += `${US}h${US}${id(followerId)}${US}${n}${US}${item}`;
  }

  /** A history item that is the `index`th log entry of this line, as sameAsFrame() found. */
  inbound(followerId: string, n: number, index: number): void {
    this.#text += `${US}i${US}${id(followerId)}${US}${n}${US}${index}`;
  }

  /** A message queued for an agent to come. */
  queued(followerId: string, n: number, stamp: number, envelope: string): void {
    this.#text += `${US}q${US}${id(followerId)}${US}${n}${US}${stamp}${US}${envelope}`;
  }

  /** A queued message handed over. */
  dequeued(followerId: string, n: number): void {
    this.#text += `${US}d${US}${id(followerId)}${US}${n}`;
  }

  /** A contact's row (see ContactRow). */
  contact(row: [string, string, string | null, number, number | null]): void {
    const [followerId, json, agentKey, at, closesAt] = row;
    const key = agentKey === null ? "-" : id(agentKey);
    this.#text += `${US}c${US}${id(followerId)}${US}${json}${US}${key}${US}${at}${US}${
      closesAt ?? "-"
    }`;
  }

  /** An agent's record. */
  agent(agentId: string, json: string): void {
    this.#text += `${US}a${US}${id(agentId)}${US}${json}`;
  }

  /** A WeChat retry key, until when it is recognised. */
  dedup(key: string, expiry: number): void {
    this.#text += `${US}k${US}${id(key)}${US}${expiry}`;
  }

  /** A follower forgotten: its contact and history go. */
  forgotten(followerId: string): void {
    this.#text += `${US}f${US}${id(followerId)}`;
  }

  /** A forget's cut: what of the agents' logs a replay skips for this follower. */
  cut(followerId: string, json: string): void {
    this.#text += `${US}g${US}${id(followerId)}${US}${json}`;
  }

  /** A reply's outcome, for history item `reply.n` while it is that reply (`reply.id`). */
  outcome(
    followerId: string,
    reply: { n: number; id: string },
    fields: Pick<HistoryItem, "status" | "error" | "unconfirmed">,
  ): void {
    const { status, error, unconfirmed } = fields;
    this.#text += `${US}o${US}${id(followerId)}${US}${reply.n}${US}${
      id(reply.id)
    }${US}${status}${US}${error === undefined ? "-" : id(error)}${US}${
      unconfirmed ? "unconfirmed" : "-"
    }`;
  }

  /** A quick reply added or replaced. */
  quickReply(replyId: string, json: string): void {
    this.#text += `${US}p${US}${id(replyId)}${US}${json}`;
  }

  /** A quick reply deleted. */
  quickReplyDeleted(replyId: string): void {
    this.#text += `${US}x${US}${id(replyId)}`;
  }

  /** A WeChat signature's first body (src/wechat/signed_bodies.ts), until when it is kept. */
  signedBody(signature: string, hash: string, expiry: number): void {
    this.#text += `${US}s${US}${id(signature)}${US}${id(hash)}${US}${expiry}`;
  }

  /** The line, newline included. */
  text(): string {
    return `${this.#text}\n`;
  }
}

/** An id as written: a JSON string (most need no unescaping). */
function readId(field: string | undefined): string {
  if (field === undefined || field[0] !== '"') {
    throw new SyntaxError("Cannot read a journal line: an id is not a string");
  }
  return field.includes("\\") ? JSON.parse(field) as string : field.slice(1, -1);
}

function readNumber(field: string | undefined): number {
  const n = Number(field);
  if (field === undefined || field === "" || !Number.isFinite(n)) {
    throw new SyntaxError(`Cannot read a journal line: ${field} is not a number`);
  }
  return n;
}

/** The commit a line holds (without its newline); throws SyntaxError when it is not whole. */
export function parseCommitLine(line: string): Commit {
  const f = line.split(US);
  const c: Commit = { id: readNumber(f[0]), t: readNumber(f[1]) };
  let i = 2;
  while (i < f.length) {
    const tag = f[i]!;
    const count = TAGS[tag];
    if (count === undefined || i + count > f.length - 1) {
      throw new SyntaxError(`Cannot read a journal line: section ${tag} is unknown or cut short`);
    }
    const at = (k: number) => f[i + k]!;
    switch (tag) {
      case "l":
        (c.l ??= []).push([readId(at(1)), readNumber(at(2)), at(3)]);
        break;
      case "h":
        (c.h ??= []).push([readId(at(1)), readNumber(at(2)), at(3)]);
        break;
      case "i": {
        const entry = c.l?.[readNumber(at(3))];
        if (entry === undefined) throw new SyntaxError("Cannot read a journal line: no such entry");
        (c.h ??= []).push([readId(at(1)), readNumber(at(2)), itemOfFrame(entry[2], entry[1])]);
        break;
      }
      case "q":
        (c.q ??= []).push([readId(at(1)), readNumber(at(2)), readNumber(at(3)), at(4)]);
        break;
      case "d":
        (c.d ??= []).push([readId(at(1)), readNumber(at(2))]);
        break;
      case "c":
        (c.c ??= []).push([
          readId(at(1)),
          at(2),
          at(3) === "-" ? null : readId(at(3)),
          readNumber(at(4)),
          at(5) === "-" ? null : readNumber(at(5)),
        ]);
        break;
      case "a":
        (c.a ??= []).push([readId(at(1)), at(2)]);
        break;
      case "k":
        (c.k ??= []).push([readId(at(1)), readNumber(at(2))]);
        break;
      case "f":
        (c.f ??= []).push(readId(at(1)));
        break;
      case "g":
        (c.g ??= []).push([readId(at(1)), at(2)]);
        break;
      case "u":
      case "v":
      case "o": {
        // `v` and `o` have the reply's id after n; `u`, from before it, has none. Only `o`
        // says whether a failed one may have arrived.
        const k = tag === "u" ? 0 : 1;
        const status = at(3 + k);
        if (status !== "sent" && status !== "failed") {
          throw new SyntaxError(`Cannot read a journal line: ${status} is not a reply status`);
        }
        (c.u ??= []).push([
          readId(at(1)),
          readNumber(at(2)),
          status,
          at(4 + k) === "-" ? null : readId(at(4 + k)),
          k === 1 ? readId(at(3)) : null,
          tag === "o" && at(6) === "unconfirmed",
        ]);
        break;
      }
      case "p":
        (c.p ??= []).push([readId(at(1)), at(2)]);
        break;
      case "x":
        (c.x ??= []).push(readId(at(1)));
        break;
      case "s":
        (c.s ??= []).push([readId(at(1)), readId(at(2)), readNumber(at(3))]);
        break;
    }
    i += count + 1;
  }
  return c;
}

const decoder = new TextDecoder();

/** The commit of a line's bytes, as the journal wrote them (newline included). */
export function commitOfBytes(bytes: Uint8Array): Commit {
  return parseCommitLine(decoder.decode(bytes.subarray(0, bytes.length - 1)));
}

/** What follows a logged envelope's data: its `result`, as the model makes it ({code, message},
 * see Model.append), and the envelope's end. A JSON string cannot hold a raw `"`, so nothing in
 * the data can end the frame this way. */
const RESULT_TAIL = /^\{"code":-?\d+,"message":"(?:[^"\\]|\\.)*"\}\}$/;

/**
 * The history item of a follower's message, from its frame (see sameAsFrame()): its data
 * without `seq`, then `direction` "in". A frame is JSON.stringify({data: {…, seq}, result}),
 * so the item is a slice of its text between `{"data":{` and `,"seq":<seq>},"result":`
 * (JSON.stringify of what JSON.parse read back writes the same text), found without parsing;
 * a frame of another shape is parsed.
 */
export function itemOfFrame(frame: string, seq: number): string {
  const end = `,"seq":${seq}},"result":`;
  const at = frame.lastIndexOf(end);
  if (at > 9 && frame.startsWith('{"data":{') && RESULT_TAIL.test(frame.slice(at + end.length))) {
    return `{${frame.slice(9, at)},"direction":"in"}`;
  }
  return parsedItemOfFrame(frame);
}

/** itemOfFrame() the long way: parsing the frame. */
export function parsedItemOfFrame(frame: string): string {
  const data = (JSON.parse(frame) as { data: Record<string, unknown> }).data;
  delete data["seq"];
  data["direction"] = "in";
  return JSON.stringify(data);
}

/**
 * Whether `item` is what itemOfFrame() makes of the frame of `data` (an envelope's data, as
 * logged: the message's fields, then `seq`): the same fields, in order, holding the same values,
 * and `direction` "in" last, so its JSON need not be written twice.
 */
export function sameAsFrame(item: Record<string, unknown>, data: Record<string, unknown>): boolean {
  const itemKeys = Object.keys(item);
  const dataKeys = Object.keys(data);
  if (itemKeys.length !== dataKeys.length || dataKeys[dataKeys.length - 1] !== "seq") return false;
  if (itemKeys[itemKeys.length - 1] !== "direction" || item["direction"] !== "in") return false;
  for (let k = 0; k < dataKeys.length - 1; k++) {
    const key = dataKeys[k]!;
    if (itemKeys[k] !== key || item[key] !== data[key]) return false;
  }
  return true;
}
