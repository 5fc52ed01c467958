// The one size rule for a message: the webhook and the agent routes accept bodies up to it, and
// every store must take whatever they accept (Deno KV keeps a message in one value of at most
// 64 KiB; see src/store/kv_store.ts for how a message this size is kept under it).

/** The largest message the bridge accepts, in bytes of UTF-8: WeChat's XML after decryption,
 * an agent's JSON body or frame. WeChat's own messages are a few KiB. */
export const MAX_MESSAGE_BYTES = 24 * 1024;
