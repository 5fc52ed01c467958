// The agent console: contact list, conversations and replies over the bridge's agent protocol
// (PROTOCOL.md). Plain browser JavaScript, no build step; every text from the wire goes into the
// page through textContent, every URL through safeUrl().

import { byIdOn, h, safeUrl, timeFormat } from "./common.js";

const B = "/im_component/wx_official_account";
const WINDOW_S = 48 * 3600;
const SYSTEM_ID = "system01";
const HISTORY_PAGE = 50;
const TYPING_EVERY_MS = 15_000;
const WATCHDOG_MIN_MS = 75_000;

const params = new URLSearchParams(location.search);
const userid = (params.get("userid") ?? params.get("userId") ?? "").trim();
/** With several official accounts, the one this page serves (`/console?userid=…&account=…`). */
const account = (params.get("account") ?? "").trim();
const tokenKey = `wxbridge.token:${userid}`;
const capacityKey = `wxbridge.capacity:${userid}`;
/** How long a transfer or close may wait for the bridge's answer before the form says so. */
const COMMAND_PATIENCE_MS = 10_000;
/** A follower's name, as the bridge takes it (PROTOCOL.md, rename). */
const NAME_MAX = 64;

const state = {
  token: readToken(),
  lastSeq: 0,
  /** @type {Map<string, any>} contact_id -> contact, as /contacts gives it, kept up to date */
  contacts: new Map(),
  waiting: [],
  /** @type {Map<string, any>} contact_id -> conversation cache */
  convs: new Map(),
  system: { items: [], unseen: 0 },
  current: null,
  filter: "",
  contactsLoaded: false,
  needsToken: false,
  /** @type {Map<string, any>} contact_id -> the contact as it was, plus transferred_to/_at */
  transferred: new Map(),
  /** The open transfer form or close confirmation: {kind, contactId, busy, error, clientId} */
  action: null,
  /** Max open conversations set in this browser: a number, null (no limit), undefined (unset) */
  capacity: readCapacity(),
  capacityError: "",
  /** The open rename field in the header: {contactId, error} */
  renaming: null,
  /** @type {Map<string, any>} contact_id -> a rename sent but not yet seen in GET contacts:
   * {clientId, name, previous, tries, timer, deadline} */
  renames: new Map(),
};

const conn = {
  ws: null,
  opened: false,
  everOpened: false,
  attempts: 0,
  lastSeqKnown: false,
  state: "idle",
  detail: "",
  retryTimer: 0,
  retryAt: 0,
  lastFrameAt: 0,
  heartbeatGap: 0,
  openedAt: 0,
  lastHeartbeatAt: 0,
  /** frames to send once the socket is open (replies typed while offline) */
  outbox: [],
};

let keyCounter = 0;
/** Orders contacts whose last messages share a second: the one touched last goes first. */
let touchCounter = 0;
let lastTypingAt = 0;

const byId = byIdOn("the console");

const el = {
  app: byId("app"),
  conn: byId("conn"),
  connLabel: byId("conn-label"),
  connRetry: byId("conn-retry"),
  agent: byId("agent"),
  agentId: byId("agent-id"),
  tokenButton: byId("token-button"),
  signin: byId("signin"),
  signinForm: byId("signin-form"),
  tokenPanel: byId("token-panel"),
  tokenForm: byId("token-form"),
  tokenInput: byId("token-input"),
  tokenReason: byId("token-reason"),
  tokenAgent: byId("token-agent"),
  tokenForget: byId("token-forget"),
  panes: byId("panes"),
  filter: byId("contact-filter"),
  systemEntry: byId("system-entry"),
  waiting: byId("waiting"),
  waitingCount: byId("waiting-count"),
  waitingList: byId("waiting-list"),
  contactList: byId("contact-list"),
  contactsEmpty: byId("contacts-empty"),
  conversationEmpty: byId("conversation-empty"),
  conversation: byId("conversation"),
  back: byId("back-button"),
  convHead: byId("conv-head"),
  convAvatar: byId("conv-avatar"),
  convNameRow: byId("conv-name-row"),
  convName: byId("conv-name"),
  renameButton: byId("rename-button"),
  renameForm: byId("rename-form"),
  renameInput: byId("rename-input"),
  renameSave: byId("rename-save"),
  renameCancel: byId("rename-cancel"),
  renameError: byId("rename-error"),
  convSub: byId("conv-sub"),
  convWindow: byId("conv-window"),
  messages: byId("messages"),
  windowNotice: byId("window-notice"),
  composer: byId("composer"),
  reply: byId("reply"),
  attachButton: byId("attach-button"),
  attachInput: byId("attach-input"),
  dropZone: byId("drop-zone"),
  dropLabel: byId("drop-label"),
  composerHint: byId("composer-hint"),
  toasts: byId("toasts"),
  transferredSection: byId("transferred"),
  transferredList: byId("transferred-list"),
  convActions: byId("conv-actions"),
  transferButton: byId("transfer-button"),
  closeButton: byId("close-button"),
  transferForm: byId("transfer-form"),
  transferName: byId("transfer-name"),
  transferTo: byId("transfer-to"),
  transferSubmit: byId("transfer-submit"),
  transferCancel: byId("transfer-cancel"),
  transferError: byId("transfer-error"),
  closeConfirm: byId("close-confirm"),
  closeName: byId("close-name"),
  closeSubmit: byId("close-submit"),
  closeCancel: byId("close-cancel"),
  closeError: byId("close-error"),
  capacity: byId("capacity"),
  capacityButton: byId("capacity-button"),
  capacityValue: byId("capacity-value"),
  capacityForm: byId("capacity-form"),
  capacityInput: byId("capacity-input"),
  capacityOpen: byId("capacity-open"),
  capacityError: byId("capacity-error"),
  capacityCancel: byId("capacity-cancel"),
};

// ---------------------------------------------------------------------------------------------
// Small helpers

function nowS() {
  return Math.floor(Date.now() / 1000);
}

function readToken() {
  try {
    return localStorage.getItem(tokenKey) ?? "";
  } catch {
    return "";
  }
}

function writeToken(token) {
  try {
    if (token) localStorage.setItem(tokenKey, token);
    else localStorage.removeItem(tokenKey);
  } catch {
    // Private mode without storage: the token lives for this page only.
  }
}

/** The capacity kept for this agent: stored as a whole number, or "none" for no limit. */
function readCapacity() {
  let value = null;
  try {
    value = localStorage.getItem(capacityKey);
  } catch {
    return undefined;
  }
  if (value === null) return undefined;
  if (value === "none") return null;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

function writeCapacity(max) {
  try {
    localStorage.setItem(capacityKey, max === null ? "none" : String(max));
  } catch {
    // Private mode without storage: the setting lives for this page only.
  }
}

function newClientId() {
  const random = globalThis.crypto?.randomUUID?.() ??
    `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
  return `c-${random}`;
}

const dayFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  year: "numeric",
  month: "short",
  day: "numeric",
});
const shortDayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

function dayKey(seconds) {
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function dayLabel(seconds) {
  const key = dayKey(seconds);
  if (key === dayKey(nowS())) return "Today";
  if (key === dayKey(nowS() - 86400)) return "Yesterday";
  return dayFormat.format(new Date(seconds * 1000));
}

/** "14:05" today, "Yesterday", or "Mar 13" in the contact list. */
function listTime(seconds) {
  if (!seconds) return "";
  const key = dayKey(seconds);
  if (key === dayKey(nowS())) return timeFormat.format(new Date(seconds * 1000));
  if (key === dayKey(nowS() - 86400)) return "Yesterday";
  return shortDayFormat.format(new Date(seconds * 1000));
}

function formatDuration(seconds) {
  const minutes = Math.max(0, Math.floor(seconds / 60));
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
}

/** The 48-hour window of a contact: {state: open|soon|closed|unknown, left, label}. */
function windowOf(contact) {
  if (contact?.kind === "agent") return { state: "agent", left: 0, label: "Agent" };
  let expires = Number(contact?.window_expires_at) || 0;
  if (!expires && contact?.last_inbound_time) {
    expires = Number(contact.last_inbound_time) + WINDOW_S;
  }
  if (!expires) return { state: "unknown", left: 0, label: "No reply window" };
  const left = expires - nowS();
  if (left <= 0) return { state: "closed", left: 0, label: "Window closed" };
  return { state: left < 2 * 3600 ? "soon" : "open", left, label: `${formatDuration(left)} left` };
}

function previewOf(msgType, msg) {
  const m = msg ?? {};
  switch (msgType) {
    case "text":
      return String(m.content ?? "");
    case "image":
      return "[Image]";
    case "voice":
      return m.recognition ? `[Voice] ${m.recognition}` : "[Voice]";
    case "video":
      return "[Video]";
    case "shortvideo":
      return "[Short video]";
    case "location":
      return `[Location] ${m.label ?? ""}`.trim();
    case "link":
      return `[Link] ${m.title ?? ""}`.trim();
    case "news":
      return `[Article] ${m.title ?? ""}`.trim();
    case "miniprogrampage":
      return `[Mini program] ${m.title ?? ""}`.trim();
    case "system":
      return String(m.text ?? m.event ?? "System message");
    default:
      return `[${msgType ?? "message"}]`;
  }
}

function initialsOf(name) {
  const text = String(name ?? "").trim();
  if (!text) return "?";
  const first = Array.from(text)[0] ?? "?";
  return /[a-z]/i.test(first) ? first.toUpperCase() : first;
}

function hueOf(id) {
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.codePointAt(0)) % 360;
  return hash;
}

function avatarEl(contact, className = "avatar") {
  const node = h("div", { class: className, "aria-hidden": "true" });
  fillAvatar(node, contact);
  return node;
}

function fillAvatar(node, contact) {
  node.replaceChildren();
  const src = safeUrl(contact?.avatar);
  if (src) {
    node.append(h("img", { src, alt: "", loading: "lazy" }));
  } else if (contact?.contact_id === SYSTEM_ID) {
    node.append(h("span", { class: "avatar-system" }, "i"));
  } else {
    node.style.setProperty("--hue", String(hueOf(contact?.contact_id ?? "")));
    node.append(initialsOf(contact?.name || contact?.contact_id));
  }
}

function toast(text, kind = "info") {
  const node = h(
    "div",
    { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    text,
  );
  el.toasts.append(node);
  setTimeout(() => node.classList.add("leaving"), 6000);
  setTimeout(() => node.remove(), 6600);
}

class AuthError extends Error {}

// ---------------------------------------------------------------------------------------------
// HTTP

async function api(path, query) {
  const url = new URL(B + path, location.origin);
  url.searchParams.set("userid", userid);
  if (account) url.searchParams.set("account", account);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
  }
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(url, { headers });
  if (res.status === 401) {
    await res.body?.cancel();
    needToken();
    throw new AuthError("token required");
  }
  if (!res.ok) {
    const text = (await res.text()).slice(0, 200);
    throw new Error(`HTTP ${res.status}${text ? `: ${text}` : ""}`);
  }
  return res.json();
}

let contactsTimer = 0;
function scheduleContactsRefresh(delay = 800) {
  clearTimeout(contactsTimer);
  contactsTimer = setTimeout(() => loadContacts().catch(reportLoadError("conversations")), delay);
}

function reportLoadError(what) {
  return (error) => {
    if (error instanceof AuthError) return;
    toast(`Could not load ${what}: ${error.message}`, "error");
  };
}

async function loadContacts() {
  const body = await api("/contacts");
  const listed = new Set();
  for (const contact of body.contacts ?? []) {
    if (!contact?.contact_id) continue;
    listed.add(contact.contact_id);
    const merged = { ...state.contacts.get(contact.contact_id), ...contact };
    state.contacts.set(contact.contact_id, merged);
    // A rename on its way: the bridge has it once the list shows it; until then, ours shows.
    nameFromBridge(merged, contact.name);
  }
  // A contact transferred away disappears; the open one stays readable.
  for (const id of [...state.contacts.keys()]) {
    const contact = state.contacts.get(id);
    if (!listed.has(id) && id !== state.current && contact?.kind !== "agent") {
      state.contacts.delete(id);
    }
  }
  state.waiting = Array.isArray(body.waiting) ? body.waiting : [];
  state.contactsLoaded = true;
  if (isViewing(state.current)) markRead(state.current, { send: false });
  renderContacts();
  renderConversationHead();
}

async function loadHistory(contactId, { older = false } = {}) {
  const c = conv(contactId);
  if (c.loading) return;
  c.loading = true;
  c.error = "";
  if (state.current === contactId) renderMessages();
  const box = el.messages;
  const fromBottom = box.scrollHeight - box.scrollTop;
  try {
    const body = await api("/history", {
      contact_id: contactId,
      limit: HISTORY_PAGE,
      before: older ? c.nextBefore : undefined,
    });
    for (const item of body.messages ?? []) upsertMessage(contactId, item);
    c.nextBefore = body.next_before ?? null;
    c.loaded = true;
  } catch (error) {
    if (!(error instanceof AuthError)) {
      c.error = `Could not load the conversation: ${error.message}`;
    }
  } finally {
    c.loading = false;
  }
  if (state.current !== contactId) return;
  renderMessages({ toBottom: !older });
  if (older) box.scrollTop = box.scrollHeight - fromBottom;
}

// ---------------------------------------------------------------------------------------------
// Conversations: a cache per contact, messages indexed by id and by client_id so that history,
// replays after `since=` and our own echoes land on one entry each.

function conv(contactId) {
  let c = state.convs.get(contactId);
  if (!c) {
    c = {
      byKey: new Map(),
      byId: new Map(),
      byClient: new Map(),
      nodes: new Map(),
      nextBefore: null,
      loaded: false,
      loading: false,
      error: "",
    };
    state.convs.set(contactId, c);
  }
  return c;
}

const STATUS_RANK = { uploading: -1, sending: 0, sent: 1, failed: 1 };

function upsertMessage(contactId, data) {
  const c = conv(contactId);
  const id = data.id ? String(data.id) : "";
  const clientId = data.client_id ? String(data.client_id) : "";
  const existing = (clientId && c.byClient.get(clientId)) || (id && c.byId.get(id));
  if (existing) {
    const keepStatus = data.status && existing.status &&
      (STATUS_RANK[data.status] ?? 0) < (STATUS_RANK[existing.status] ?? 0);
    const { status, error, failure } = existing;
    Object.assign(existing, data);
    if (keepStatus) Object.assign(existing, { status, error, failure });
    existing.rev += 1;
    index(c, existing);
    return { msg: existing, isNew: false };
  }
  const msg = { ...data, key: `m${++keyCounter}`, order: keyCounter, rev: 0 };
  if (!msg.send_time) msg.send_time = nowS();
  index(c, msg);
  c.byKey.set(msg.key, msg);
  return { msg, isNew: true };
}

function index(c, msg) {
  if (msg.id) c.byId.set(String(msg.id), msg);
  if (msg.client_id) c.byClient.set(String(msg.client_id), msg);
}

function findByClientId(clientId, contactId) {
  if (contactId) {
    const found = state.convs.get(contactId)?.byClient.get(clientId);
    if (found) return { contactId, msg: found };
  }
  for (const [id, c] of state.convs) {
    const msg = c.byClient.get(clientId);
    if (msg) return { contactId: id, msg };
  }
  return null;
}

function ensureContact(contactId, data, { agent = false } = {}) {
  let contact = state.contacts.get(contactId);
  if (!contact) {
    contact = {
      contact_id: contactId,
      name: data?.name || contactId,
      avatar: data?.avatar ?? "",
      unread: 0,
      status: "open",
    };
    state.contacts.set(contactId, contact);
    if (!agent) scheduleContactsRefresh();
  }
  return contact;
}

function isViewing(contactId) {
  return Boolean(contactId) && state.current === contactId &&
    document.visibilityState === "visible";
}

function markRead(contactId, { send = true } = {}) {
  const contact = state.contacts.get(contactId);
  if (contact) contact.unread = 0;
  if (send && contactId !== SYSTEM_ID && contact?.kind !== "agent") {
    sendCommand("read", { contact_id: contactId });
  }
}

// ---------------------------------------------------------------------------------------------
// The socket

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  let url = `${scheme}//${location.host}${B}/msg?userid=${encodeURIComponent(userid)}`;
  if (account) url += `&account=${encodeURIComponent(account)}`;
  if (conn.lastSeqKnown) url += `&since=${state.lastSeq}`;
  if (state.token) url += `&token=${encodeURIComponent(state.token)}`;
  return url;
}

function connect() {
  clearTimeout(conn.retryTimer);
  if (conn.ws || state.needsToken) return;
  setConn(conn.everOpened ? "reconnecting" : "connecting");
  const ws = new WebSocket(socketUrl());
  conn.ws = ws;
  conn.opened = false;
  ws.onopen = () => {
    conn.opened = true;
    conn.everOpened = true;
    conn.attempts = 0;
    conn.lastFrameAt = conn.openedAt = Date.now();
    conn.lastHeartbeatAt = 0;
    setConn("connected");
    // The bridge keeps the capacity, but this browser is where the agent set it: say it again
    // on every (re)connect, so a restarted bridge or another console cannot leave it stale.
    sendCapacity();
    flushOutbox();
    if (state.contactsLoaded) scheduleContactsRefresh(300);
    if (isViewing(state.current)) markRead(state.current);
  };
  ws.onmessage = (event) => {
    conn.lastFrameAt = Date.now();
    let envelope;
    try {
      envelope = JSON.parse(event.data);
    } catch {
      return;
    }
    handleEnvelope(envelope);
  };
  ws.onclose = (event) => {
    if (conn.ws !== ws) return;
    conn.ws = null;
    const wasOpen = conn.opened;
    conn.opened = false;
    refreshPending();
    onSocketClosed(event, wasOpen);
  };
}

/** Drops a socket we no longer trust (silent network) without waiting for its close handshake. */
function abandonSocket() {
  const ws = conn.ws;
  if (!ws) return;
  conn.ws = null;
  ws.onopen = ws.onmessage = ws.onclose = null;
  try {
    ws.close(4000, "heartbeat timeout");
  } catch {
    // Already closing.
  }
}

async function onSocketClosed(event, wasOpen) {
  if (state.needsToken) return;
  if (!wasOpen) {
    // A refused upgrade looks like a plain failure to the browser: ask HTTP why.
    try {
      await api("/contacts");
    } catch (error) {
      if (error instanceof AuthError) return;
    }
  }
  if (event.code === 4008) {
    scheduleReconnect(30_000, "Too many open consoles for this agent — close one");
    return;
  }
  if (event.code === 4001 || event.code === 1001 || event.code === 1012) {
    scheduleReconnect(300 + Math.random() * 700);
    return;
  }
  if (event.code === 4000 && event.reason) toast(`Connection closed: ${event.reason}`, "error");
  conn.attempts += 1;
  const base = Math.min(15_000, 500 * 2 ** Math.min(conn.attempts, 5));
  scheduleReconnect(base / 2 + Math.random() * (base / 2));
}

function scheduleReconnect(delay, problem) {
  clearTimeout(conn.retryTimer);
  conn.retryAt = Date.now() + delay;
  if (problem) setConn("error", problem);
  else if (!navigator.onLine) setConn("offline");
  else setConn("waiting");
  conn.retryTimer = setTimeout(connect, delay);
}

function reconnectNow() {
  conn.attempts = 0;
  if (conn.ws && conn.opened) return;
  abandonSocket();
  connect();
}

const CONN_LABELS = {
  idle: "Starting…",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline — waiting for the network",
  token: "Token required",
  error: "Connection problem",
};

function setConn(name, detail) {
  conn.state = name;
  conn.detail = detail;
  renderConn();
}

function renderConn() {
  const name = conn.state ?? "idle";
  let label = CONN_LABELS[name] ?? name;
  let dataState = name;
  if (name === "waiting") {
    const seconds = Math.max(1, Math.ceil((conn.retryAt - Date.now()) / 1000));
    label = `Disconnected — retrying in ${seconds}s`;
    dataState = "reconnecting";
  }
  if (name === "error" && conn.detail) label = conn.detail;
  el.conn.dataset.state = dataState;
  el.connLabel.textContent = label;
  el.connRetry.hidden = !(name === "waiting" || name === "offline" || name === "error");
  el.composer.dataset.connected = String(name === "connected");
}

function send(frame) {
  const ws = conn.ws;
  if (ws && conn.opened && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

let commandCounter = 0;

/** Commands carry a client_id of their own, so that a refusal is known as one (not a reply's).
 * Returns that client_id once the frame is written, or null when there is no open socket. */
function sendCommand(type, fields) {
  const client_id = `cmd-${type}-${++commandCounter}`;
  const sent = send({
    data: { msg_type: type, client_id, ...fields },
    result: { code: 0, message: "command" },
  });
  return sent ? client_id : null;
}

function flushOutbox() {
  // Replies not yet echoed are sent again: the bridge sends one client_id only once.
  for (const [contactId, msg] of pendingReplies()) {
    if (!msg.echoed) sendReplyFrame(contactId, msg);
  }
  refreshPending();
}

function* pendingReplies() {
  for (const [contactId, c] of state.convs) {
    for (const msg of c.byKey.values()) {
      if (msg.direction === "out" && msg.local && msg.status === "sending") yield [contactId, msg];
    }
  }
}

/** Re-renders pending replies, whose label says whether we are connected. */
function refreshPending() {
  for (const [, msg] of pendingReplies()) msg.rev += 1;
  if (state.current) renderMessages();
}

// ---------------------------------------------------------------------------------------------
// Envelopes from the bridge

function handleEnvelope(envelope) {
  const code = Number(envelope?.result?.code);
  const data = envelope?.data ?? {};
  if (code === 101) {
    // The gap between heartbeats (or from the open to the first one) sets the watchdog.
    const now = Date.now();
    conn.heartbeatGap = Math.max(conn.heartbeatGap, now - (conn.lastHeartbeatAt || conn.openedAt));
    conn.lastHeartbeatAt = now;
    return;
  }
  if (typeof data.seq === "number" && data.seq > state.lastSeq) {
    state.lastSeq = data.seq;
    conn.lastSeqKnown = true;
  }
  if (code === -1) return handleError(envelope);
  if (code === 0) return handleAck(data);
  if (code === 102 || data.msg_type === "system" || data.contact_id === SYSTEM_ID) {
    return handleSystem(data);
  }
  if (data.direction === "out") return handleEcho(data);
  return handleIncoming(data);
}

/** A code-0 answer to one of our frames (a command, or a reply's acceptance). */
function handleAck(data) {
  if (!data.client_id || !data.status) return;
  const found = findByClientId(String(data.client_id), data.contact_id);
  if (!found || !["sent", "delivered", "failed"].includes(data.status)) return;
  // "delivered": a message to another agent, handed to its sockets.
  const status = data.status === "failed" ? "failed" : "sent";
  upsertMessage(found.contactId, { client_id: data.client_id, status });
  if (state.current === found.contactId) renderMessages();
}

function handleIncoming(data) {
  let contactId = String(data.contact_id ?? "");
  if (!contactId) return;
  // Another agent (or a program, as in the seed's JSON test) wrote to us: the conversation is
  // with the sender, and a reply there goes back to that agent.
  const fromAgent = contactId === userid;
  if (fromAgent) contactId = data.from ? String(data.from) : `${userid} (direct)`;
  const { msg, isNew } = upsertMessage(contactId, {
    ...data,
    contact_id: contactId,
    direction: data.direction ?? "in",
  });
  const contact = ensureContact(contactId, data, { agent: fromAgent });
  if (fromAgent) {
    contact.kind = "agent";
    contact.name = data.from ? String(data.from) : "Direct messages";
  } else {
    if (data.name) nameFromBridge(contact, String(data.name));
    if (data.avatar) contact.avatar = data.avatar;
  }
  if (isNew && fromAgent) {
    contact.last_message = {
      msg_type: msg.msg_type,
      preview: previewOf(msg.msg_type, msg.msg),
      direction: "in",
    };
    contact.last_message_time = Math.max(
      Number(contact.last_message_time) || 0,
      Number(msg.send_time) || nowS(),
    );
    contact.touched = ++touchCounter;
    if (!isViewing(contactId)) contact.unread = (Number(contact.unread) || 0) + 1;
  } else if (isNew) {
    const at = Number(msg.send_time) || nowS();
    contact.last_message = {
      msg_type: msg.msg_type,
      preview: previewOf(msg.msg_type, msg.msg),
      direction: "in",
    };
    contact.last_message_time = Math.max(Number(contact.last_message_time) || 0, at);
    contact.last_inbound_time = Math.max(Number(contact.last_inbound_time) || 0, at);
    contact.window_expires_at = Math.max(
      Number(contact.window_expires_at) || 0,
      contact.last_inbound_time + WINDOW_S,
    );
    contact.status = "open";
    contact.touched = ++touchCounter;
    if (isViewing(contactId)) scheduleRead(contactId);
    else contact.unread = (Number(contact.unread) || 0) + 1;
    scheduleContactsRefresh(1500);
  }
  renderContacts();
  if (state.current === contactId) {
    renderConversationHead();
    renderMessages();
  }
}

let readTimer = 0;
function scheduleRead(contactId) {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => {
    if (isViewing(contactId)) markRead(contactId);
  }, 300);
}

function handleEcho(data) {
  const contactId = String(data.contact_id ?? "");
  if (!contactId) return;
  const { msg, isNew } = upsertMessage(contactId, { ...data, echoed: true });
  const contact = ensureContact(contactId, {});
  if (isNew || msg.local) {
    contact.last_message = {
      msg_type: msg.msg_type,
      preview: previewOf(msg.msg_type, msg.msg),
      direction: "out",
    };
    contact.last_message_time = Math.max(
      Number(contact.last_message_time) || 0,
      Number(msg.send_time) || nowS(),
    );
    contact.touched = ++touchCounter;
  }
  renderContacts();
  if (state.current === contactId) renderMessages();
}

function handleSystem(data) {
  const msg = data.msg ?? {};
  if (msg.event === "reply_sent") {
    const found = msg.client_id ? findByClientId(String(msg.client_id), msg.contact_id) : null;
    if (found) {
      upsertMessage(found.contactId, {
        client_id: msg.client_id,
        status: "sent",
        reply_id: msg.reply_id,
      });
      if (state.current === found.contactId) renderMessages();
    }
    return;
  }
  const known = data.id && state.system.items.some((item) => item.id && item.id === data.id);
  if (!known) {
    state.system.items.push(data);
    if (!isViewing(SYSTEM_ID)) state.system.unseen += 1;
  }
  const followerId = msg.follower_id ? String(msg.follower_id) : "";
  if (followerId) {
    upsertMessage(followerId, { ...data, direction: "system", note_for: followerId });
    if (msg.event === "transferred_out") onTransferredOut(followerId, msg, data);
    else if (msg.event === "closed") onClosed(followerId);
    else if (msg.event === "assigned" || msg.event === "transferred_in") {
      onAssigned(followerId, msg);
    }
    if (state.current === followerId) {
      renderConversationHead();
      renderAction();
      renderMessages();
    }
  }
  if (
    [
      "assigned",
      "transferred_in",
      "transferred_out",
      "closed",
      "window_expired",
      "subscribe",
      "unsubscribe",
    ]
      .includes(msg.event)
  ) scheduleContactsRefresh(300);
  renderContacts();
  if (state.current === SYSTEM_ID) renderMessages();
}

// ---------------------------------------------------------------------------------------------
// Routing events: what transfer, close and (re)assignment change in the lists

/** We handed the follower to another agent: it leaves the list; its history stays readable. */
function onTransferredOut(followerId, msg, data) {
  const before = state.transferred.get(followerId) ?? ensureContactView(followerId);
  state.transferred.set(followerId, {
    ...before,
    contact_id: followerId,
    name: before.name || msg.follower_name || followerId,
    status: "transferred",
    unread: 0,
    transferred_to: String(msg.to ?? ""),
    transferred_at: Number(data.send_time) || nowS(),
  });
  state.contacts.delete(followerId);
  finishAction(followerId);
}

function onClosed(followerId) {
  const contact = state.contacts.get(followerId);
  if (contact) {
    contact.status = "closed";
    contact.agent_id = null;
    contact.unread = 0;
  }
  finishAction(followerId);
}

/** A follower is (again) ours: a new one, one we closed that wrote again, or a transfer in. */
function onAssigned(followerId, msg) {
  const wasAway = state.transferred.delete(followerId) || !state.contacts.has(followerId);
  let contact = state.contacts.get(followerId);
  if (!contact) {
    contact = {
      contact_id: followerId,
      name: msg.follower_name || followerId,
      avatar: "",
      unread: 0,
      last_message_time: nowS(),
      touched: ++touchCounter,
    };
    state.contacts.set(followerId, contact);
  }
  contact.status = "open";
  contact.agent_id = userid;
  if (wasAway) {
    // What the follower said while with another agent is in the history, not in our log.
    const c = conv(followerId);
    if (c.loaded) {
      c.loaded = false;
      if (state.current === followerId) loadHistory(followerId);
    }
  }
}

/** A transfer or close of this contact finished (by this console, or another of ours). */
function finishAction(followerId) {
  if (state.action?.contactId !== followerId) return;
  clearTimeout(state.action.timer);
  state.action = null;
}

/** A refused command: the open form says why, or a toast does. True when it was ours. */
function commandRefused(clientId, message) {
  const a = state.action;
  if (a && a.busy && a.clientId === clientId) {
    clearTimeout(a.timer);
    a.busy = false;
    a.error = a.kind === "transfer"
      ? `Could not transfer: ${message}`
      : `Could not end the conversation: ${message}`;
    renderAction();
    if (a.kind === "transfer" && state.current === a.contactId) el.transferTo.select();
    return true;
  }
  if (clientId.startsWith("cmd-rename-")) {
    renameRefused(clientId, message);
    return true;
  }
  if (clientId.startsWith("cmd-capacity-")) {
    state.capacityError = `The bridge did not take the limit: ${message}`;
    renderCapacity();
    if (el.capacityForm.hidden) toast(state.capacityError, "error");
    return true;
  }
  return false;
}

function handleError(envelope) {
  const data = envelope.data ?? {};
  const message = String(envelope.result?.message ?? "error");
  const clientId = String(data.client_id ?? "");
  // typing and read are best effort: a refusal (say, typing outside the window) is no news.
  if (/^cmd-(typing|read)-/.test(clientId)) return;
  if (clientId.startsWith("cmd-") && commandRefused(clientId, message)) return;
  if (data.client_id) {
    const found = findByClientId(String(data.client_id), data.contact_id);
    if (found) {
      upsertMessage(found.contactId, {
        client_id: data.client_id,
        status: "failed",
        failure: {
          message,
          errcode: data.errcode,
          errmsg: data.errmsg,
          limit: data.limit,
          reopens_at: data.reopens_at,
        },
      });
      if (state.current === found.contactId) renderMessages();
      return;
    }
  }
  toast(message, "error");
}

/** A readable sentence for a refused reply: WeChat's own reason, or the bridge's. */
function failureText(msg) {
  const f = msg.failure ?? (typeof msg.error === "object" && msg.error ? msg.error : null);
  if (!f) return typeof msg.error === "string" && msg.error ? msg.error : "Not delivered";
  const hasCode = f.errcode !== undefined && f.errcode !== null && f.errcode !== -1;
  let text;
  if (f.errmsg && hasCode) text = `WeChat refused the reply: ${f.errmsg} (${f.errcode})`;
  else if (f.message) text = f.message;
  else if (f.errmsg) text = f.errmsg;
  else if (f.limit === "window") text = "Outside the 48-hour reply window";
  else if (f.limit === "quota") text = "Reply limit reached";
  else text = "Not delivered";
  if (f.reopens_at) text += ` You can reply again ${reopensText(Number(f.reopens_at))}.`;
  return text;
}

function reopensText(seconds) {
  const at = new Date(seconds * 1000);
  if (dayKey(seconds) === dayKey(nowS())) return `at ${timeFormat.format(at)}`;
  return `on ${dayFormat.format(at)} ${timeFormat.format(at)}`;
}

// ---------------------------------------------------------------------------------------------
// Replies

/** The envelope code of each kind of reply the console sends (SPEC's 1001-1004). */
const REPLY_CODES = { text: 1001, image: 1002, voice: 1003, video: 1004 };

function replyFrame(contactId, msg) {
  const m = msg.msg ?? {};
  const type = msg.msg_type ?? "text";
  return {
    data: {
      msg_type: type,
      contact_id: contactId,
      client_id: msg.client_id,
      msg: type === "text"
        ? { content: m.content }
        : { media_id: m.media_id, media_url: m.media_url },
    },
    result: { code: REPLY_CODES[type] ?? 1001, message: "common" },
  };
}

function sendReplyFrame(contactId, msg) {
  if (!send(replyFrame(contactId, msg))) return;
  // The bridge neither echoes nor acknowledges a message to another agent on the socket, only
  // refuses it (-1, which still turns it to failed): once written, it counts as sent.
  if (state.contacts.get(contactId)?.kind === "agent") {
    msg.status = "sent";
    msg.rev += 1;
  }
}

function sendReply(text) {
  const contactId = state.current;
  if (!contactId || contactId === SYSTEM_ID) return;
  const { msg } = upsertMessage(contactId, {
    client_id: newClientId(),
    direction: "out",
    msg_type: "text",
    msg: { content: text },
    status: "sending",
    local: true,
    send_time: nowS(),
    agent_id: userid,
  });
  sendReplyFrame(contactId, msg);
  const contact = ensureContact(contactId, {});
  contact.last_message = { msg_type: "text", preview: text, direction: "out" };
  contact.last_message_time = nowS();
  contact.touched = ++touchCounter;
  renderContacts();
  renderMessages({ toBottom: true });
}

function onComposerKeydown(event) {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  submitReply();
}

function submitReply() {
  const text = el.reply.value;
  if (!text.trim()) return;
  sendReply(text.replace(/\s+$/, ""));
  el.reply.value = "";
  autosize();
}

function autosize() {
  el.reply.style.height = "auto";
  el.reply.style.height = `${Math.min(el.reply.scrollHeight, 180)}px`;
}

function onComposerInput() {
  autosize();
  const now = Date.now();
  const open = ["open", "soon"].includes(windowOf(state.contacts.get(state.current)).state);
  if (
    open && state.current !== SYSTEM_ID && el.reply.value && now - lastTypingAt > TYPING_EVERY_MS
  ) {
    lastTypingAt = now;
    sendCommand("typing", { contact_id: state.current });
  }
}

// ---------------------------------------------------------------------------------------------
// Attachments: the file goes to POST upload (raw body, its type as Content-Type), then its
// media_id and media_url go out as an image, voice or video reply. The message shows from the
// moment the file is chosen: uploading (with progress), then sending and sent as a text does.

/** What POST upload takes (PROTOCOL.md), and the reply each type becomes. */
const UPLOAD_KINDS = {
  "image/jpeg": "image",
  "image/png": "image",
  "image/gif": "image",
  "audio/amr": "voice",
  "audio/mpeg": "voice",
  "video/mp4": "video",
};

/** Uploads run one at a time, so that the follower gets the files in the order chosen. */
let uploadChain = Promise.resolve();

function kindOf(contentType) {
  return UPLOAD_KINDS[contentType] ??
    (/^image\//.test(contentType)
      ? "image"
      : /^audio\//.test(contentType)
      ? "voice"
      : /^video\//.test(contentType)
      ? "video"
      : "file");
}

/** The file's type from its first bytes: a name (and so the browser's type) can lie. */
async function sniffType(file) {
  let head;
  try {
    head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  } catch {
    return null;
  }
  const ascii = (from, to) => String.fromCharCode(...head.subarray(from, to));
  if (head[0] === 0x89 && ascii(1, 4) === "PNG") return "image/png";
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "image/jpeg";
  if (ascii(0, 4) === "GIF8") return "image/gif";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "image/webp";
  if (ascii(0, 5) === "#!AMR") return "audio/amr";
  if (ascii(0, 3) === "ID3" || (head[0] === 0xff && (head[1] & 0xe0) === 0xe0)) {
    return "audio/mpeg";
  }
  if (ascii(4, 8) === "ftyp") return ascii(8, 11) === "M4A" ? "audio/mp4" : "video/mp4";
  return null;
}

/** The Content-Type to upload with: what the bytes are, else what the browser says. */
async function uploadTypeOf(file) {
  const sniffed = await sniffType(file);
  if (sniffed) return sniffed;
  // Bytes of no known kind under a name the bridge takes (a text file renamed .png): the
  // bridge would believe the name, so say only that they are bytes, and it refuses them.
  const claimed = String(file.type ?? "").toLowerCase();
  return !claimed || UPLOAD_KINDS[claimed] ? "application/octet-stream" : claimed;
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function canAttach() {
  return Boolean(state.current) && state.current !== SYSTEM_ID && !el.conversation.hidden &&
    !el.composer.hidden && !state.needsToken;
}

/** Sends each file as its own reply to the open conversation, in order. */
async function attachFiles(files) {
  const contactId = state.current;
  if (!canAttach() || files.length === 0) return;
  for (const file of files) {
    const contentType = await uploadTypeOf(file);
    const kind = kindOf(contentType);
    const { msg } = upsertMessage(contactId, {
      client_id: newClientId(),
      contact_id: contactId,
      direction: "out",
      msg_type: kind,
      msg: {},
      status: "uploading",
      local: true,
      send_time: nowS(),
      agent_id: userid,
    });
    msg.upload = {
      file,
      name: file.name || `${kind}`,
      size: file.size,
      contentType,
      progress: 0,
      started: false,
      canceled: false,
      retryable: false,
      xhr: null,
      view: null,
    };
    // A picture the browser can show is shown at once, from the file itself.
    if (kind === "image" && UPLOAD_KINDS[contentType]) msg.display = URL.createObjectURL(file);
    queueUpload(contactId, msg);
  }
  if (state.current === contactId) renderMessages({ toBottom: true });
}

function queueUpload(contactId, msg) {
  uploadChain = uploadChain.then(() => runUpload(contactId, msg)).catch((error) => {
    uploadFailed(contactId, msg, `Upload failed: ${error?.message ?? error}`, true);
  });
}

async function runUpload(contactId, msg) {
  const up = msg.upload;
  if (up.canceled) return;
  up.started = true;
  up.progress = 0;
  setUploadProgress(msg);
  let result;
  try {
    result = await postUpload(up, () => setUploadProgress(msg));
  } catch (error) {
    if (up.canceled) return;
    uploadFailed(contactId, msg, error.message, true);
    return;
  }
  up.xhr = null;
  if (up.canceled) return;
  if (result.status === 401) {
    uploadFailed(
      contactId,
      msg,
      "The bridge asked for an agent token: connect, then try again.",
      true,
    );
    needToken();
    return;
  }
  let body = null;
  try {
    body = JSON.parse(result.text);
  } catch {
    body = null;
  }
  if (result.status !== 201 && result.status !== 200) {
    const reason = body?.error ?? body?.result?.message ?? result.text.slice(0, 200).trim();
    const size = result.status === 413 ? ` (this file: ${formatSize(up.size)})` : "";
    uploadFailed(
      contactId,
      msg,
      `Upload refused (${result.status}): ${reason || "no reason given"}${size}`,
      result.status >= 500 || result.status === 429 || result.status === 408,
    );
    return;
  }
  if (typeof body?.media_id !== "string" || !safeUrl(body?.media_url)) {
    uploadFailed(
      contactId,
      msg,
      "Upload failed: the bridge's answer has no media_id or media_url",
      true,
    );
    return;
  }
  up.view = null;
  msg.msg_type = ["image", "voice", "video"].includes(body.type) ? body.type : msg.msg_type;
  msg.msg = { media_id: body.media_id, media_url: body.media_url };
  msg.status = "sending";
  msg.failure = undefined;
  msg.rev += 1;
  sendReplyFrame(contactId, msg);
  const contact = ensureContact(contactId, {});
  contact.last_message = {
    msg_type: msg.msg_type,
    preview: previewOf(msg.msg_type, msg.msg),
    direction: "out",
  };
  contact.last_message_time = nowS();
  contact.touched = ++touchCounter;
  renderContacts();
  if (state.current === contactId) renderMessages();
  showServerCopy(contactId, msg);
}

/** POSTs the file with an XMLHttpRequest, which (unlike fetch) reports upload progress. */
function postUpload(up, onProgress) {
  return new Promise((resolve, reject) => {
    const url = new URL(B + "/upload", location.origin);
    url.searchParams.set("userid", userid);
    if (account) url.searchParams.set("account", account);
    url.searchParams.set("filename", up.name);
    const xhr = new XMLHttpRequest();
    up.xhr = xhr;
    xhr.open("POST", url);
    xhr.setRequestHeader("Content-Type", up.contentType);
    xhr.setRequestHeader("Accept", "application/json");
    if (state.token) xhr.setRequestHeader("Authorization", `Bearer ${state.token}`);
    xhr.upload.onprogress = (event) => {
      if (!event.lengthComputable || event.total === 0) return;
      up.progress = event.loaded / event.total;
      onProgress();
    };
    xhr.onload = () => resolve({ status: xhr.status, text: String(xhr.responseText ?? "") });
    xhr.onerror = () =>
      reject(new Error("Upload failed: the bridge could not be reached. Check the connection."));
    xhr.onabort = () => reject(new Error("Upload cancelled"));
    xhr.send(up.file);
  });
}

/** Moves the progress bar and label in place: re-rendering would rebuild the preview. */
function setUploadProgress(msg) {
  const view = msg.upload?.view;
  if (!view) return;
  const percent = Math.round((msg.upload.progress ?? 0) * 100);
  view.bar.style.width = `${percent}%`;
  view.track.setAttribute("aria-valuenow", String(percent));
  view.label.textContent = uploadLabel(msg.upload);
}

function uploadLabel(up) {
  if (!up.started) return "Waiting to upload…";
  const percent = Math.round((up.progress ?? 0) * 100);
  return percent >= 100 ? "Finishing upload…" : `Uploading… ${percent}%`;
}

function uploadFailed(contactId, msg, text, retryable) {
  const up = msg.upload;
  if (!up || up.canceled || msg.status !== "uploading") return;
  up.xhr = null;
  up.view = null;
  up.retryable = retryable;
  msg.status = "failed";
  msg.failure = { message: text, upload: true };
  msg.rev += 1;
  if (state.current === contactId) renderMessages();
}

function retryUpload(contactId, msg) {
  const up = msg.upload;
  if (!up || msg.status !== "failed") return;
  up.started = false;
  up.progress = 0;
  msg.status = "uploading";
  msg.failure = undefined;
  msg.rev += 1;
  queueUpload(contactId, msg);
  if (state.current === contactId) renderMessages();
}

/** Cancels an upload, or takes away one that failed: it never reached the follower. */
function discardUpload(contactId, msg) {
  const up = msg.upload;
  if (!up || !["uploading", "failed"].includes(msg.status)) return;
  up.canceled = true;
  up.xhr?.abort();
  const c = conv(contactId);
  c.byKey.delete(msg.key);
  c.nodes.delete(msg.key);
  if (msg.client_id) c.byClient.delete(String(msg.client_id));
  if (msg.display) URL.revokeObjectURL(msg.display);
  if (state.current === contactId) renderMessages();
  if (state.current === contactId && !isNarrow()) el.reply.focus();
}

/** Once sent, a picture shows from media_url (what other tabs and the history show), swapped
 * in when the bridge's copy is loaded so the bubble does not blink. */
function showServerCopy(contactId, msg) {
  const local = msg.display;
  if (!local) return;
  const swap = () => {
    if (msg.display !== local) return;
    msg.display = undefined;
    msg.rev += 1;
    URL.revokeObjectURL(local);
    if (state.current === contactId) renderMessages();
  };
  const src = safeUrl(msg.msg?.media_url);
  if (!src || msg.msg_type !== "image") return swap();
  const probe = new Image();
  probe.src = src;
  probe.decode().then(swap, swap);
}

/** A file while it uploads (or after it failed): its preview or its name, and the progress. */
function uploadBody(msg) {
  const up = msg.upload;
  const parts = [];
  const preview = safeUrl(msg.display);
  if (preview && msg.status === "uploading") {
    parts.push(h("img", { class: "upload-preview", src: preview, alt: up.name }));
  } else {
    // A failed file is named, so that the agent knows which one it was (a thumbnail as icon).
    const ext = (up.name.match(/\.([a-z0-9]{1,5})$/i)?.[1] ?? up.contentType.split("/")[1] ?? "")
      .slice(0, 4).toUpperCase();
    parts.push(h(
      "div",
      { class: "file-chip" },
      preview
        ? h("img", { class: "file-icon file-thumb", src: preview, alt: "" })
        : h("span", { class: "file-icon", "aria-hidden": "true" }, ext || "FILE"),
      h(
        "span",
        { class: "file-text" },
        h("span", { class: "file-name" }, up.name),
        h("span", { class: "file-size" }, formatSize(up.size)),
      ),
    ));
  }
  if (msg.status === "uploading") {
    const percent = Math.round((up.progress ?? 0) * 100);
    const bar = h("span", { class: "upload-bar", style: `width: ${percent}%` });
    const track = h("div", {
      class: "upload-track",
      role: "progressbar",
      "aria-label": `Uploading ${up.name}`,
      "aria-valuemin": "0",
      "aria-valuemax": "100",
      "aria-valuenow": String(percent),
    }, bar);
    parts.push(track);
    up.view = { bar, track, label: null };
  }
  return parts;
}

function onAttachChange() {
  const files = [...(el.attachInput.files ?? [])];
  el.attachInput.value = "";
  attachFiles(files);
}

function onReplyPaste(event) {
  const data = event.clipboardData;
  if (!data || data.files.length === 0) return;
  // Text wins: office programs put a picture of the copied text next to the text itself.
  if (data.types.includes("text/plain") && data.getData("text/plain").trim() !== "") return;
  event.preventDefault();
  attachFiles([...data.files]);
}

let dragDepth = 0;

function dragHasFiles(event) {
  return [...(event.dataTransfer?.types ?? [])].includes("Files");
}

function showDropZone(show) {
  if (show) {
    const contact = ensureContactView(state.current);
    el.dropLabel.textContent = `Drop to send to ${contact.name || state.current}`;
  }
  el.dropZone.hidden = !show;
}

function initDragAndDrop() {
  el.conversation.addEventListener("dragenter", (event) => {
    if (!dragHasFiles(event) || !canAttach()) return;
    event.preventDefault();
    dragDepth += 1;
    showDropZone(true);
  });
  el.conversation.addEventListener("dragover", (event) => {
    if (!dragHasFiles(event) || !canAttach()) return;
    event.preventDefault();
    event.stopPropagation();
    event.dataTransfer.dropEffect = "copy";
  });
  el.conversation.addEventListener("dragleave", (event) => {
    if (!dragHasFiles(event)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) showDropZone(false);
  });
  el.conversation.addEventListener("drop", (event) => {
    if (!dragHasFiles(event)) return;
    event.preventDefault();
    event.stopPropagation();
    dragDepth = 0;
    showDropZone(false);
    attachFiles([...(event.dataTransfer?.files ?? [])]);
  });
  // Anywhere else, a dropped file must not replace the console with itself.
  document.addEventListener("dragover", (event) => {
    if (!dragHasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "none";
  });
  document.addEventListener("drop", (event) => {
    if (dragHasFiles(event)) event.preventDefault();
  });
}

// ---------------------------------------------------------------------------------------------
// Rendering: the contact list

function matchesFilter(c) {
  const filter = state.filter.toLowerCase();
  return !filter || String(c.name ?? "").toLowerCase().includes(filter) ||
    String(c.contact_id).toLowerCase().includes(filter);
}

function sortedContacts() {
  return [...state.contacts.values()]
    .filter((c) => matchesFilter(c) && !state.transferred.has(c.contact_id))
    .sort((a, b) =>
      (Number(b.last_message_time) || 0) - (Number(a.last_message_time) || 0) ||
      (b.touched ?? 0) - (a.touched ?? 0)
    );
}

function renderContacts() {
  const items = sortedContacts().map(contactItem);
  el.contactList.replaceChildren(...items);
  el.contactsEmpty.hidden = items.length > 0 || !state.contactsLoaded;
  el.contactsEmpty.textContent = state.filter
    ? "No conversation matches your search."
    : state.transferred.size > 0
    ? "No open conversations."
    : "No conversations yet. Followers who write to the account appear here.";

  el.waiting.hidden = state.waiting.length === 0;
  el.waitingCount.textContent = String(state.waiting.length);
  el.waitingList.replaceChildren(...state.waiting.map(waitingItem));

  const transferred = [...state.transferred.values()].filter(matchesFilter)
    .sort((a, b) => b.transferred_at - a.transferred_at);
  el.transferredSection.hidden = transferred.length === 0;
  el.transferredList.replaceChildren(...transferred.map(transferredItem));

  el.systemEntry.replaceChildren(systemItem());
  renderCapacity();
  renderTitle();
  // The header's window countdown stays in step with the list's.
  if (state.current) renderConversationHead();
}

function contactItem(contact) {
  const win = windowOf(contact);
  const unread = state.current === contact.contact_id && isViewing(contact.contact_id)
    ? 0
    : Number(contact.unread) || 0;
  const last = contact.last_message;
  const preview = last ? `${last.direction === "out" ? "You: " : ""}${last.preview ?? ""}` : "";
  const closed = contact.status === "closed";
  return h(
    "li",
    {},
    h(
      "button",
      {
        type: "button",
        class: `contact${state.current === contact.contact_id ? " active" : ""}${
          closed ? " closed" : ""
        }`,
        dataset: { contactId: contact.contact_id, status: contact.status ?? "open" },
        "aria-current": state.current === contact.contact_id ? "true" : null,
        onclick: () => openContact(contact.contact_id),
      },
      avatarEl(contact),
      h(
        "span",
        { class: "contact-main" },
        h(
          "span",
          { class: "contact-row" },
          h("span", { class: "contact-name" }, contact.name || contact.contact_id),
          h("span", { class: "contact-time" }, listTime(Number(contact.last_message_time))),
        ),
        h(
          "span",
          { class: "contact-row" },
          h("span", { class: "contact-preview" }, preview || "\u00a0"),
          unread > 0
            ? h("span", { class: "unread", "aria-label": `${unread} unread` }, String(unread))
            : null,
        ),
        h(
          "span",
          { class: "contact-row" },
          closed ? h("span", { class: "window-pill closed" }, "Conversation closed") : h(
            "span",
            { class: `window-pill ${win.state}`, title: "48-hour reply window" },
            win.label,
          ),
        ),
      ),
    ),
  );
}

/** A follower handed to another agent in this session: its history stays readable here. */
function transferredItem(entry) {
  const current = state.current === entry.contact_id;
  return h(
    "li",
    {},
    h(
      "button",
      {
        type: "button",
        class: `contact transferred${current ? " active" : ""}`,
        dataset: { contactId: entry.contact_id, status: "transferred" },
        "aria-current": current ? "true" : null,
        onclick: () => openContact(entry.contact_id),
      },
      avatarEl(entry),
      h(
        "span",
        { class: "contact-main" },
        h(
          "span",
          { class: "contact-row" },
          h("span", { class: "contact-name" }, entry.name || entry.contact_id),
          h("span", { class: "contact-time" }, listTime(Number(entry.transferred_at))),
        ),
        h(
          "span",
          { class: "contact-row" },
          h("span", { class: "window-pill closed" }, `Transferred to ${entry.transferred_to}`),
        ),
      ),
    ),
  );
}

function waitingItem(entry) {
  const since = Number(entry.since) || 0;
  return h(
    "li",
    {},
    h(
      "div",
      { class: "contact waiting-entry", dataset: { contactId: entry.contact_id } },
      avatarEl(entry),
      h(
        "span",
        { class: "contact-main" },
        h(
          "span",
          { class: "contact-row" },
          h("span", { class: "contact-name" }, entry.name || entry.contact_id),
          h(
            "span",
            { class: "contact-time" },
            since ? `waiting ${formatDuration(nowS() - since)}` : "",
          ),
        ),
        h(
          "span",
          { class: "contact-row" },
          h("span", { class: "contact-preview" }, "Waiting for a free agent"),
        ),
      ),
    ),
  );
}

function systemItem() {
  const last = state.system.items.at(-1);
  const unseen = state.current === SYSTEM_ID ? 0 : state.system.unseen;
  return h(
    "li",
    {},
    h(
      "button",
      {
        type: "button",
        class: `contact system-entry${state.current === SYSTEM_ID ? " active" : ""}`,
        dataset: { contactId: SYSTEM_ID },
        onclick: () => openContact(SYSTEM_ID),
      },
      avatarEl({ contact_id: SYSTEM_ID }),
      h(
        "span",
        { class: "contact-main" },
        h(
          "span",
          { class: "contact-row" },
          h("span", { class: "contact-name" }, "System messages"),
          h("span", { class: "contact-time" }, last ? listTime(Number(last.send_time)) : ""),
        ),
        h(
          "span",
          { class: "contact-row" },
          h(
            "span",
            { class: "contact-preview" },
            last ? previewOf("system", last.msg) : "Assignments and events",
          ),
          unseen > 0 ? h("span", { class: "unread quiet" }, String(unseen)) : null,
        ),
      ),
    ),
  );
}

function renderTitle() {
  let total = 0;
  for (const c of state.contacts.values()) {
    if (!(state.current === c.contact_id && isViewing(c.contact_id))) {
      total += Number(c.unread) || 0;
    }
  }
  document.title = total > 0 ? `(${total}) Support console` : "Support console";
}

// ---------------------------------------------------------------------------------------------
// Rendering: the conversation

function openContact(contactId) {
  // An unanswered form stays with its conversation (its answer still lands); an idle one closes.
  if (state.action && state.action.contactId !== contactId && !state.action.busy) {
    state.action = null;
  }
  if (state.renaming && state.renaming.contactId !== contactId) state.renaming = null;
  state.current = contactId;
  // On a phone the conversation is a screen of its own: the back gesture returns to the list.
  const url = `${location.pathname}${location.search}#${encodeURIComponent(contactId)}`;
  if (isNarrow() && !history.state?.conversation) {
    history.pushState({ conversation: contactId }, "", url);
  } else {
    history.replaceState(history.state?.conversation ? { conversation: contactId } : null, "", url);
  }
  el.app.classList.add("show-conversation");
  if (contactId === SYSTEM_ID) {
    state.system.unseen = 0;
  } else {
    markRead(contactId);
    const c = conv(contactId);
    if (!c.loaded && !c.loading) loadHistory(contactId);
  }
  renderContacts();
  renderConversation({ toBottom: true });
  if (contactId !== SYSTEM_ID && !isNarrow() && !el.composer.hidden) el.reply.focus();
}

function isNarrow() {
  return matchMedia("(max-width: 760px)").matches;
}

function closeConversationView() {
  el.app.classList.remove("show-conversation");
}

function onBack() {
  if (history.state?.conversation) history.back(); // popstate closes the view
  else closeConversationView();
}

function renderConversation(options) {
  const open = Boolean(state.current);
  el.conversation.hidden = !open;
  el.conversationEmpty.hidden = open;
  if (!open) return;
  renderConversationHead();
  renderAction();
  renderMessages(options);
}

function renderConversationHead() {
  const id = state.current;
  if (!id) return;
  const isSystem = id === SYSTEM_ID;
  const contact = isSystem
    ? { contact_id: SYSTEM_ID, name: "System messages" }
    : ensureContactView(id);
  fillAvatar(el.convAvatar, contact);
  el.convName.textContent = contact.name || id;
  const renamable = canRename(id);
  const editing = renamable && state.renaming?.contactId === id;
  // While the name is edited, the OpenID under it says who is being named.
  const named = editing || (contact.name && contact.name !== id);
  el.convSub.textContent = isSystem
    ? "Assignments, events and delivery notices"
    : contact.kind === "agent"
    ? "Another agent: messages go to their console"
    : named
    ? id
    : "WeChat follower";
  el.convSub.title = !isSystem && contact.kind !== "agent" && named ? "WeChat OpenID" : "";
  el.convSub.classList.toggle("plain", isSystem || contact.kind === "agent" || !named);
  renderRename(renamable, editing);
  const transferred = state.transferred.get(id);
  // Ours to transfer or end: a follower we serve, not one we handed over, closed or not yet got.
  const ours = !isSystem && !transferred && contact.kind !== "agent" &&
    state.contacts.has(id) && contact.status !== "closed" && contact.status !== "waiting";
  el.convActions.hidden = !ours;
  el.composer.hidden = isSystem || Boolean(transferred);
  el.composerHint.hidden = el.composer.hidden;
  const status = transferred ? "transferred" : contact.status ?? "open";
  el.conversation.dataset.status = isSystem ? "system" : status;
  if (isSystem) {
    el.convWindow.hidden = true;
    el.windowNotice.hidden = true;
    return;
  }
  const win = windowOf(contact);
  const closed = contact.status === "closed";
  el.convWindow.hidden = false;
  el.convWindow.className = `window-pill ${transferred || closed ? "closed" : win.state}`;
  el.convWindow.textContent = transferred
    ? "Transferred"
    : closed
    ? "Conversation closed"
    : win.state === "unknown"
    ? ""
    : win.label;
  el.convWindow.title = transferred
    ? `Now served by ${transferred.transferred_to}`
    : "WeChat lets the account reply for 48 hours after the follower's last message";
  if (transferred) {
    el.windowNotice.hidden = false;
    el.windowNotice.className = "window-notice info";
    el.windowNotice.textContent = `Transferred to ${transferred.transferred_to}. ${
      contact.name || id
    } is now in their console; this conversation is read-only here.`;
  } else if (win.state === "closed") {
    el.windowNotice.hidden = false;
    el.windowNotice.className = "window-notice closed";
    el.windowNotice.textContent =
      `The 48-hour reply window has closed. WeChat will refuse replies until ${
        contact.name || id
      } writes again.`;
  } else if (win.state === "soon") {
    el.windowNotice.hidden = false;
    el.windowNotice.className = "window-notice soon";
    el.windowNotice.textContent = `The reply window closes in ${formatDuration(win.left)}.`;
  } else if (closed) {
    el.windowNotice.hidden = false;
    el.windowNotice.className = "window-notice info";
    el.windowNotice.textContent = `Conversation ended. A new message from ${
      contact.name || id
    } opens it again.`;
  } else {
    el.windowNotice.hidden = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Transfer and close: an inline form under the conversation header

function openAction(kind) {
  const id = state.current;
  if (!id || id === SYSTEM_ID) return;
  const a = state.action;
  if (a && a.contactId === id && a.kind === kind) {
    if (!a.busy) cancelAction();
    return;
  }
  if (a?.busy) return;
  state.action = { kind, contactId: id, busy: false, error: "", clientId: "", timer: 0 };
  if (kind === "transfer") el.transferTo.value = "";
  renderAction();
  if (kind === "transfer") el.transferTo.focus();
  else el.closeCancel.focus();
}

function cancelAction() {
  if (!state.action) return;
  clearTimeout(state.action.timer);
  const kind = state.action.kind;
  state.action = null;
  renderAction();
  (kind === "transfer" ? el.transferButton : el.closeButton).focus();
}

function renderAction() {
  const a = state.action && state.action.contactId === state.current ? state.action : null;
  const kind = el.convActions.hidden && !a?.busy ? null : a?.kind ?? null;
  el.transferForm.hidden = kind !== "transfer";
  el.closeConfirm.hidden = kind !== "close";
  el.transferButton.setAttribute("aria-expanded", String(kind === "transfer"));
  el.closeButton.setAttribute("aria-expanded", String(kind === "close"));
  el.transferButton.classList.toggle("active", kind === "transfer");
  el.closeButton.classList.toggle("active", kind === "close");
  if (!a || !kind) return;
  const contact = ensureContactView(a.contactId);
  const name = contact.name || a.contactId;
  const [nameEl, submit, error, busyText, idleText] = kind === "transfer"
    ? [el.transferName, el.transferSubmit, el.transferError, "Transferring…", "Transfer"]
    : [el.closeName, el.closeSubmit, el.closeError, "Ending…", "End conversation"];
  nameEl.textContent = name;
  submit.disabled = a.busy;
  submit.textContent = a.busy ? busyText : idleText;
  el.transferTo.disabled = a.busy;
  el.transferTo.setAttribute("aria-invalid", String(Boolean(a.error) && kind === "transfer"));
  error.hidden = !a.error;
  error.textContent = a.error;
}

function submitTransfer() {
  const a = state.action;
  if (!a || a.kind !== "transfer" || a.busy) return;
  const to = el.transferTo.value.trim();
  if (!to) {
    a.error = "Enter the id of the agent who takes over.";
    renderAction();
    el.transferTo.focus();
    return;
  }
  runAction(a, "transfer", { contact_id: a.contactId, msg: { to } });
}

function submitClose() {
  const a = state.action;
  if (!a || a.kind !== "close" || a.busy) return;
  runAction(a, "close", { contact_id: a.contactId });
}

/** Sends the command; the bridge answers with a 102 (done) or a -1 (refused), never a 0. */
function runAction(a, type, fields) {
  const clientId = sendCommand(type, fields);
  if (!clientId) {
    a.error = "Not connected to the bridge. Try again once the connection is back.";
    renderAction();
    return;
  }
  a.busy = true;
  a.error = "";
  a.clientId = clientId;
  a.timer = setTimeout(() => {
    if (state.action !== a || !a.busy) return;
    a.busy = false;
    a.error = "No answer from the bridge yet. Check the connection and try again.";
    renderAction();
  }, COMMAND_PATIENCE_MS);
  renderAction();
}

// ---------------------------------------------------------------------------------------------
// Rename: the agent's name for a follower (WeChat gives none, only the OpenID). The header's
// name turns into a field; a saved name shows at once, and GET contacts confirms it (the bridge
// answers a rename only when it refuses it).

/** A follower this agent serves (or served last), so the bridge lets it name them. */
function canRename(id) {
  if (!id || id === SYSTEM_ID || state.transferred.has(id)) return false;
  const contact = state.contacts.get(id);
  return Boolean(contact) && contact.kind !== "agent" && contact.status !== "waiting";
}

/** A name the bridge gave (GET contacts, an envelope's data.name), unless a rename of ours is
 * on its way: then the bridge either shows ours (confirmed) or is behind. */
function nameFromBridge(contact, name) {
  const pending = state.renames.get(contact.contact_id);
  if (!pending) {
    if (name) contact.name = name;
    return;
  }
  if (name === pending.name) {
    clearTimeout(pending.timer);
    state.renames.delete(contact.contact_id);
  }
  contact.name = pending.name;
}

function renderRename(renamable, editing) {
  const r = editing ? state.renaming : null;
  el.renameButton.hidden = !renamable;
  el.renameButton.setAttribute("aria-expanded", String(editing));
  el.convHead.classList.toggle("renaming", editing);
  el.convNameRow.hidden = editing;
  el.renameForm.hidden = !editing;
  el.renameError.hidden = !r?.error;
  el.renameError.textContent = r?.error ?? "";
  el.renameInput.setAttribute("aria-invalid", String(Boolean(r?.error)));
  el.renameSave.disabled = el.renameInput.value.trim() === "";
}

function openRename() {
  const id = state.current;
  if (!canRename(id)) return;
  if (state.renaming?.contactId !== id) {
    const contact = state.contacts.get(id);
    state.renaming = { contactId: id, error: "" };
    // An OpenID is no name to start from: the field starts empty until the follower has one.
    el.renameInput.value = contact.name && contact.name !== id ? contact.name : "";
    renderConversationHead();
  }
  el.renameInput.focus();
  el.renameInput.select();
}

function cancelRename() {
  if (!state.renaming) return;
  state.renaming = null;
  renderConversationHead();
  if (!el.renameButton.hidden) el.renameButton.focus();
}

function renameProblem(text) {
  state.renaming.error = text;
  renderConversationHead();
  el.renameInput.focus();
}

function submitRename() {
  const r = state.renaming;
  if (!r || r.contactId !== state.current) return;
  const id = r.contactId;
  const contact = state.contacts.get(id);
  const name = el.renameInput.value.trim();
  if (!contact || !canRename(id)) return cancelRename();
  if (name === "") return renameProblem("Enter a name (1-64 characters).");
  if (name.length > NAME_MAX) {
    return renameProblem(`A name has at most ${NAME_MAX} characters (this one: ${name.length}).`);
  }
  if (name === contact.name) return cancelRename();
  const clientId = sendCommand("rename", { contact_id: id, msg: { name } });
  if (!clientId) {
    return renameProblem("Not connected to the bridge. Try again once the connection is back.");
  }
  const before = state.renames.get(id);
  if (before) clearTimeout(before.timer);
  const pending = {
    clientId,
    name,
    // The last name the bridge confirmed, to go back to if it refuses this one.
    previous: before ? before.previous : contact.name,
    tries: 0,
    timer: 0,
    deadline: Date.now() + COMMAND_PATIENCE_MS,
  };
  state.renames.set(id, pending);
  contact.name = name;
  state.renaming = null;
  renderContacts();
  renderConversationHead();
  el.renameButton.focus();
  confirmRename(id, pending);
}

/** Re-reads GET contacts until it shows the new name, the bridge refuses it, or time is up. */
function confirmRename(id, pending) {
  clearTimeout(pending.timer);
  const delay = Math.min(2000, 150 * 2 ** pending.tries);
  pending.timer = setTimeout(async () => {
    if (state.renames.get(id) !== pending) return;
    pending.tries += 1;
    try {
      await loadContacts();
    } catch (error) {
      if (error instanceof AuthError) return;
    }
    if (state.renames.get(id) !== pending) return; // confirmed, refused or replaced
    if (Date.now() < pending.deadline) confirmRename(id, pending);
    else {
      renameFailed(
        id,
        pending,
        "The bridge did not confirm the new name. Check the connection and try again.",
      );
    }
  }, delay);
}

function renameRefused(clientId, message) {
  for (const [id, pending] of state.renames) {
    if (pending.clientId === clientId) {
      renameFailed(id, pending, `Could not rename: ${message}`);
      return;
    }
  }
  // A rename already replaced by a newer one: the newer one's answer counts.
}

/** The name goes back; the field opens again with the refused name and the reason. */
function renameFailed(id, pending, text) {
  clearTimeout(pending.timer);
  state.renames.delete(id);
  const contact = state.contacts.get(id);
  if (contact && contact.name === pending.name) contact.name = pending.previous;
  if (state.current === id && canRename(id)) {
    if (state.renaming?.contactId !== id) el.renameInput.value = pending.name;
    state.renaming = { contactId: id, error: text };
    renderContacts();
    renderConversationHead();
    // Take the focus only from where the rename left it, not from a reply being typed.
    const active = document.activeElement;
    if (!active || active === document.body || active === el.renameButton) {
      el.renameInput.focus();
      el.renameInput.select();
    }
  } else {
    renderContacts();
    toast(`${text} (${pending.name})`, "error");
  }
  scheduleContactsRefresh(300);
}

// ---------------------------------------------------------------------------------------------
// Capacity: how many open conversations the bridge may give this agent

function openCount() {
  let n = 0;
  for (const c of state.contacts.values()) {
    if (c.kind !== "agent" && c.status === "open" && !state.transferred.has(c.contact_id)) n++;
  }
  return n;
}

function renderCapacity() {
  const max = state.capacity;
  el.capacityValue.textContent = typeof max === "number" ? String(max) : "no limit";
  el.capacityButton.dataset.max = typeof max === "number" ? String(max) : "";
  el.capacityButton.classList.toggle("full", typeof max === "number" && openCount() >= max);
  const open = openCount();
  el.capacityOpen.textContent = `You have ${open} open now.`;
  el.capacityError.hidden = !state.capacityError;
  el.capacityError.textContent = state.capacityError;
}

function toggleCapacityForm(show = el.capacityForm.hidden) {
  el.capacityForm.hidden = !show;
  el.capacityButton.setAttribute("aria-expanded", String(show));
  if (show) {
    state.capacityError = "";
    el.capacityInput.value = typeof state.capacity === "number" ? String(state.capacity) : "";
    renderCapacity();
    el.capacityInput.focus();
    el.capacityInput.select();
  }
}

function submitCapacity() {
  const raw = el.capacityInput.value.trim();
  // A number field gives "" for text it cannot read: validity tells that apart from empty.
  const n = Number(raw);
  if (el.capacityInput.validity.badInput || (raw !== "" && !(Number.isInteger(n) && n >= 0))) {
    state.capacityError = "Enter a whole number (0 or more), or leave it empty for no limit.";
    renderCapacity();
    el.capacityInput.focus();
    return;
  }
  state.capacity = raw === "" ? null : n;
  state.capacityError = "";
  writeCapacity(state.capacity);
  // Offline, it goes with the next connection (see ws.onopen).
  sendCapacity();
  toggleCapacityForm(false);
  renderCapacity();
  el.capacityButton.focus();
}

function sendCapacity() {
  if (state.capacity === undefined) return;
  sendCommand("capacity", { msg: { max: state.capacity } });
}

/** The contact as the list knows it, or a stand-in for a follower not listed (yet). */
function ensureContactView(id) {
  return state.transferred.get(id) ?? state.contacts.get(id) ??
    state.waiting.find((w) => w.contact_id === id) ?? { contact_id: id, name: id };
}

function compareMessages(a, b) {
  return (Number(a.send_time) || 0) - (Number(b.send_time) || 0) || a.order - b.order;
}

function renderMessages({ toBottom = false } = {}) {
  const id = state.current;
  if (!id) return;
  const box = el.messages;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  const nodes = [];
  let list;
  let c = null;
  if (id === SYSTEM_ID) {
    list = state.system.items.map((data, i) => ({
      ...data,
      direction: "system",
      key: `s${i}`,
      order: i,
      rev: 0,
    }));
  } else {
    c = conv(id);
    list = [...c.byKey.values()].sort(compareMessages);
    if (c.loading) nodes.push(h("div", { class: "history-edge" }, "Loading…"));
    else if (c.error) {
      nodes.push(h(
        "div",
        { class: "history-edge error" },
        c.error,
        " ",
        h(
          "button",
          { type: "button", class: "link-button", onclick: () => loadHistory(id) },
          "Try again",
        ),
      ));
    } else if (c.nextBefore) {
      nodes.push(h(
        "div",
        { class: "history-edge" },
        h(
          "button",
          {
            type: "button",
            class: "ghost-button",
            onclick: () => loadHistory(id, { older: true }),
          },
          "Load earlier messages",
        ),
      ));
    } else if (c.loaded && list.length > 0) {
      nodes.push(h("div", { class: "history-edge" }, "Start of the conversation"));
    }
  }
  if (list.length === 0 && !(c?.loading)) {
    nodes.push(
      h(
        "div",
        { class: "history-edge" },
        id === SYSTEM_ID ? "No system messages yet." : "No messages yet.",
      ),
    );
  }
  let lastDay = "";
  for (const msg of list) {
    const day = dayKey(Number(msg.send_time) || nowS());
    if (day !== lastDay) {
      nodes.push(
        h(
          "div",
          { class: "day", role: "separator" },
          h("span", {}, dayLabel(Number(msg.send_time) || nowS())),
        ),
      );
      lastDay = day;
    }
    nodes.push(messageNode(c, msg));
  }
  // replaceChildren moves cached nodes synchronously, so a playing <audio> keeps playing.
  box.replaceChildren(...nodes);
  if (toBottom || nearBottom) box.scrollTop = box.scrollHeight;
}

function messageNode(c, msg) {
  const cached = c?.nodes.get(msg.key);
  if (cached && cached.rev === msg.rev) return cached.node;
  const node = buildMessage(msg);
  c?.nodes.set(msg.key, { rev: msg.rev, node });
  return node;
}

function buildMessage(msg) {
  const time = h("time", {
    datetime: new Date((Number(msg.send_time) || nowS()) * 1000).toISOString(),
  }, timeFormat.format(new Date((Number(msg.send_time) || nowS()) * 1000)));
  if (msg.direction === "system" || msg.msg_type === "system") return systemNote(msg, time);
  const out = msg.direction === "out";
  const status = out ? msg.status ?? "sent" : "";
  const meta = h("div", { class: "meta" }, time);
  const uploading = out && status === "uploading" && msg.upload;
  const uploadFailedHere = out && status === "failed" && msg.failure?.upload && msg.upload;
  if (out) {
    if (uploading) {
      const label = h("span", { class: "status sending" }, uploadLabel(msg.upload));
      meta.append(
        label,
        h("button", {
          type: "button",
          class: "link-button meta-action",
          onclick: () => discardUpload(msg.contact_id, msg),
        }, "Cancel"),
      );
    } else if (uploadFailedHere) {
      meta.append(h("span", { class: "status failed" }, "Not sent"));
    } else if (status === "sending") {
      meta.append(
        h(
          "span",
          { class: "status sending" },
          conn.opened ? "Sending…" : "Waiting for connection…",
        ),
      );
    } else if (status === "failed") {
      meta.append(h("span", { class: "status failed" }, "Not delivered"));
    } else {
      meta.append(h("span", { class: "status sent" }, "Sent"));
    }
    if (msg.agent_id && msg.agent_id !== userid) {
      meta.prepend(h("span", { class: "by" }, `${msg.agent_id} · `));
    }
  }
  const node = h(
    "div",
    {
      class: `msg ${out ? "out" : "in"} type-${msg.msg_type ?? "unknown"}`,
      dataset: {
        id: msg.id ?? "",
        clientId: msg.client_id ?? "",
        status,
        msgType: msg.msg_type ?? "",
      },
    },
    h(
      "div",
      { class: "bubble" },
      uploading || uploadFailedHere ? uploadBody(msg) : messageBody(msg),
    ),
    meta,
  );
  if (uploading) msg.upload.view.label = meta.querySelector(".status");
  if (uploadFailedHere) {
    node.append(h(
      "div",
      { class: "failure", role: "alert" },
      failureText(msg),
      " ",
      msg.upload.retryable
        ? h("button", {
          type: "button",
          class: "link-button",
          onclick: () => retryUpload(msg.contact_id, msg),
        }, "Try again")
        : null,
      msg.upload.retryable ? " · " : null,
      h("button", {
        type: "button",
        class: "link-button",
        onclick: () => discardUpload(msg.contact_id, msg),
      }, "Remove"),
    ));
  } else if (out && status === "failed") {
    node.append(h("div", { class: "failure", role: "note" }, failureText(msg)));
  }
  return node;
}

function systemNote(msg, time) {
  const m = msg.msg ?? {};
  const text = String(m.text ?? m.event ?? "System message");
  const node = h(
    "div",
    { class: "msg note", dataset: { event: m.event ?? "" } },
    h("span", { class: "note-text" }, text),
    " ",
    time,
  );
  if (state.current === SYSTEM_ID && m.follower_id && m.follower_id !== state.current) {
    node.append(
      " ",
      h("button", {
        type: "button",
        class: "link-button",
        onclick: () => openContact(String(m.follower_id)),
      }, "Open conversation"),
    );
  }
  return node;
}

function messageBody(msg) {
  const m = msg.msg ?? {};
  const parts = [];
  switch (msg.msg_type) {
    case "text":
      parts.push(h("div", { class: "text" }, linkify(String(m.content ?? ""))));
      break;
    case "image": {
      const src = safeUrl(msg.display) ?? safeUrl(m.media_path) ?? safeUrl(m.media_url) ??
        safeUrl(m.pic_url);
      if (src) {
        const img = h("img", { src, alt: "Image", loading: "lazy", decoding: "async" });
        img.addEventListener(
          "error",
          () => img.replaceWith(mediaError("The image could not be loaded.")),
          { once: true },
        );
        parts.push(
          h("a", { class: "media image", href: src, target: "_blank", rel: "noopener" }, img),
        );
      } else if (!m.error) parts.push(mediaError("Image without a file."));
      break;
    }
    case "voice": {
      const src = safeUrl(m.media_path) ?? safeUrl(m.media_url);
      if (src) {
        const audio = h("audio", {
          class: "media voice",
          controls: true,
          preload: "metadata",
          src,
        });
        // Browsers play MP3 but not AMR, which WeChat takes: the file stays a click away.
        audio.addEventListener("error", () => audio.replaceWith(mediaFallback(src, "voice")), {
          once: true,
        });
        parts.push(audio);
      }
      if (m.recognition) parts.push(h("div", { class: "recognition" }, `“${m.recognition}”`));
      if (!src && !m.error) parts.push(mediaError("Voice message without a file."));
      break;
    }
    case "video":
    case "shortvideo": {
      const src = safeUrl(m.media_path) ?? safeUrl(m.media_url);
      const poster = safeUrl(m.thumb_path);
      if (src) {
        const video = h("video", {
          class: "media video",
          controls: true,
          preload: "metadata",
          src,
          poster,
          playsinline: true,
        });
        video.addEventListener("error", () => video.replaceWith(mediaFallback(src, "video")), {
          once: true,
        });
        parts.push(video);
      } else if (!m.error) parts.push(mediaError("Video without a file."));
      if (m.title) parts.push(h("div", { class: "card-title" }, m.title));
      break;
    }
    case "location": {
      const lat = Number(m.latitude);
      const lon = Number(m.longitude);
      const map = Number.isFinite(lat) && Number.isFinite(lon)
        ? `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=${
          Number(m.scale) || 15
        }/${lat}/${lon}`
        : null;
      parts.push(h(
        "div",
        { class: "card location" },
        h("div", { class: "card-kicker" }, "Location"),
        h("div", { class: "card-title" }, m.label || "Shared location"),
        Number.isFinite(lat) && Number.isFinite(lon)
          ? h("div", { class: "card-sub" }, `${lat.toFixed(5)}, ${lon.toFixed(5)}`)
          : null,
        map
          ? h("a", { href: map, target: "_blank", rel: "noopener noreferrer" }, "Open map")
          : null,
      ));
      break;
    }
    case "link":
    case "news": {
      const href = safeUrl(m.url);
      const pic = safeUrl(m.picurl);
      parts.push(h(
        "div",
        { class: "card link" },
        pic ? h("img", { class: "card-pic", src: pic, alt: "", loading: "lazy" }) : null,
        h("div", { class: "card-kicker" }, msg.msg_type === "news" ? "Article" : "Link"),
        href
          ? h(
            "a",
            { class: "card-title", href, target: "_blank", rel: "noopener noreferrer" },
            m.title || href,
          )
          : h("div", { class: "card-title" }, m.title || "Untitled link"),
        m.description ? h("div", { class: "card-sub" }, m.description) : null,
        href ? h("div", { class: "card-url" }, new URL(href).host) : null,
      ));
      break;
    }
    case "miniprogrampage":
      parts.push(h(
        "div",
        { class: "card" },
        h("div", { class: "card-kicker" }, "Mini program"),
        h("div", { class: "card-title" }, m.title || m.pagepath || "Mini program page"),
      ));
      break;
    default:
      parts.push(
        h(
          "div",
          { class: "text muted" },
          `Unsupported message (${msg.msg_type ?? "unknown type"})`,
        ),
      );
      if (m.content) parts.push(h("div", { class: "text" }, String(m.content)));
  }
  if (m.error) {
    parts.push(
      mediaError(
        `Media unavailable: ${typeof m.error === "string" ? m.error : JSON.stringify(m.error)}`,
      ),
    );
  }
  if (m.format && (msg.msg_type === "voice")) {
    parts.push(h("div", { class: "media-format" }, String(m.format).toUpperCase()));
  }
  return parts;
}

function mediaError(text) {
  return h("div", { class: "media-error" }, text);
}

/** A voice or video file this browser cannot play: a link to the file instead of a player. */
function mediaFallback(src, kind) {
  const ext = (new URL(src).pathname.match(/\.([a-z0-9]{1,5})$/i)?.[1] ?? "").toUpperCase();
  return h(
    "a",
    { class: "media-fallback", href: src, target: "_blank", rel: "noopener", download: "" },
    h("span", { class: "file-icon", "aria-hidden": "true" }, ext || (kind === "voice" ? "♪" : "▶")),
    h(
      "span",
      { class: "file-text" },
      h("span", { class: "file-name" }, kind === "voice" ? "Voice message" : "Video"),
      h("span", { class: "file-size" }, "This browser cannot play it: open the file"),
    ),
  );
}

/** Text with http(s) links made clickable, built as nodes (never innerHTML). */
function linkify(text) {
  const parts = [];
  const pattern = /https?:\/\/[^\s<>"'，。）)]+/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    const href = safeUrl(match[0]);
    if (!href) continue;
    parts.push(text.slice(last, match.index));
    parts.push(h("a", { href, target: "_blank", rel: "noopener noreferrer" }, match[0]));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Token and sign-in

function needToken() {
  if (state.needsToken) return;
  state.needsToken = true;
  abandonSocket();
  clearTimeout(conn.retryTimer);
  setConn("token");
  el.tokenReason.textContent = state.token
    ? "The saved token was refused (expired, or for another agent). Paste a new one."
    : "This server requires an agent token.";
  el.tokenAgent.textContent = userid;
  el.tokenInput.value = "";
  el.tokenPanel.hidden = false;
  el.panes.hidden = true;
  el.tokenInput.focus();
}

async function start() {
  el.panes.hidden = false;
  el.tokenPanel.hidden = true;
  el.tokenButton.hidden = !state.token;
  try {
    await loadContacts();
  } catch (error) {
    if (error instanceof AuthError) return;
    toast(`Could not load conversations: ${error.message}`, "error");
  }
  connect();
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (wanted && !state.current) openContact(wanted);
}

function init() {
  if (!userid) {
    el.signin.hidden = false;
    setConn("idle");
    el.connLabel.textContent = "Not signed in";
    el.signinForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = String(new FormData(el.signinForm).get("userid") ?? "").trim();
      if (value) location.search = `?userid=${encodeURIComponent(value)}`;
    });
    return;
  }
  el.agent.hidden = false;
  el.agentId.textContent = userid;

  el.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = el.tokenInput.value.trim();
    if (!token) return;
    state.token = token;
    writeToken(token);
    state.needsToken = false;
    start();
  });
  el.tokenForget.addEventListener("click", () => {
    state.token = "";
    writeToken("");
    el.tokenInput.value = "";
    el.tokenReason.textContent = "Token forgotten. Paste a token to connect again.";
  });
  el.tokenButton.addEventListener("click", () => {
    state.needsToken = false;
    needToken();
    el.tokenReason.textContent = "Replace or forget the token this browser keeps for you.";
  });

  el.filter.addEventListener("input", () => {
    state.filter = el.filter.value.trim();
    renderContacts();
  });
  el.back.addEventListener("click", onBack);
  addEventListener("popstate", (event) => {
    if (!event.state?.conversation) closeConversationView();
  });
  el.reply.addEventListener("keydown", onComposerKeydown);
  el.reply.addEventListener("input", onComposerInput);
  el.reply.addEventListener("paste", onReplyPaste);
  el.attachButton.addEventListener("click", () => el.attachInput.click());
  el.attachInput.addEventListener("change", onAttachChange);
  initDragAndDrop();
  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    submitReply();
  });
  el.connRetry.addEventListener("click", reconnectNow);

  el.renameButton.addEventListener("click", openRename);
  el.renameForm.addEventListener("submit", (event) => {
    event.preventDefault();
    submitRename();
  });
  el.renameInput.addEventListener("keydown", (event) => {
    // Enter also confirms a Chinese input method's candidate: that Enter is not ours.
    if (event.isComposing || event.keyCode === 229) return;
    if (event.key === "Enter") {
      // Handled here, not by the form: with Save disabled (no name) Enter would do nothing.
      event.preventDefault();
      submitRename();
    }
  });
  el.renameForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.isComposing) {
      event.preventDefault();
      cancelRename();
    }
  });
  el.renameInput.addEventListener("input", () => {
    if (state.renaming) state.renaming.error = "";
    renderConversationHead();
  });
  el.renameCancel.addEventListener("click", cancelRename);

  el.transferButton.addEventListener("click", () => openAction("transfer"));
  el.closeButton.addEventListener("click", () => openAction("close"));
  el.transferForm.addEventListener("submit", (event) => {
    event.preventDefault();
    submitTransfer();
  });
  el.transferTo.addEventListener("input", () => {
    if (state.action?.error && !state.action.busy) {
      state.action.error = "";
      renderAction();
    }
  });
  el.transferCancel.addEventListener("click", cancelAction);
  el.closeSubmit.addEventListener("click", submitClose);
  el.closeCancel.addEventListener("click", cancelAction);
  for (const panel of [el.transferForm, el.closeConfirm]) {
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !state.action?.busy) {
        event.preventDefault();
        cancelAction();
      }
    });
  }

  el.capacity.hidden = false;
  renderCapacity();
  el.capacityButton.addEventListener("click", () => toggleCapacityForm());
  el.capacityCancel.addEventListener("click", () => {
    toggleCapacityForm(false);
    el.capacityButton.focus();
  });
  el.capacityInput.addEventListener("input", () => {
    if (!state.capacityError) return;
    state.capacityError = "";
    renderCapacity();
  });
  el.capacityForm.addEventListener("submit", (event) => {
    event.preventDefault();
    submitCapacity();
  });
  el.capacityForm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      toggleCapacityForm(false);
      el.capacityButton.focus();
    }
  });
  document.addEventListener("pointerdown", (event) => {
    if (!el.capacityForm.hidden && !el.capacity.contains(event.target)) toggleCapacityForm(false);
  });

  addEventListener("online", () => {
    if (!conn.opened) reconnectNow();
  });
  addEventListener("offline", () => {
    if (!conn.opened) setConn("offline");
  });
  document.addEventListener("visibilitychange", () => {
    if (isViewing(state.current) && state.current !== SYSTEM_ID) {
      const contact = state.contacts.get(state.current);
      if (contact && Number(contact.unread) > 0) markRead(state.current);
      renderContacts();
    }
  });

  // Clocks: the reply windows, the retry countdown, and a watchdog for sockets that went silent
  // (a dropped network often gives no close event until TCP gives up).
  setInterval(() => {
    if (conn.state === "waiting") renderConn();
    // Armed once this socket has had a heartbeat: the bridge's interval is configurable.
    if (conn.ws && conn.opened && conn.lastHeartbeatAt) {
      const limit = Math.max(WATCHDOG_MIN_MS, conn.heartbeatGap * 2.5);
      if (Date.now() - conn.lastFrameAt > limit) {
        abandonSocket();
        conn.opened = false;
        connect();
      }
    }
  }, 1000);
  setInterval(() => {
    renderContacts();
    renderConversationHead();
  }, 30_000);

  start();
}

init();
