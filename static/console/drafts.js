// Drafts per conversation: what an agent typed for one follower stays with that follower, and
// survives a reload (localStorage, keyed by account, agent and contact). Plain module: no DOM, so
// `deno test` covers it with any Storage-like object.

const PREFIX = "wxbridge.draft:";
/** Private notes being typed are kept apart: a note must never come back as a reply. */
const NOTE_PREFIX = "wxbridge.note:";
/** Drafts kept per agent; the oldest go first, so storage stays bounded. */
export const MAX_DRAFTS = 200;

/**
 * A draft store for `agentId` (on `options.account`; notes with `options.kind` "note") over
 * `storage` (localStorage, or a fake in tests).
 */
export function createDrafts(storage, agentId, options = {}) {
  // An agent of several accounts has a tab for each, and a contact id both accounts know (a
  // colleague, a follower in demo mode) must not share one draft. Each part is encoded, so no
  // ":" in an agent or contact id (agent "a:b" and contact "c", agent "a" and contact "b:c")
  // makes two agents' keys one.
  const owner = options.account
    ? `@${encodeURIComponent(options.account)}/${encodeURIComponent(agentId)}`
    : encodeURIComponent(agentId);
  const base = options.kind === "note" ? NOTE_PREFIX : PREFIX;
  const prefix = `${base}${owner}:`;
  const indexKey = `${base}${owner}`;
  const keyOf = (contactId) => prefix + encodeURIComponent(contactId);

  function readIndex() {
    try {
      const list = JSON.parse(storage.getItem(indexKey) ?? "[]");
      return Array.isArray(list) ? list.filter((id) => typeof id === "string") : [];
    } catch {
      return [];
    }
  }

  function writeIndex(list) {
    try {
      storage.setItem(indexKey, JSON.stringify(list));
    } catch {
      // Storage full or unavailable: the draft lives for this page only.
    }
  }

  migrateUnencoded();

  /** Moves the drafts kept under the keys before encoding (agent and contact as typed) to their
   * encoded keys; the old keys are removed, so a later page finds nothing to move. */
  function migrateUnencoded() {
    const oldOwner = options.account ? `@${options.account}/${agentId}` : agentId;
    const oldIndexKey = `${base}${oldOwner}`;
    const oldKeyOf = (contactId) => `${oldIndexKey}:${contactId}`;
    let old;
    try {
      const raw = storage.getItem(oldIndexKey);
      if (raw === null) return;
      old = JSON.parse(raw);
    } catch {
      return;
    }
    // Not an index: another agent's draft under what was an ambiguous key, left alone.
    if (!Array.isArray(old)) return;
    const moving = old.filter((id) => typeof id === "string" && oldKeyOf(id) !== keyOf(id));
    if (moving.length === 0) return;
    const list = readIndex();
    // Only what held a draft to move was an index: a list-shaped draft of agent "a" for contact
    // "b" sits where agent "a:b" kept its index, and must not be deleted as one.
    let moved = false;
    try {
      for (const id of moving) {
        const text = storage.getItem(oldKeyOf(id));
        if (text === null) continue;
        moved = true;
        if (storage.getItem(keyOf(id)) === null) storage.setItem(keyOf(id), text);
        storage.removeItem(oldKeyOf(id));
        if (!list.includes(id)) list.push(id);
      }
      if (moved && oldIndexKey !== indexKey) storage.removeItem(oldIndexKey);
    } catch {
      return; // Storage full or unavailable: the old keys stay, for a later page to move.
    }
    if (moved) writeIndex(list);
  }

  return {
    /** The draft for a contact, or "". */
    get(contactId) {
      try {
        return storage.getItem(keyOf(contactId)) ?? "";
      } catch {
        return "";
      }
    },
    /** Keeps `text` for a contact; an empty text removes the draft. */
    set(contactId, text) {
      const list = readIndex().filter((id) => id !== contactId);
      if (!text) {
        try {
          storage.removeItem(keyOf(contactId));
        } catch {
          // Nothing kept.
        }
        writeIndex(list);
        return;
      }
      list.push(contactId);
      while (list.length > MAX_DRAFTS) {
        const oldest = list.shift();
        try {
          storage.removeItem(keyOf(oldest));
        } catch {
          // Already gone.
        }
      }
      try {
        storage.setItem(keyOf(contactId), text);
      } catch {
        // Storage full: this draft is not kept past the page.
      }
      writeIndex(list);
    },
    /** The contact whose draft `key` (a storage key) holds, or null for any other key. */
    contactOf(key) {
      if (typeof key !== "string" || !key.startsWith(prefix)) return null;
      const part = key.slice(prefix.length);
      // A ":" is never in an encoded part: such a key is another agent's, whose id has one.
      if (part.includes(":")) return null;
      try {
        return decodeURIComponent(part);
      } catch {
        return null;
      }
    },
    /** The contacts that have a draft. */
    contacts() {
      return readIndex();
    },
  };
}
