// WeChat's callbacks the bridge refuses (bad signature, a key that does not decrypt, XML it
// cannot read): counted, and said in the log at most once a minute for each status. WeChat gives
// up on a message after three tries, so a token or key that no longer matches loses every
// follower's message; before this, neither the log nor /metrics said a word of it.

import { getLogger } from "@logtape/logtape";
import { HttpError } from "../http/http_error.ts";

const log = getLogger(["bridge", "wechat"]);

/** One log line a status this often at most: a stranger posting garbage cannot flood the log. */
const LOG_EVERY_MS = 60_000;
/** Longest refusal reason put in the log: the parser's detail can repeat what was posted. */
const REASON_CHARS = 200;

/** What the notes need: where each refusal is counted. */
export interface RefusedCallbackDeps {
  /** Counts one refusal (`bridge_rejected_total{reason="webhook_<status>"}`). */
  count(status: number): void;
  now?: () => number;
}

/** The status WeChat was refused with, or null for an error that is not a refusal. */
function statusOf(error: unknown): number | null {
  if (error instanceof HttpError) {
    return error.status >= 400 && error.status < 500 ? error.status : null;
  }
  // The route answers a SyntaxError 400 (unreadable XML, a ciphertext neither key opens).
  return error instanceof SyntaxError ? 400 : null;
}

/** Creates the notes; `note(error)` takes what a callback threw, then the caller rethrows it. */
export function createRefusedCallbacks(deps: RefusedCallbackDeps) {
  const now = deps.now ?? (() => performance.now());
  const lastLine = new Map<number, { at: number; since: number }>();
  return {
    note(error: unknown): void {
      const status = statusOf(error);
      if (status === null) return;
      deps.count(status);
      const t = now();
      const last = lastLine.get(status);
      if (last !== undefined && t - last.at < LOG_EVERY_MS) {
        last.since++;
        return;
      }
      // The log's formatter escapes what could end the line or drive a terminal.
      const reason = (error as Error).message.slice(0, REASON_CHARS);
      log.warn(
        "WeChat callback refused with {status}: {reason} ({more} more since the last line); " +
          "WeChat drops a message after three refused tries: check the token and keys",
        { status, reason, more: last?.since ?? 0 },
      );
      lastLine.set(status, { at: t, since: 0 });
    },
  };
}
