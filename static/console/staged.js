// Files put in the reply box (picked, pasted, dropped) and not sent yet, per conversation: a
// picture pasted by mistake (another customer's order, an internal screen) went to the follower
// at once, past recall; now it waits here, with its preview, for Send or Remove. Plain module,
// no DOM: the page makes and lets go of the previews' object URLs.

/** A store of staged files: each `{id, file, contentType, kind, name, size, preview}`. */
export function createStaged() {
  /** contact_id -> staged files, in the order they were added */
  const byContact = new Map();
  let counter = 0;
  return {
    /** The files staged for `contactId`, oldest first. */
    list(contactId) {
      return byContact.get(contactId) ?? [];
    },
    /** Stages `item` for `contactId`; returns it with its id. */
    add(contactId, item) {
      const staged = { ...item, id: `staged-${++counter}` };
      byContact.set(contactId, [...this.list(contactId), staged]);
      return staged;
    },
    /** Takes one file off; returns it (null when it was not there). */
    remove(contactId, id) {
      const list = this.list(contactId);
      const found = list.find((item) => item.id === id) ?? null;
      if (!found) return null;
      const rest = list.filter((item) => item !== found);
      if (rest.length) byContact.set(contactId, rest);
      else byContact.delete(contactId);
      return found;
    },
    /** How many files wait, in all conversations. */
    count() {
      let n = 0;
      for (const list of byContact.values()) n += list.length;
      return n;
    },
    /** Takes every file staged for `contactId` off, to send; oldest first. */
    take(contactId) {
      const list = this.list(contactId);
      byContact.delete(contactId);
      return list;
    },
  };
}
