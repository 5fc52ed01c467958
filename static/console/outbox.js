// Replies typed but not yet taken by the bridge, kept in localStorage per agent and account: a
// reload or a closed tab while the socket is down used to lose them without a word. One key per
// reply, so that tabs never rewrite each other's list and a removal (sent, refused, cancelled)
// reaches every tab as one `storage` event. Plain module, no DOM: `deno test` covers it.

const PREFIX = "wxbridge.outbox:";

/**
 * How old a stored reply may be and still go out by itself. The bridge takes a client_id only
 * once within a day (PROTOCOL.md): after that, one that did reach it before a reload would be
 * sent a second time. A reply typed a day ago is also no longer the answer the agent meant.
 */
export const OUTBOX_MAX_AGE_MS = 24 * 3600_000;

/** The reply types the outbox keeps: those whose whole payload is in the message (a file still
 * uploading is only in the page). */
const KEPT_TYPES = ["text", "image", "voice", "video"];

/** The key prefix of `agentId`'s stored replies on `account` (each part encoded, as drafts do). */
export function outboxPrefix(agentId, account = "") {
  const owner = account
    ? `@${encodeURIComponent(account)}/${encodeURIComponent(agentId)}`
    : encodeURIComponent(agentId);
  return `${PREFIX}${owner}:`;
}

/** A stored reply from what the page holds: `queuedAt` in ms. */
export function createEntry(
  { clientId, agentId, account = "", contactId, msgType, msg, queuedAt, written = false },
) {
  return {
    client_id: clientId,
    agent_id: agentId,
    account,
    contact_id: contactId,
    msg_type: msgType,
    msg,
    queued_at: queuedAt,
    written,
  };
}

/** A stored reply read back, or null when `raw` is not one (a foreign or damaged value). */
export function parseEntry(raw) {
  let value;
  try {
    value = JSON.parse(raw ?? "");
  } catch {
    return null;
  }
  if (!value || typeof value !== "object") return null;
  const ok = typeof value.client_id === "string" && value.client_id !== "" &&
    typeof value.agent_id === "string" && typeof value.contact_id === "string" &&
    value.contact_id !== "" && KEPT_TYPES.includes(value.msg_type) &&
    value.msg !== null && typeof value.msg === "object" && Number.isFinite(value.queued_at);
  if (!ok) return null;
  return { ...value, account: typeof value.account === "string" ? value.account : "" };
}

/** What a stored reply may do at `now`: "send" it, or it is "expired" and goes out only when the
 * agent sends it again (as a new reply). */
export function storedFate(entry, now, maxAgeMs = OUTBOX_MAX_AGE_MS) {
  return now - Number(entry.queued_at) > maxAgeMs ? "expired" : "send";
}

/** Whether `msgType` with `msg` is a reply the outbox keeps (its payload complete). */
export function isKept(msgType, msg) {
  if (!KEPT_TYPES.includes(msgType)) return false;
  if (msgType === "text") return typeof msg?.content === "string";
  return typeof msg?.media_id === "string" || typeof msg?.media_url === "string";
}

/**
 * The stored replies of `agentId` on `options.account` over `storage` (localStorage, a fake in
 * tests, or null where the browser keeps none: then nothing is kept, and `put` says so).
 */
export function createOutbox(storage, agentId, options = {}) {
  const account = options.account ?? "";
  const prefix = outboxPrefix(agentId, account);
  const keyOf = (clientId) => prefix + encodeURIComponent(clientId);

  /** Keeps `entry`; false when the storage refuses it (full, private mode, none). */
  function put(entry) {
    if (!storage) return false;
    try {
      storage.setItem(keyOf(entry.client_id), JSON.stringify(entry));
      return true;
    } catch {
      return false;
    }
  }

  /** The stored reply with `clientId`, or null. */
  function get(clientId) {
    if (!storage) return null;
    try {
      return ownEntry(storage.getItem(keyOf(clientId)));
    } catch {
      return null;
    }
  }

  function remove(clientId) {
    try {
      storage?.removeItem(keyOf(clientId));
    } catch {
      // Unavailable storage holds nothing to remove.
    }
  }

  /** Every stored reply of this agent and account, oldest first. */
  function list() {
    if (!storage || typeof storage.length !== "number") return [];
    const entries = [];
    try {
      for (let i = 0; i < storage.length; i++) {
        const key = storage.key(i);
        if (!key?.startsWith(prefix)) continue;
        const entry = ownEntry(storage.getItem(key));
        if (entry) entries.push(entry);
      }
    } catch {
      return entries;
    }
    return entries.sort((a, b) => a.queued_at - b.queued_at);
  }

  /** The client_id a storage key holds a reply of, or null for any other key. */
  function clientIdOf(key) {
    if (typeof key !== "string" || !key.startsWith(prefix)) return null;
    try {
      return decodeURIComponent(key.slice(prefix.length));
    } catch {
      return null;
    }
  }

  // A value under our prefix that names another agent or account is not ours to send.
  function ownEntry(raw) {
    const entry = parseEntry(raw);
    return entry && entry.agent_id === agentId && entry.account === account ? entry : null;
  }

  return { put, get, remove, list, clientIdOf, parse: ownEntry, prefix };
}
