// The contact list's rows, built once and kept while what they show is the same: with a month
// of followers (2,000 rows) rebuilding every row on each message or keystroke froze the page
// for half a second. A render builds only the rows whose key changed and moves only the rows
// that moved. Plain module: the DOM calls are the few any Node has.

/** A cache of row nodes by id: `row(id, key, build)` gives the node last built for `key`,
 * calling `build()` only when the key changed; `prune(ids)` forgets ids no longer listed. */
export function createRowCache() {
  /** @type {Map<string, {key: string, node: unknown}>} */
  const rows = new Map();
  return {
    row(id, key, build) {
      const hit = rows.get(id);
      if (hit && hit.key === key) return hit.node;
      const node = build();
      rows.set(id, { key, node });
      return node;
    },
    prune(ids) {
      for (const id of rows.keys()) if (!ids.has(id)) rows.delete(id);
    },
    clear() {
      rows.clear();
    },
    get size() {
      return rows.size;
    },
  };
}

/** Makes `parent`'s children exactly `nodes`, in order, touching only those out of place: a
 * row that stays where it was is neither moved nor rebuilt. */
export function syncChildren(parent, nodes) {
  let cursor = parent.firstChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextSibling;
      continue;
    }
    parent.insertBefore(node, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    parent.removeChild(cursor);
    cursor = next;
  }
}
