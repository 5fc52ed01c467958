// Which errors of an SQLite file (ours, or the one Deno KV keeps underneath) mean its disk takes
// nothing now: full, over quota or read-only. Nothing was written, so the request can be retried.

/** True when `error` says the disk refused the write as a whole (the store takes nothing now). */
export function isDiskRefusal(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "ENOSPC" || code === "EROFS" || code === "EDQUOT") return true;
  // node:sqlite and Deno KV give SQLite's own text, with no code.
  return error instanceof Error &&
    /database or disk is full|attempt to write a readonly database/.test(error.message);
}
