// Which conversations the list's search box finds: by the follower's name, its id, or one of
// the labels agents gave it (VIP, 退款…), so a label shown on a row also finds that row.
// Plain module, no DOM.

/** Whether `contact` matches the search box's `query` (already trimmed); "" matches all. */
export function matchesSearch(contact, query) {
  const q = String(query ?? "").toLowerCase();
  if (!q) return true;
  const has = (value) => String(value ?? "").toLowerCase().includes(q);
  return has(contact?.name) || has(contact?.contact_id) ||
    (Array.isArray(contact?.labels) && contact.labels.some(has));
}
