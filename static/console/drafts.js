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
  // colleague, a follower in demo mode) must not share one draft. A page without an account
  // keeps the keys drafts always had.
  const owner = options.account ? `@${options.account}/${agentId}` : agentId;
  const base = options.kind === "note" ? NOTE_PREFIX : PREFIX;
  const prefix = `${base}${owner}:`;
  const indexKey = `${base}${owner}`;

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

  return {
    /** The draft for a contact, or "". */
    get(contactId) {
      try {
        return storage.getItem(prefix + contactId) ?? "";
      } catch {
        return "";
      }
    },
    /** Keeps `text` for a contact; an empty text removes the draft. */
    set(contactId, text) {
      const list = readIndex().filter((id) => id !== contactId);
      if (!text) {
        try {
          storage.removeItem(prefix + contactId);
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
          storage.removeItem(prefix + oldest);
        } catch {
          // Already gone.
        }
      }
      try {
        storage.setItem(prefix + contactId, text);
      } catch {
        // Storage full: this draft is not kept past the page.
      }
      writeIndex(list);
    },
    /** The contact whose draft `key` (a storage key) holds, or null for any other key. */
    contactOf(key) {
      return typeof key === "string" && key.startsWith(prefix) ? key.slice(prefix.length) : null;
    },
    /** The contacts that have a draft. */
    contacts() {
      return readIndex();
    },
  };
}
