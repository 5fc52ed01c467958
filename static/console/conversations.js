// The console's cache of conversations: messages indexed by our key, the bridge's id and the
// client_id we gave a reply, so that history, replays after `since=` and our own echoes land on
// one entry each, kept sorted as they arrive. Plain module, no DOM: `deno test` covers it.

/** How far a message has got; a later report never moves one back. */
export const STATUS_RANK = { uploading: -1, sending: 0, sent: 1, failed: 1 };

let keyCounter = 0;

/** An empty conversation; `view` holds what the page renders of it (nodes, window). */
export function createConversation() {
  return {
    byKey: new Map(),
    byId: new Map(),
    byClient: new Map(),
    nodes: new Map(),
    days: new Map(),
    edges: new Map(),
    sorted: null,
    win: null,
    seen: 0,
    highlight: null,
    nextBefore: null,
    loaded: false,
    loading: false,
    error: "",
  };
}

/** Oldest first; messages of the same second in the order they arrived. */
export function compareMessages(a, b) {
  return (Number(a.send_time) || 0) - (Number(b.send_time) || 0) || a.order - b.order;
}

function index(c, msg) {
  if (msg.id) c.byId.set(String(msg.id), msg);
  if (msg.client_id) c.byClient.set(String(msg.client_id), msg);
}

/**
 * Adds `data` to `c`, or merges it into the message it is (same client_id or id): a status
 * never goes back (a late "sending" after "sent"). `nowS` stamps a message without a time;
 * `order` places a new one among messages of its second (an older page of history goes before
 * what came earlier), else it goes after them.
 */
export function upsertMessage(c, data, nowS, order) {
  const id = data.id ? String(data.id) : "";
  const clientId = data.client_id ? String(data.client_id) : "";
  const existing = (clientId && c.byClient.get(clientId)) || (id && c.byId.get(id));
  if (existing) {
    const keepStatus = data.status && existing.status &&
      (STATUS_RANK[data.status] ?? 0) < (STATUS_RANK[existing.status] ?? 0);
    const { status, error, failure } = existing;
    if (data.send_time !== undefined && Number(data.send_time) !== Number(existing.send_time)) {
      c.sorted = null;
    }
    Object.assign(existing, data);
    if (keepStatus) Object.assign(existing, { status, error, failure });
    existing.rev += 1;
    index(c, existing);
    return { msg: existing, isNew: false };
  }
  const msg = { ...data, key: `m${++keyCounter}`, order: order ?? keyCounter, rev: 0 };
  if (!msg.send_time) msg.send_time = nowS;
  index(c, msg);
  c.byKey.set(msg.key, msg);
  if (c.sorted) {
    const last = c.sorted.at(-1);
    // Most messages arrive newest: appended, the order holds without sorting again.
    if (!last || compareMessages(last, msg) <= 0) c.sorted.push(msg);
    else c.sorted = null;
  }
  return { msg, isNew: true };
}

/** Orders for `count` messages put before every one `c` holds, oldest first: the first one. */
export function ordersBefore(c, count) {
  let least = Infinity;
  for (const msg of c.byKey.values()) least = Math.min(least, msg.order);
  return (least === Infinity ? 0 : least) - count;
}

/**
 * Orders for the newest page of history (oldest first) merged into `c`, one per item (undefined:
 * as it comes, after all). A message `c` lacks that the page puts before one `c` holds goes right
 * after the one before it in the page, or before everything when none is: a follower handed over
 * to us had what it said to the other agent (history only) drawn after what it said to us since
 * (live) whenever both fell in one second.
 */
export function pageOrders(c, items) {
  const held = items.map((item) =>
    (item.client_id && c.byClient.get(String(item.client_id))) ||
    (item.id && c.byId.get(String(item.id))) || null
  );
  const orders = items.map(() => undefined);
  const last = held.findLastIndex(Boolean);
  const first = ordersBefore(c, held.findIndex(Boolean));
  let after = null;
  let run = 0;
  for (let i = 0; i < last; i++) {
    if (held[i]) {
      after = held[i].order;
      run = 0;
      continue;
    }
    // Between two held orders (whole numbers): fractions keep the page's order in the gap.
    orders[i] = after === null ? first + run : after + (run + 1) / 1024;
    run += 1;
  }
  return orders;
}

/** Takes a message out (a cancelled upload). */
export function removeMessage(c, msg) {
  c.byKey.delete(msg.key);
  c.sorted = null;
  c.nodes.delete(msg.key);
  if (msg.client_id) c.byClient.delete(String(msg.client_id));
}

/** Gives a message a new client_id (a retried reply is a new reply to the bridge). */
export function rekeyClientId(c, msg, clientId) {
  if (msg.client_id) c.byClient.delete(String(msg.client_id));
  msg.client_id = clientId;
  c.byClient.set(clientId, msg);
}

/** The conversation's messages in order, sorted once and kept sorted. */
export function sortedMessages(c) {
  if (!c.sorted) c.sorted = [...c.byKey.values()].sort(compareMessages);
  return c.sorted;
}

/** The message with `clientId`, looked for in `contactId` first, then everywhere. */
export function findByClientId(convs, clientId, contactId) {
  if (contactId) {
    const found = convs.get(contactId)?.byClient.get(clientId);
    if (found) return { contactId, msg: found };
  }
  for (const [id, c] of convs) {
    const msg = c.byClient.get(clientId);
    if (msg) return { contactId: id, msg };
  }
  return null;
}

/** Our replies still waiting to be taken by the bridge: [contactId, msg], the outbox. */
export function* pendingReplies(convs) {
  for (const [contactId, c] of convs) {
    for (const msg of c.byKey.values()) {
      if (msg.direction === "out" && msg.local && msg.status === "sending") yield [contactId, msg];
    }
  }
}
