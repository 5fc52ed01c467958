// Which errors of an SQLite file (ours, or the one Deno KV keeps underneath) mean its disk takes
// nothing now: full, over quota or read-only. Nothing was written, so the request can be retried.

/** A write refused whole for a reason of the store's own files (a journal whose directory cannot
 * be made again): nothing was written, and the request can be retried. */
export class StoreRefusal extends Error {}

/** True when `error` says the disk refused the write as a whole (the store takes nothing now). */
export function isDiskRefusal(error: unknown): boolean {
  if (error instanceof StoreRefusal) return true;
  const code = (error as { code?: unknown } | null)?.code;
  // EIO: the journal's fdatasync failed (STORE_FSYNC=1), its line cut off or never read, as
  // SQLite's own "disk I/O error" below; it was a 500 with a stack trace, where WeChat retries 503.
  if (code === "ENOSPC" || code === "EROFS" || code === "EDQUOT" || code === "EIO") return true;
  // node:sqlite and Deno KV give SQLite's own text, with no code. A file system remounted
  // read-only under an open database (ext4's errors=remount-ro) fails its writes with EROFS,
  // which SQLite reports as an I/O error: its transaction is rolled back, as on a full disk.
  return error instanceof Error &&
    /database or disk is full|attempt to write a readonly database|disk I\/O error/.test(
      error.message,
    );
}
