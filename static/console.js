// The agent console: contact list, conversations and replies over the bridge's agent protocol
// (PROTOCOL.md). Plain browser JavaScript, no build step; every text from the wire goes into the
// page through textContent, every URL through safeUrl(). This module holds the socket, the
// conversation caches and the older views; the plain modules under console/ hold drafts, limits,
// quick replies, triage, the message window, alerts and the strings, and console/views.js the
// views rendered with Preact.

import { byIdOn, h, safeUrl, timeFormat } from "./common.js";
import { createDrafts } from "./console/drafts.js";
import { createEntry, createOutbox, isKept, storedFate } from "./console/outbox.js";
import { keepReplyOver, renameReply, showReply, withdrawReply } from "./console/list_head.js";
import {
  afterGivenBack,
  afterInbound,
  afterReply,
  quotaKeys,
  replyState,
  WINDOW_CLOSED_ERRCODES,
} from "./console/limits.js";
import {
  createTranslator,
  formatDuration as formatDurationIn,
  pickLanguage,
  savedLanguage,
  saveLanguage,
} from "./console/i18n.js";
import {
  fillPlaceholders,
  followerName,
  insertQuickReply,
  searchQuickReplies,
  slashQuery,
} from "./console/quick_replies.js";
import { matchesTriage, triageCounts } from "./console/triage.js";
import { quotaPill, windowPill } from "./console/pills.js";
import { createServerClock } from "./console/server_clock.js";
import { eventText, noticePreview } from "./console/event_text.js";
import { matchesSearch } from "./console/list_search.js";
import { createRowCache, syncChildren } from "./console/row_cache.js";
import { locationFromReport, placeView } from "./console/place.js";
import { isReport } from "./console/reports.js";
import { countsUnread, FORGET_EVENTS } from "./console/unread.js";
import {
  mergeNotices,
  mergeTransferred,
  NOTICES_KEPT,
  parseContext,
  TRANSFERRED_KEPT,
  unreadNotices,
} from "./console/context.js";
import {
  compareMessages,
  createConversation,
  findByClientId as findIn,
  ordersBefore,
  pageOrders,
  pendingReplies as pendingIn,
  rekeyClientId,
  removeMessage,
  sortedMessages,
  upsertMessage as upsertIn,
} from "./console/conversations.js";
import {
  BASE as B,
  CLOSE_TOKEN_EXPIRED,
  commandFrame,
  envelopeKind,
  isQuietRefusal,
  reconnectDelay,
  replyFrame,
  socketUrl as socketUrlOf,
  SYSTEM_ID,
} from "./console/protocol.js";
import * as win from "./console/message_window.js";
import {
  alertSettingsKey,
  createAlerter,
  loadAlertSettings,
  saveAlertSettings,
} from "./console/alerts.js";
import { createMessageBody } from "./console/message_body.js";
import { formatSize, kindOf, UPLOAD_KINDS, uploadTypeOf } from "./console/upload_types.js";
import { canRetry, editedBox, textLength } from "./console/text_limits.js";
import { createStaged } from "./console/staged.js";
import {
  ContactPanel,
  FilterBar,
  HelpSheet,
  html,
  QuickManager,
  QuickPicker,
  render,
  SearchPanel,
  SettingsPanel,
  TransferPicker,
  WaitingList,
} from "./console/views.js";

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

const lang = pickLanguage(savedLanguage(localStorageOrNull()), navigator.languages);
const t = createTranslator(lang);
document.documentElement.lang = lang;
const THEME_KEY = "wxbridge.theme";
// Per account too: an agent of two keeps a tab for each, and one account's followers (those
// handed over, the system messages about them) must never show in the other's.
const CONTEXT_KEY = account
  ? `wxbridge.context:@${account}/${userid}`
  : `wxbridge.context:${userid}`;
const drafts = createDrafts(localStorageOrNull() ?? memoryStorage(), userid, { account });
/** Private notes being typed, per conversation: kept apart so none is ever sent as a reply. */
const noteDrafts = createDrafts(localStorageOrNull() ?? memoryStorage(), userid, {
  account,
  kind: "note",
});

/** Replies typed and not yet taken by the bridge, kept across reloads (console/outbox.js). */
const outbox = createOutbox(localStorageOrNull(), userid, { account });
/** Web Locks, where the browser has them (secure contexts): which tab sends a stored reply. */
const locks = globalThis.navigator?.locks ?? null;

/** Where the box's text is kept in `mode` (reply or note). */
function draftsOf(mode) {
  return mode === "note" ? noteDrafts : drafts;
}
/** This agent's other tabs in this browser (null where BroadcastChannel is missing). */
const tabs = typeof BroadcastChannel === "function"
  ? new BroadcastChannel(`wxbridge.tabs:${account}:${userid}`)
  : null;

let alertSettings = loadAlertSettings(localStorageOrNull() ?? memoryStorage(), userid);
const alerter = createAlerter(globalThis, () => alertSettings);
const { messageBody, linkify } = createMessageBody(t);

/** localStorage, or null where the browser refuses it (private mode, sandboxed frames). */
function localStorageOrNull() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

/** A Storage for this page only, when the browser keeps none. */
function memoryStorage() {
  const map = new Map();
  return {
    getItem: (k) => map.get(k) ?? null,
    setItem: (k, v) => map.set(k, String(v)),
    removeItem: (k) => map.delete(k),
  };
}

const state = {
  token: readToken(),
  lastSeq: 0,
  /** @type {Map<string, any>} contact_id -> contact, as /contacts gives it, kept up to date */
  contacts: new Map(),
  waiting: [],
  /** @type {Map<string, any>} contact_id -> conversation cache */
  convs: new Map(),
  /** The system's notices, each `read` once seen in any of this agent's tabs */
  system: { items: [] },
  current: null,
  filter: "",
  contactsLoaded: false,
  needsToken: false,
  /** @type {Map<string, any>} contact_id -> the contact as it was, plus transferred_to/_at */
  transferred: new Map(),
  /** @type {Map<string, any>} contact_id -> {contact_id, at}: handed over, then back (or forgotten)
   * at `at`, so another tab's older copy of the transfer does not list it again */
  returned: new Map(),
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
  /** @type {Map<string, any>} contact_id -> labels sent but not yet seen in GET contacts:
   * {clientId, labels, previous, tries, timer, deadline} */
  labelling: new Map(),
  /** Triage filter (console/triage.js) */
  triage: "all",
  /** The open conversation and the filters it matched while open, where it stays (pinCurrent):
   * {id, filters: Set} */
  pinned: null,
  /** Followers this console asked to claim, until the bridge answers */
  taking: new Set(),
  /** The team's quick replies (GET quick_replies), and the picker under the reply box */
  quickReplies: [],
  quick: null,
  quickError: "",
  /** Agents to transfer to (GET agents), and the one picked */
  agents: [],
  transferTo: "",
  /** The reply box writes a reply, or a private note */
  mode: "reply",
  /** Open dialogs: settings, help, quick replies, search; and the contact panel */
  dialog: null,
  panel: false,
  search: { query: "", results: [], cursor: null, busy: false },
  /** Replies refused by WeChat in a row: the header says so until one goes through */
  failures: 0,
  theme: readTheme(),
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
  /** the open socket lived through the browser going offline: it may be dead without a close */
  wentOffline: false,
  /** frames to send once the socket is open (replies typed while offline) */
  outbox: [],
};

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
  contactList: byId("contact-list"),
  contactsEmpty: byId("contacts-empty"),
  conversationEmpty: byId("conversation-empty"),
  conversationGone: byId("conversation-gone"),
  conversation: byId("conversation"),
  back: byId("back-button"),
  backCount: byId("back-count"),
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
  convPlace: byId("conv-place"),
  convPlaceText: byId("conv-place-text"),
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
  closeQuestion: byId("close-question"),
  transferNote: byId("transfer-note"),
  convQuota: byId("conv-quota"),
  panelButton: byId("panel-button"),
  newPill: byId("new-pill"),
  latest: byId("latest-button"),
  composerTools: byId("composer-tools"),
  composerReason: byId("composer-reason"),
  composerCount: byId("composer-count"),
  staged: byId("staged"),
  modeReply: byId("mode-reply"),
  modeNote: byId("mode-note"),
  quickButton: byId("quick-button"),
  sendButton: byId("send-button"),
  settingsButton: byId("settings-button"),
  helpButton: byId("help-button"),
  closeError: byId("close-error"),
  capacity: byId("capacity"),
  capacityButton: byId("capacity-button"),
  simulatorLink: byId("simulator-link"),
  capacityValue: byId("capacity-value"),
  capacityForm: byId("capacity-form"),
  capacityInput: byId("capacity-input"),
  capacityOpen: byId("capacity-open"),
  capacityError: byId("capacity-error"),
  capacityCancel: byId("capacity-cancel"),
};

// ---------------------------------------------------------------------------------------------
// Small helpers

/** The bridge's clock (GET contacts' `now`), by which WeChat's windows count. */
const bridgeClock = createServerClock();

/** Now, in Unix seconds, on the bridge's clock. */
function nowS() {
  return Math.floor(bridgeClock.nowMs() / 1000);
}

/** An answer of the bridge's that says its time (`now`, Unix seconds) sets the clock; a changed
 * offset redraws the countdowns. */
function learnClock(body, sentMs) {
  if (typeof body?.now !== "number") return;
  if (bridgeClock.observe(body.now * 1000, sentMs, Date.now())) {
    renderContacts();
    renderConversationHead();
  }
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

const dayFormat = new Intl.DateTimeFormat(lang, {
  weekday: "short",
  year: "numeric",
  month: "short",
  day: "numeric",
});
const shortDayFormat = new Intl.DateTimeFormat(lang, { month: "short", day: "numeric" });
const placeTimeFormat = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });

function dayKey(seconds) {
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

/** The day before today, by the calendar: 24 hours back, after a night the clocks went forward
 * (a 23-hour day), was the day before it until one in the morning. */
function yesterdayKey() {
  const d = new Date(nowS() * 1000);
  d.setDate(d.getDate() - 1);
  return dayKey(d.getTime() / 1000);
}

function dayLabel(seconds) {
  const key = dayKey(seconds);
  if (key === dayKey(nowS())) return t("time.today");
  if (key === yesterdayKey()) return t("time.yesterday");
  return dayFormat.format(new Date(seconds * 1000));
}

/** "14:05" today, "Yesterday", or "Mar 13" in the contact list. */
function listTime(seconds) {
  if (!seconds) return "";
  const key = dayKey(seconds);
  if (key === dayKey(nowS())) return timeFormat.format(new Date(seconds * 1000));
  if (key === yesterdayKey()) return t("time.yesterday");
  return shortDayFormat.format(new Date(seconds * 1000));
}

function formatDuration(seconds) {
  return formatDurationIn(seconds, lang);
}

/** The 48-hour window of a contact, as its pill says it (console/pills.js). */
function windowOf(contact) {
  return windowPill(contact, nowS(), t, lang);
}

function previewOf(msgType, msg) {
  const m = msg ?? {};
  switch (msgType) {
    case "text":
      return String(m.content ?? "");
    case "image":
      return t("preview.image");
    case "voice":
      return m.recognition ? `${t("preview.voice")} ${m.recognition}` : t("preview.voice");
    case "video":
      return t("preview.video");
    case "shortvideo":
      return t("preview.shortvideo");
    case "location":
      return `${t("preview.location")} ${m.label ?? ""}`.trim();
    case "link":
      return `${t("preview.link")} ${m.title ?? ""}`.trim();
    case "news":
      return `${t("preview.article")} ${m.title ?? ""}`.trim();
    case "miniprogrampage":
      return `${t("preview.miniprogram")} ${m.title ?? ""}`.trim();
    case "system":
      return systemText(m);
    default:
      return `[${msgType ?? "message"}]`;
  }
}

/** Kinds whose preview GET contacts gives as "[image]" or a bare title, in no language of ours. */
const MEDIA_KINDS = [
  "image",
  "voice",
  "video",
  "shortvideo",
  "location",
  "link",
  "news",
  "miniprogrampage",
];

/** A list entry's last message as the thread would say it: the bridge's preview of a picture
 * ("[image]") turned the page's "[图片]" into English a second after it came. */
function listPreview(last) {
  const text = String(last.preview ?? "");
  if (last.local) return text;
  // A waiting notice's preview comes with no msg_type: "[image]" names it.
  const kind = last.msg_type ?? text.match(/^\[([a-z]+)\]$/)?.[1];
  // A notice's preview is the bridge's Chinese sentence: read back into this language.
  if (kind === "system") return text ? noticePreview(text, t, lang) : t("sys.someEvent");
  if (!MEDIA_KINDS.includes(kind)) return text;
  // A link's preview is its title, when it has one.
  return previewOf(kind, text === `[${kind}]` ? {} : { title: text });
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
  // The header's avatar is filled on every render: unchanged, it is left alone.
  const key = `${contact?.contact_id}\u0000${contact?.avatar ?? ""}\u0000${contact?.name ?? ""}`;
  if (node.dataset.filled === key) return;
  node.dataset.filled = key;
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
// Language, theme, context kept across reloads

/** Puts the table's strings into the page's fixed text (data-i18n, data-i18n-attr). */
function applyStaticStrings() {
  for (const node of document.querySelectorAll("[data-i18n]")) {
    node.textContent = t(node.dataset.i18n);
  }
  for (const node of document.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of node.dataset.i18nAttr.split(",")) {
      const [attr, key] = pair.split(":");
      node.setAttribute(attr, t(key));
    }
  }
}

function readTheme() {
  const saved = localStorageOrNull()?.getItem(THEME_KEY);
  return saved === "light" || saved === "dark" ? saved : "auto";
}

/** Light, dark, or the system's: the stylesheet follows data-theme. */
function applyTheme() {
  const dark = state.theme === "dark" ||
    (state.theme === "auto" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
}

/** What a reload would lose and the bridge does not resend: system messages (which of them were
 * read) and the followers handed to other agents (bounded, per agent). Merged with what this
 * agent's other tabs saved since (console/context.js): written over, a tab's older copy took
 * back notices the other had and read, and listed again followers it had seen come back. */
function saveContext() {
  const storage = localStorageOrNull();
  if (!storage) return;
  try {
    const changed = adoptContext(parseContext(storage.getItem(CONTEXT_KEY)));
    if (changed) renderContacts();
    if (changed && state.current) renderConversation();
    storage.setItem(
      CONTEXT_KEY,
      JSON.stringify({
        system: state.system.items.slice(-NOTICES_KEPT).map(({ adopted: _, ...item }) => item),
        transferred: [...state.transferred.values()].slice(-TRANSFERRED_KEPT),
        returned: [...state.returned.values()],
        lastSeq: state.lastSeq,
      }),
    );
  } catch {
    // Storage full: the context lasts for this page.
  }
}

/** Takes in what another tab saved (parseContext): its notices and reads, its transfers and
 * returns. True when this page's lists changed. */
function adoptContext(saved) {
  const items = state.system.items;
  const unreadBefore = unreadNotices(items);
  const merged = mergeNotices(items, saved.system, 500);
  const known = new Set(items.map((item) => item.id));
  state.system.items = merged;
  for (const data of merged) {
    if (known.has(data.id)) continue;
    // Once this page runs, what another tab listed first may still come on this socket.
    if (state.contactsLoaded) data.adopted = true;
    const fid = data?.msg?.follower_id;
    if (fid) upsertMessage(String(fid), { ...data, direction: "system", note_for: fid });
  }
  const before = state.transferred;
  const both = mergeTransferred(state, saved);
  state.transferred = both.transferred;
  state.returned = both.returned;
  let moved = false;
  for (const id of state.transferred.keys()) {
    // Handed over from the other tab while this one missed the notice: it leaves the list here.
    if (!before.has(id)) state.contacts.delete(id);
    moved ||= !before.has(id);
  }
  for (const id of before.keys()) moved ||= !state.transferred.has(id);
  // Back with us: GET contacts lists it again.
  if (moved && state.contactsLoaded) scheduleContactsRefresh(300);
  return merged !== items || unreadNotices(merged) !== unreadBefore || moved;
}

function restoreContext() {
  adoptContext(parseContext(localStorageOrNull()?.getItem(CONTEXT_KEY)));
}

/**
 * Another tab changed a setting of this agent's (capacity, alerts, theme): it holds here too. Kept
 * as this tab had it, the next reconnect here sent the old capacity to the bridge, and a change
 * of another alert here saved the old value of the one changed there. True when `key` was one.
 */
function onSettingStored(key) {
  if (key === capacityKey) {
    state.capacity = readCapacity();
    state.capacityError = "";
    renderCapacity();
  } else if (key === alertSettingsKey(userid)) {
    alertSettings = loadAlertSettings(localStorageOrNull() ?? memoryStorage(), userid);
    updateBadge();
    renderViews();
  } else if (key === THEME_KEY) {
    state.theme = readTheme();
    applyTheme();
    renderViews();
  } else {
    return false;
  }
  return true;
}

/** Another tab saved the context: what it saw, read and undid shows here too. */
function onContextStored(raw) {
  if (!adoptContext(parseContext(raw))) return;
  // A notice that came in there while this tab shows the system list is read here.
  if (isViewing(SYSTEM_ID) && unreadNotices(state.system.items) > 0) markSystemRead();
  renderContacts();
  if (state.current) renderConversation();
}

/** The system list is seen: each notice in it is read, in this tab and (saved now) the others. */
function markSystemRead() {
  let changed = false;
  for (const item of state.system.items) {
    if (!item.read) {
      item.read = true;
      changed = true;
    }
  }
  if (changed) saveContext();
}

let contextTimer = 0;
function scheduleSaveContext() {
  clearTimeout(contextTimer);
  contextTimer = setTimeout(saveContext, 500);
}

// ---------------------------------------------------------------------------------------------
// Rendering is batched per frame: a burst of envelopes costs one render, not one each.

const dirty = { contacts: false, messages: false, head: false, views: false, toBottom: false };
let frame = 0;
let frameTimer = 0;

function schedule(part, options) {
  dirty[part] = true;
  if (options?.toBottom) dirty.toBottom = true;
  if (!frame) frame = requestAnimationFrame(flushRender);
  // A hidden tab gets no animation frames, and its title and icon count are what the agent sees
  // of it from another tab: there a timer renders (browsers run it about once a second).
  if (!frameTimer && document.visibilityState === "hidden") {
    frameTimer = setTimeout(flushRender, 0);
  }
}

function flushRender() {
  cancelAnimationFrame(frame);
  clearTimeout(frameTimer);
  frame = 0;
  frameTimer = 0;
  const parts = { ...dirty };
  for (const k of Object.keys(dirty)) dirty[k] = false;
  if (parts.contacts) renderContactsNow();
  if (parts.head && state.current) renderConversationHead();
  if (parts.messages) renderMessagesNow({ toBottom: parts.toBottom });
  renderViews();
}

// ---------------------------------------------------------------------------------------------
// Views rendered with Preact (console/views.js)

const mounts = {};

function renderViews() {
  if (!mounts.triage) return;
  const contacts = [...state.contacts.values()].filter((c) => c.kind !== "agent");
  render(
    html`
      <${FilterBar} t=${t} filter=${state.triage}
        counts=${triageCounts(contacts, state.waiting, userid, nowS())}
        onFilter=${(f) => {
          state.triage = f;
          pinCurrent();
          renderContactsNow();
        }} onSearch=${() => openDialog("search")} />
    `,
    mounts.triage,
  );
  render(
    html`
      <${WaitingList} t=${t} waiting=${state.triage === "all" || state.triage === "waiting"
        ? state.waiting
        : []} taking=${state.taking} onTake=${takeFollower}
        preview=${(w) => listPreview(w.last_message ?? { preview: w.preview })}
        since=${(w) =>
          w.since ? t("waiting.for", { d: formatDuration(nowS() - Number(w.since)) }) : ""} />
    `,
    mounts.waiting,
  );
  const a = state.action;
  render(
    a?.kind === "transfer" && a.contactId === state.current
      ? html`
        <${TransferPicker} t=${t} agents=${state.agents} me=${userid}
          value=${state.transferTo} disabled=${a.busy} onPick=${(id) => {
            state.transferTo = id;
            el.transferTo.value = id;
            if (a.error) a.error = "";
            renderAction();
            renderViews();
          }} />
      `
      : null,
    mounts.transfer,
  );
  render(
    state.quick
      ? html`
        <${QuickPicker} t=${t} items=${state.quick.items} active=${state.quick.active}
          onPick=${pickQuickReply} onManage=${() => openDialog("quick")} />
      `
      : null,
    mounts.quick,
  );
  const contact = state.current && state.current !== SYSTEM_ID
    ? ensureContactView(state.current)
    : null;
  el.panelButton.hidden = !contact || contact.kind === "agent";
  el.panelButton.setAttribute("aria-expanded", String(state.panel && Boolean(contact)));
  render(
    state.panel && contact && contact.kind !== "agent"
      ? html`
        <${ContactPanel} t=${t} contact=${contact} firstContact=${firstContactOf(contact)}
          past=${pastConversationsOf(contact.contact_id)}
          onLabels=${(labels) => setLabels(contact.contact_id, labels)}
          onClose=${() => {
            state.panel = false;
            renderViews();
            el.panelButton.focus();
          }} onOpen=${(p) => scrollToMessage(p.key)} />
      `
      : null,
    mounts.panel,
  );
  render(dialogView(), mounts.dialog);
  // A modal dialog is all there is while it is open: Tab went on past its last control to the
  // ones under its backdrop, unseen, where Enter still pressed them.
  const modal = Boolean(state.dialog);
  for (const node of el.app.children) {
    if (node !== mounts.dialog && node !== el.toasts && node.inert !== modal) node.inert = modal;
  }
}

function dialogView() {
  const close = closeDialog;
  switch (state.dialog) {
    case "settings":
      return html`
        <${SettingsPanel} t=${t} lang=${lang} theme=${state.theme}
          alerts=${alertSettings} permission=${globalThis.Notification?.permission ?? "denied"}
          onChange=${changeSettings} onClose=${close}
          onAllow=${() => alerter.requestPermission().then(() => renderViews())} />
      `;
    case "help":
      return html`<${HelpSheet} t=${t} onClose=${close} />`;
    case "quick":
      return html`
        <${QuickManager} t=${t} items=${state.quickReplies} error=${state.quickError}
          onSave=${saveQuickReply} onDelete=${deleteQuickReply} onClose=${close} />
      `;
    case "search":
      return html`
        <${SearchPanel} t=${t} query=${state.search.query}
          results=${state.search.results} busy=${state.search.busy}
          more=${Boolean(state.search.cursor)} onQuery=${(q) => runSearch(String(q ?? ""), false)}
          onMore=${() => runSearch(state.search.query, true)} onClose=${close}
          onOpen=${(r) => {
            state.dialog = null;
            // The page comes out from under the dialog first: inert, it could not take the
            // focus openContact gives the reply box, which went to the page's body.
            renderViews();
            openContact(r.contact_id);
            scrollToMessage(r.message.id, true);
          }} />
      `;
    default:
      return null;
  }
}

/** Where the focus was when the open dialog opened, to go back to when it closes. */
let dialogOpener = null;

function openDialog(name) {
  const from = document.activeElement;
  if (!state.dialog) dialogOpener = from && from !== document.body ? from : null;
  state.dialog = name;
  state.quick = null;
  if (name === "quick") loadQuickReplies();
  renderViews();
  // A modal dialog takes the focus, so Escape and Tab work inside it.
  const dialog = mounts.dialog.querySelector("[role=dialog]");
  if (dialog && !dialog.contains(document.activeElement)) {
    dialog.querySelector("input, select, textarea, button")?.focus();
  }
}

function closeDialog() {
  if (!state.dialog) return;
  const was = state.dialog;
  state.dialog = null;
  renderViews();
  // Back where the agent was (? from the messages or the list, Ctrl+K from the reply box): sent
  // to the dialog's own button, the next j, k or typed reply went nowhere useful. A list entry
  // is drawn anew while the dialog is open, so it is found again by its conversation.
  const opener = dialogOpener;
  dialogOpener = null;
  const id = opener?.isConnected ? null : opener?.dataset?.contactId;
  const entry = id
    ? [el.contactList, el.transferredList, el.systemEntry]
      .map((list) => list.querySelector(`.contact[data-contact-id="${CSS.escape(id)}"]`))
      .find(Boolean)
    : null;
  const back = opener?.isConnected ? opener : entry;
  if (back && !back.closest("[inert]") && !back.disabled) {
    back.focus({ preventScroll: true });
    if (document.activeElement === back) return;
  }
  (was === "settings" ? el.settingsButton : was === "help" ? el.helpButton : el.reply)?.focus();
}

function changeSettings(change) {
  if (change.lang && change.lang !== lang) {
    saveLanguage(localStorageOrNull() ?? memoryStorage(), change.lang);
    // Every string, including the ones already on screen, comes from the table again.
    location.reload();
    return;
  }
  if (change.theme) {
    state.theme = change.theme;
    localStorageOrNull()?.setItem(THEME_KEY, change.theme);
    applyTheme();
  }
  if (change.alerts) {
    alertSettings = change.alerts;
    saveAlertSettings(localStorageOrNull() ?? memoryStorage(), userid, alertSettings);
    if (alertSettings.desktop) alerter.requestPermission().then(() => renderViews());
    updateBadge();
  }
  renderViews();
}

function firstContactOf(contact) {
  const c = state.convs.get(contact.contact_id);
  if (!c?.loaded || c.nextBefore) return "";
  const first = c.sorted?.[0] ?? [...c.byKey.values()].sort(compareMessages)[0];
  return first ? `${dayFormat.format(new Date(Number(first.send_time) * 1000))}` : "";
}

/** Earlier conversations of a follower: the starts after each "closed" note. */
function pastConversationsOf(contactId) {
  const c = state.convs.get(contactId);
  if (!c) return [];
  const out = [];
  const list = sortedMessages(c);
  for (let i = 0; i < list.length; i++) {
    const m = list[i];
    if (m.direction === "system" && m.msg?.event === "closed" && list[i + 1]) {
      out.push({
        key: m.key,
        label: dayFormat.format(new Date(Number(m.send_time) * 1000)),
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Alerts and the favicon

/** The system list's notices still to read, as its entry shows them: none while it is in view. */
function systemUnseen() {
  return isViewing(SYSTEM_ID) ? 0 : unreadNotices(state.system.items);
}

/** Whether a notice is in a follower's thread whose own unread count the total has already:
 * read with that thread, counted again one follow and one message were three in the title. */
function countedOnFollower(item) {
  if (!inThread(item.msg)) return false;
  const id = String(item.msg.follower_id);
  const contact = state.contacts.get(id);
  return Number(contact?.unread) > 0 && !(state.current === id && seesNewest(id));
}

function updateBadge() {
  // The system's notices count as the list counts them (reports never): left out, a notice came
  // to an agent in another tab with no sign on this one's title or icon. One about a follower
  // whose row counts already is that follower's news, counted once.
  const notices = isViewing(SYSTEM_ID) ? 0 : unreadNotices(state.system.items, countedOnFollower);
  let total = state.waiting.length + notices;
  for (const c of state.contacts.values()) {
    if (!(state.current === c.contact_id && seesNewest(c.contact_id))) {
      total += Number(c.unread) || 0;
    }
  }
  alerter.setBadge(total);
  return total;
}

function raiseAlert(kind, contactId, name) {
  alerter.alert(
    { kind, contactId },
    { viewing: isViewing(contactId), hidden: document.visibilityState !== "visible" },
    {
      title: t(`alert.${kind}`, { name }),
      body: "",
      onClick: () => contactId && openContact(contactId),
    },
  );
}

// ---------------------------------------------------------------------------------------------
// The waiting queue, quick replies, labels, notes, search

/** client_id -> contact_id of the claims Take it sent, to name the follower if one fails. */
const claimIds = new Map();

function takeFollower(contactId) {
  if (state.taking.has(contactId)) return;
  const clientId = sendCommand("claim", { contact_id: contactId });
  if (!clientId) {
    toast(t("command.offline"), "error");
    return;
  }
  claimIds.set(clientId, contactId);
  state.taking.add(contactId);
  renderViews();
}

/** The bridge gave a waiting follower to someone (us, or another agent): off the queue. */
function leaveWaiting(followerId) {
  state.taking.delete(followerId);
  const before = state.waiting.length;
  state.waiting = state.waiting.filter((w) => w.contact_id !== followerId);
  if (before !== state.waiting.length) updateBadge();
}

/** Reads the team's quick replies; `quiet` (the picker's own read) keeps a failure off the
 * manager, which would show it, stale, the next time it opened. */
async function loadQuickReplies({ quiet = false } = {}) {
  try {
    const body = await api("/quick_replies");
    state.quickReplies = Array.isArray(body.quick_replies) ? body.quick_replies : [];
  } catch (error) {
    if (!(error instanceof AuthError) && !quiet) state.quickError = error.message;
  }
  // A `/` typed before the list came (right after a load) finds in the list as it is now.
  if (state.quick) updateQuickPicker();
  else renderViews();
}

async function writeApi(method, path, body) {
  const url = new URL(B + path, location.origin);
  url.searchParams.set("userid", userid);
  if (account) url.searchParams.set("account", account);
  const headers = { Accept: "application/json", "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(answer.error ?? `HTTP ${res.status}`);
  return answer;
}

async function saveQuickReply(q) {
  try {
    await writeApi("POST", "/quick_replies", q);
    state.quickError = "";
    await loadQuickReplies();
    return true;
  } catch (error) {
    state.quickError = t("quick.saveFailed", { message: error.message });
    renderViews();
    return false;
  }
}

async function deleteQuickReply(q) {
  try {
    await writeApi("DELETE", `/quick_replies/${encodeURIComponent(q.id)}`);
  } catch (error) {
    state.quickError = error.message;
  }
  await loadQuickReplies();
}

/** The picker follows what is typed after `/`. */
function updateQuickPicker() {
  if (state.mode !== "reply") return;
  const range = slashQuery(el.reply.value, el.reply.selectionStart ?? el.reply.value.length);
  if (!range) {
    if (state.quick) {
      state.quick = null;
      renderViews();
    }
    return;
  }
  // The team's list, read again as the picker opens: read once at the page's start, a reply a
  // colleague (or this agent in another tab) added since was not there to pick all shift.
  const opening = !state.quick;
  const items = searchQuickReplies(state.quickReplies, range.query);
  state.quick = { range, items, active: Math.min(state.quick?.active ?? 0, items.length - 1) };
  if (state.quick.active < 0) state.quick.active = 0;
  renderViews();
  if (opening) loadQuickReplies({ quiet: true });
}

function pickQuickReply(q) {
  const range = state.quick?.range;
  if (!range) return;
  const contact = ensureContactView(state.current);
  const filled = fillPlaceholders(q.text, {
    name: followerName(contact, state.current),
    agent: userid,
    id: state.current,
  });
  const next = insertQuickReply(el.reply.value, range, filled);
  setReplyText(next.text);
  el.reply.setSelectionRange(next.caret, next.caret);
  state.quick = null;
  drafts.set(state.current, el.reply.value);
  autosize();
  renderViews();
  el.reply.focus();
}

/** Arrow keys, Enter, Tab and Escape while the picker is open; true when the key was its. */
function quickPickerKey(event) {
  const q = state.quick;
  if (!q) return false;
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    const n = q.items.length;
    if (n > 0) q.active = (q.active + (event.key === "ArrowDown" ? 1 : n - 1)) % n;
    renderViews();
    return true;
  }
  if ((event.key === "Enter" || event.key === "Tab") && q.items[q.active]) {
    pickQuickReply(q.items[q.active]);
    return true;
  }
  if (event.key === "Escape") {
    state.quick = null;
    renderViews();
    return true;
  }
  return false;
}

// Labels, as renames go: shown here at once, told to this agent's other tabs only once GET
// contacts shows the bridge has them (it answers a labels command only when it refuses it), and
// put back here when it refuses them. Told as sent, a refused label showed in the other tabs.

function setLabels(contactId, labels) {
  const contact = state.contacts.get(contactId);
  const clientId = sendCommand("labels", { contact_id: contactId, msg: { labels } });
  if (!clientId) {
    toast(t("command.offline"), "error");
    return;
  }
  const before = state.labelling.get(contactId);
  if (before) clearTimeout(before.timer);
  const pending = {
    clientId,
    labels,
    // The labels the bridge last confirmed, to go back to if it refuses these.
    previous: before ? before.previous : [...(contact?.labels ?? [])],
    tries: 0,
    timer: 0,
    deadline: Date.now() + COMMAND_PATIENCE_MS,
  };
  state.labelling.set(contactId, pending);
  if (contact) contact.labels = labels;
  renderContacts();
  confirmLabels(contactId, pending);
}

function sameLabels(a, b) {
  return Array.isArray(a) && Array.isArray(b) && a.length === b.length &&
    a.every((label, i) => label === b[i]);
}

/** Labels the bridge gave (GET contacts), unless ours are on their way: then the bridge either
 * shows ours (confirmed, and the other tabs are told) or is behind. */
function labelsFromBridge(contact, labels) {
  const pending = state.labelling.get(contact.contact_id);
  if (!pending) return;
  if (sameLabels(labels, pending.labels)) {
    clearTimeout(pending.timer);
    state.labelling.delete(contact.contact_id);
    tabs?.postMessage({ edited: { contact_id: contact.contact_id, labels: pending.labels } });
  }
  contact.labels = pending.labels;
}

/** Re-reads GET contacts until it shows the labels, the bridge refuses them, or time is up. */
function confirmLabels(id, pending) {
  clearTimeout(pending.timer);
  const delay = Math.min(2000, 150 * 2 ** pending.tries);
  pending.timer = setTimeout(async () => {
    if (state.labelling.get(id) !== pending) return;
    pending.tries += 1;
    try {
      await loadContacts();
    } catch (error) {
      if (error instanceof AuthError) return;
    }
    if (state.labelling.get(id) !== pending) return; // confirmed, refused or replaced
    if (Date.now() < pending.deadline) confirmLabels(id, pending);
    else {
      // Unconfirmed: the next contacts refresh shows what the bridge holds, here only.
      state.labelling.delete(id);
      scheduleContactsRefresh(0);
    }
  }, delay);
}

/** The bridge refused labels of ours: they go back here, and were never told elsewhere. */
function labelsRefused(clientId, message) {
  for (const [id, pending] of state.labelling) {
    if (pending.clientId !== clientId) continue;
    clearTimeout(pending.timer);
    state.labelling.delete(id);
    const contact = state.contacts.get(id);
    if (contact && sameLabels(contact.labels, pending.labels)) contact.labels = pending.previous;
    renderContacts();
    renderViews();
    toast(t("labels.failed", { message }), "error");
    return;
  }
  // Labels already replaced by newer ones: the newer ones' answer counts.
}

/** client_id -> {contactId, text}: notes written, kept until the bridge answers. */
const sentNotes = new Map();

function sendNote(text) {
  const contactId = state.current;
  if (!contactId || contactId === SYSTEM_ID) return false;
  const clientId = sendCommand("note", { contact_id: contactId, msg: { content: text } });
  if (!clientId) return false;
  sentNotes.set(clientId, { contactId, text });
  // An answer that never came (the socket died) leaves it here: only the last few are kept.
  if (sentNotes.size > 20) sentNotes.delete(sentNotes.keys().next().value);
  return true;
}

/** The bridge refused a note: its text goes back where it was typed, with the reason. The box
 * was emptied as the note went, and the agent's text was lost with it. */
function noteRefused(clientId, message) {
  const note = sentNotes.get(clientId);
  sentNotes.delete(clientId);
  if (note) restoreNote(note);
  toast(message, "error");
}

/** A note's text back in its conversation's note box (or note draft), over what was typed since. */
function restoreNote(note) {
  const notes = draftsOf("note");
  if (state.current === note.contactId && state.mode === "note") {
    setReplyText(editedBox(el.reply.value, note.text));
    notes.set(note.contactId, el.reply.value);
    autosize();
    renderViews();
  } else {
    notes.set(note.contactId, editedBox(notes.get(note.contactId), note.text));
  }
}

/** The socket closed with notes the bridge never answered: it may not have them. Their text
 * goes back to the box, unless the note came back to this page meanwhile, with a word to
 * check the conversation once connected again. */
function notesUnanswered() {
  for (const [clientId, note] of sentNotes) {
    sentNotes.delete(clientId);
    const c = state.convs.get(note.contactId);
    const shown = c &&
      [...c.byKey.values()].some((m) =>
        m.direction === "note" && m.agent_id === userid && m.msg?.content === note.text
      );
    if (shown) continue;
    restoreNote(note);
    toast(t("note.unanswered"), "error");
  }
}

async function runSearch(query, more) {
  const s = state.search;
  if (!query.trim()) return;
  if (!more) Object.assign(s, { query, results: [], cursor: null });
  s.busy = true;
  renderViews();
  try {
    const body = await api("/search", { q: query, cursor: more ? s.cursor : undefined });
    s.results = [...s.results, ...(body.results ?? [])];
    s.cursor = body.next_cursor ?? null;
  } catch (error) {
    if (!(error instanceof AuthError)) toast(error.message, "error");
  } finally {
    s.busy = false;
  }
  renderViews();
}

async function loadAgents() {
  try {
    const body = await api("/agents");
    state.agents = Array.isArray(body.agents) ? body.agents : [];
  } catch {
    state.agents = [];
  }
  renderViews();
}

/** Brings a message (by history id or our key) into the window and into view. */
function scrollToMessage(idOrKey, byId = false) {
  const c = state.convs.get(state.current);
  if (!c) return;
  const find = () => {
    const list = sortedMessages(c);
    return list.findIndex((m) => byId ? String(m.id) === String(idOrKey) : m.key === idOrKey);
  };
  const show = () => {
    const i = find();
    if (i < 0) return false;
    const list = sortedMessages(c);
    c.win = {
      start: Math.max(0, i - 20),
      end: Math.min(list.length, Math.max(0, i - 20) + win.MAX),
      following: false,
    };
    c.highlight = list[i].key;
    c.nodes.delete(list[i].key);
    renderMessagesNow({});
    const node = c.nodes.get(list[i].key)?.node;
    node?.scrollIntoView({ block: "center" });
    return true;
  };
  if (!show() && byId) {
    // Not loaded yet: page the history in until it is, or it ends.
    (async () => {
      while (c.loading || !c.loaded) await new Promise((r) => setTimeout(r, 50));
      for (let tries = 0; tries < 40 && c.nextBefore !== null && find() < 0; tries++) {
        await loadHistory(state.current, { older: true });
      }
      show();
    })();
  }
}

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
  const sentMs = Date.now();
  const res = await fetch(url, { headers });
  if (res.status === 401) {
    await res.body?.cancel();
    tokenRefused();
    throw new AuthError("token required");
  }
  if (!res.ok) {
    throw new Error(await problemOf(res));
  }
  const body = await res.json();
  learnClock(body, sentMs);
  return body;
}

/** What a refused request says, for a person: the bridge's `error` (or its -1 message) from its
 * JSON, else the start of the body; never raw JSON. */
async function problemOf(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    const said = body?.error ?? body?.result?.message;
    if (typeof said === "string" && said) return said.slice(0, 200);
  } catch {
    // Not JSON (a proxy's page): its text, cut short.
  }
  const short = text.slice(0, 200);
  return `HTTP ${res.status}${short ? `: ${short}` : ""}`;
}

let contactsTimer = 0;
function scheduleContactsRefresh(delay = 800) {
  clearTimeout(contactsTimer);
  contactsTimer = setTimeout(
    () => loadContacts().catch(reportLoadError(t("toast.conversations"))),
    delay,
  );
}

function reportLoadError(what) {
  return (error) => {
    if (error instanceof AuthError) return;
    toast(t("toast.loadFailed", { what, message: error.message }), "error");
  };
}

/** Pages of GET contacts read at most: a shift's list, not an archive of every follower. */
const CONTACT_PAGES = 10;

async function loadContacts() {
  const body = await api("/contacts");
  const contacts = [...(body.contacts ?? [])];
  // The bridge pages the list (200 a page): the rest follows its `next` cursor.
  let next = body.next ?? null;
  for (let page = 1; next && page < CONTACT_PAGES; page++) {
    const more = await api("/contacts", { cursor: next });
    contacts.push(...(more.contacts ?? []));
    next = more.next ?? null;
  }
  const listed = new Set();
  for (const contact of contacts) {
    if (!contact?.contact_id) continue;
    listed.add(contact.contact_id);
    const before = state.contacts.get(contact.contact_id);
    const merged = { ...before, ...contact };
    // A reply of ours the bridge does not have yet stays the entry's last message. The bridge's
    // preview of the last message this page drew says less (no voice's recognition, no label):
    // the page's own stays until a newer message.
    const mine = before?.last_message;
    const theirs = contact.last_message;
    const kept = (id) => Boolean(findByClientId(id, contact.contact_id));
    if (
      !keepReplyOver(before, merged, kept) && mine?.local && theirs &&
      mine.msg_type === theirs.msg_type &&
      mine.direction === theirs.direction &&
      Number(before.last_message_time) >= Number(contact.last_message_time)
    ) merged.last_message = mine;
    state.contacts.set(contact.contact_id, merged);
    // A rename on its way: the bridge has it once the list shows it; until then, ours shows.
    nameFromBridge(merged, contact.name);
    labelsFromBridge(merged, contact.labels);
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
  if (state.current === contactId) renderMessagesNow({});
  const before = sortedMessages(c).length;
  try {
    const body = await api("/history", {
      contact_id: contactId,
      limit: HISTORY_PAGE,
      before: older ? c.nextBefore : undefined,
    });
    const items = body.messages ?? [];
    // An older page goes before what this page holds, also among messages of the same second
    // (a follower's burst split by the page's edge showed its older half after the newer).
    const first = older ? ordersBefore(c, items.length) : undefined;
    // The newest page keeps its order among what came live, within a second too (pageOrders).
    const orders = older ? items.map((_, i) => first + i) : pageOrders(c, items);
    items.forEach((item, i) => {
      const data = item.direction === "note" ? { ...item, direction: "note" } : item;
      const { msg } = upsertMessage(contactId, data, orders[i]);
      // A stored reply of ours in the history: the bridge has it, nothing is sent again.
      if (item.direction === "out" && item.client_id && msg.stored) {
        msg.echoed = true;
        settleStored(String(item.client_id));
      }
    });
    c.nextBefore = body.next_before ?? null;
    c.loaded = true;
    const added = sortedMessages(c).length - before;
    // Older messages went in before the window: it moves with what it showed, then slides up.
    if (older && c.win && added > 0) c.win = win.older(win.prepended(c.win, added)).win;
    // What the agent had seen moved down with them: they are not new messages below.
    if (older && added > 0 && c.seen) c.seen += added;
  } catch (error) {
    if (!(error instanceof AuthError)) {
      c.error = t("conv.loadError", { message: error.message });
    }
  } finally {
    c.loading = false;
  }
  if (state.current !== contactId) return;
  // A conversation opened at a search hit stays there while its history comes in.
  renderMessagesNow({ toBottom: !older && !c.highlight });
  if (c.highlight) c.nodes.get(c.highlight)?.node.scrollIntoView({ block: "center" });
}

// ---------------------------------------------------------------------------------------------
// Conversations: a cache per contact, messages indexed by id and by client_id so that history,
// replays after `since=` and our own echoes land on one entry each.

function conv(contactId) {
  let c = state.convs.get(contactId);
  if (!c) state.convs.set(contactId, c = createConversation());
  return c;
}

function upsertMessage(contactId, data, order) {
  return upsertIn(conv(contactId), data, nowS(), order);
}

function findByClientId(clientId, contactId) {
  return findIn(state.convs, clientId, contactId);
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
    document.visibilityState === "visible" && conversationOnScreen();
}

/** Whether the agent sees the newest message of `contactId`: viewing it, the view at the bottom
 * and following it. Scrolled up reading history, a new message below is not seen (the "New
 * messages" pill says it came): it stays unread, here and at the bridge, until scrolled to. */
function seesNewest(contactId) {
  if (!isViewing(contactId)) return false;
  const w = state.convs.get(contactId)?.win;
  if (!w) return true;
  const box = el.messages;
  return w.following && box.scrollHeight - box.scrollTop - box.clientHeight < 120;
}

/** The agent reached the newest message of the open conversation: what came is read now. */
function caughtUp() {
  const id = state.current;
  const contact = id && id !== SYSTEM_ID ? state.contacts.get(id) : null;
  if (!contact || !(Number(contact.unread) > 0) || !isViewing(id)) return;
  markRead(id);
  renderContacts();
}

/** On a phone the list and the conversation take turns on the screen: back at the list, the one
 * left open is out of sight, and what its follower wrote was read (no count) though unseen. */
function conversationOnScreen() {
  return !isNarrow() || el.app.classList.contains("show-conversation");
}

function markRead(contactId, { send = true } = {}) {
  const contact = state.contacts.get(contactId);
  if (contact) contact.unread = 0;
  readNoticesOf(contactId);
  if (send && contactId !== SYSTEM_ID && contact?.kind !== "agent") {
    sendCommand("read", { contact_id: contactId });
    // The bridge answers a read to this socket only: this agent's other tabs hear it here.
    tabs?.postMessage({ read: contactId });
  }
}

/** The system's notices about a follower, shown in its thread, are read with it: the list's
 * thirty "assigned to you" stayed counted (and in the title) after each was opened and read. */
function readNoticesOf(contactId) {
  let changed = false;
  for (const item of state.system.items) {
    if (!item.read && String(item.msg?.follower_id ?? "") === contactId && inThread(item.msg)) {
      item.read = true;
      changed = true;
    }
  }
  if (changed) scheduleSaveContext();
}

/** Whether a system notice shows in its follower's thread (handleSystem puts it there). */
function inThread(msg) {
  const takenByOther = msg?.event === "claimed" && msg.agent_id && msg.agent_id !== userid;
  return Boolean(msg?.follower_id) && msg.event !== "waiting" && !takenByOther &&
    !FORGET_EVENTS.includes(msg.event);
}

/** Another tab read a conversation (its unread count and the title's go here too), or named or
 * labelled a follower (shown here at once, not at this tab's next contacts refresh). */
function onTabMessage(event) {
  const data = event.data ?? {};
  if (data.edited) return onTabEdited(data.edited);
  if (data.withdrawn) return onTabWithdrawn(data.withdrawn);
  const id = data.read;
  if (typeof id !== "string" || !state.contacts.has(id)) return;
  markRead(id, { send: false });
  renderContacts();
}

/** A failed reply another tab of this agent took back with Edit: left here with its Retry, it
 * went to the follower a second time beside the edited one. */
function onTabWithdrawn(withdrawn) {
  const contactId = typeof withdrawn?.contact_id === "string" ? withdrawn.contact_id : "";
  const found = contactId ? findByClientId(withdrawn.client_id, contactId) : null;
  if (found?.msg.status === "failed") cancelReply(contactId, found.msg);
}

/** A follower's name (the bridge had it) or labels, from another tab of this agent. */
function onTabEdited(edit) {
  const id = typeof edit?.contact_id === "string" ? edit.contact_id : "";
  const contact = state.contacts.get(id);
  if (!contact) return;
  if (typeof edit.name === "string" && edit.name !== "") {
    // A rename of this tab's own, on its way, is newer than the one the other tab made.
    if (state.renames.has(id)) return;
    contact.name = edit.name;
  } else if (Array.isArray(edit.labels)) {
    // Labels of this tab's own, on their way, are newer than the ones the other tab set.
    if (state.labelling.has(id)) return;
    contact.labels = edit.labels.filter((l) => typeof l === "string");
  } else return;
  renderContacts();
  if (state.current === id) renderConversationHead();
}

/** Another tab of this agent saved a token: a tab asking for one (it expired for both) goes on
 * with it, instead of waiting for the agent to find it and paste the token again. */
function onTokenStored(token) {
  if (!token || !state.needsToken || token === state.token) return;
  useToken(token);
}

/** Another tab changed a draft: the one for the open conversation shows what was typed there
 * (or sent: then the box empties, and nothing stale is left to send twice). */
function onStorage(event) {
  if (event.key === tokenKey) {
    onTokenStored(event.newValue);
    return;
  }
  if (event.key === CONTEXT_KEY) {
    onContextStored(event.newValue);
    return;
  }
  if (onSettingStored(event.key)) return;
  const storedId = outbox.clientIdOf(event.key);
  if (storedId !== null) {
    onStoredChange(storedId, event.newValue);
    return;
  }
  const id = drafts.contactOf(event.key) ?? noteDrafts.contactOf(event.key);
  if (!id) return;
  // The list shows the other conversations' drafts.
  renderContacts();
  if (id !== state.current) return;
  // The box shows what a reload would (openContact): the reply, else a note, each in its own
  // mode, so a note never lands in a reply box. Left in the other mode, this box kept the other
  // kind's older copy, and switching it over wrote that over what the other tab had typed since.
  const reply = drafts.get(id);
  const note = reply ? "" : noteDrafts.get(id);
  const mode = reply ? "reply" : note ? "note" : state.mode;
  if (mode !== state.mode) setMode(mode);
  const text = mode === "reply" ? reply : note;
  // Unchanged, it is left alone: an input method composing here goes on.
  if (el.reply.value === text) return;
  setReplyText(text);
  autosize();
}

// ---------------------------------------------------------------------------------------------
// The socket

function socketUrl() {
  return socketUrlOf({
    protocol: location.protocol,
    host: location.host,
    userid,
    account,
    since: conn.lastSeqKnown ? state.lastSeq : null,
    token: state.token,
  });
}

function connect() {
  clearTimeout(conn.retryTimer);
  if (conn.ws || state.needsToken) return;
  setConn(conn.everOpened ? "reconnecting" : "connecting");
  // No seq seen on this page yet (just reloaded, or only history read): this socket cannot ask
  // with since=, and the bridge skips what it wrote to the last one, read or not (a dead network).
  const blind = conn.everOpened && !conn.lastSeqKnown;
  const ws = new WebSocket(socketUrl());
  conn.ws = ws;
  conn.opened = false;
  ws.onopen = () => {
    conn.opened = true;
    if (blind) reloadConversations();
    conn.wentOffline = false;
    conn.everOpened = true;
    conn.attempts = 0;
    conn.lastFrameAt = conn.openedAt = Date.now();
    conn.lastHeartbeatAt = 0;
    setConn("connected");
    // The bridge keeps the capacity, but this browser is where the agent set it: say it again
    // on every (re)connect, so a restarted bridge or another console cannot leave it stale. As
    // last set in any tab of this browser: one frozen in the background heard of no change.
    showSimulatorInDemo();
    const saved = readCapacity();
    if (saved === undefined) {
      adoptBridgeCapacity();
    } else {
      if (saved !== state.capacity) {
        state.capacity = saved;
        renderCapacity();
      }
      sendCapacity();
    }
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
    notesUnanswered();
    onSocketClosed(event, wasOpen);
  };
}

/**
 * Whether the bridge keeps a history of this conversation: not of the system's notices, nor of
 * a thread with another agent (asked, it answers 404), nor of a follower handed over (403).
 */
function hasHistory(contactId) {
  return contactId !== SYSTEM_ID && state.contacts.get(contactId)?.kind !== "agent" &&
    !state.transferred.has(contactId);
}

/** Conversations read again from the history, the current one now: what the last socket was
 * written is there, whether or not it reached this page. */
function reloadConversations() {
  for (const [contactId, c] of state.convs) {
    if (contactId !== SYSTEM_ID) c.loaded = false;
  }
  const current = state.current;
  if (current && hasHistory(current)) loadHistory(current);
}

/** Drops a socket we no longer trust (silent network) without waiting for its close handshake. */
function abandonSocket() {
  const ws = conn.ws;
  if (!ws) return;
  conn.ws = null;
  ws.onopen = ws.onmessage = ws.onclose = null;
  notesUnanswered();
  try {
    ws.close(4000, "heartbeat timeout");
  } catch {
    // Already closing.
  }
}

async function onSocketClosed(event, wasOpen) {
  if (state.needsToken) return;
  if (event.code === CLOSE_TOKEN_EXPIRED) {
    // No retry can help, and "reconnecting" would hide why nothing comes in.
    tokenRefused(t("token.expired", { time: timeFormat.format(new Date()) }));
    return;
  }
  if (!wasOpen) {
    // A refused upgrade looks like a plain failure to the browser: ask HTTP why.
    try {
      await api("/contacts");
    } catch (error) {
      if (error instanceof AuthError) return;
    }
  }
  if (event.code === 4008) {
    scheduleReconnect(reconnectDelay(event.code, conn.attempts, Math.random()), t("conn.tooMany"));
    return;
  }
  if (event.code === 4001 || event.code === 1001 || event.code === 1012) {
    scheduleReconnect(reconnectDelay(event.code, conn.attempts, Math.random()));
    return;
  }
  if (event.code === 4000 && event.reason) {
    toast(t("toast.closedConn", { reason: event.reason }), "error");
  }
  conn.attempts += 1;
  scheduleReconnect(reconnectDelay(event.code, conn.attempts, Math.random()));
}

function scheduleReconnect(delay, problem) {
  clearTimeout(conn.retryTimer);
  conn.retryAt = Date.now() + delay;
  if (problem) setConn("error", problem);
  else if (!navigator.onLine) setConn("offline");
  else setConn("waiting");
  conn.retryTimer = setTimeout(connect, delay);
}

/** Swaps a socket we no longer trust for a new one, which asks with since= for what was missed
 * (whatever the old one did deliver lands on the same messages, by id). */
function replaceSocket() {
  abandonSocket();
  conn.opened = false;
  connect();
}

function reconnectNow() {
  conn.attempts = 0;
  if (conn.ws && conn.opened) return;
  abandonSocket();
  connect();
}

const CONN_LABELS = {
  idle: "conn.idle",
  connecting: "conn.connecting",
  connected: "conn.connected",
  reconnecting: "conn.reconnecting",
  offline: "conn.offline",
  token: "conn.token",
  error: "conn.error",
};

function setConn(name, detail) {
  conn.state = name;
  conn.detail = detail;
  renderConn();
}

function renderConn() {
  const name = conn.state ?? "idle";
  let label = CONN_LABELS[name] ? t(CONN_LABELS[name]) : name;
  let dataState = name;
  if (name === "waiting") {
    const seconds = Math.max(1, Math.ceil((conn.retryAt - Date.now()) / 1000));
    label = t("conn.waiting", { s: seconds });
    dataState = "reconnecting";
  }
  if (name === "error" && conn.detail) label = conn.detail;
  // Connected is not all well while WeChat refuses replies: the header says so.
  if (name === "connected" && state.failures > 0) {
    label = t("conn.failing", { n: state.failures });
    dataState = "failing";
  }
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
  const clientId = `cmd-${type}-${++commandCounter}`;
  return send(commandFrame(type, clientId, fields)) ? clientId : null;
}

function flushOutbox() {
  if (!conn.opened) return;
  const now = Date.now();
  /** contact_id -> replies a page before this one queued: asked of the history first */
  const unchecked = new Map();
  // Replies not yet echoed are sent again: the bridge sends one client_id only once.
  for (const [contactId, msg] of [...pendingReplies()]) {
    if (msg.echoed) continue;
    // Another tab of this agent sends it (it queued it, or took it over first).
    if (msg.stored && !heldReplies.has(msg.client_id)) continue;
    if (storedFate({ queued_at: msg.queued_at ?? now }, now) === "expired") {
      expireReply(msg);
      continue;
    }
    if (msg.restored && !msg.checked) {
      unchecked.set(contactId, [...(unchecked.get(contactId) ?? []), msg]);
      continue;
    }
    sendReplyFrame(contactId, msg);
  }
  for (const [contactId, msgs] of unchecked) sendRestored(contactId, msgs);
  refreshPending();
}

function pendingReplies() {
  return pendingIn(state.convs);
}

/** Re-renders pending replies, whose label says whether we are connected. */
function refreshPending() {
  for (const [, msg] of pendingReplies()) msg.rev += 1;
  if (state.current) renderMessages();
}

// ---------------------------------------------------------------------------------------------
// Stored replies: each reply is in localStorage (console/outbox.js) from the moment it is queued
// until the bridge has it (its echo, reply_sent, its -1, or the history holding it), so that a
// reload or a closed tab while the socket is down loses none. Written to the socket is not
// taken: a socket can die with the frame unsent. Exactly one tab sends a stored reply: the one
// that queued it, while it lives; then the next tab in line for its Web Lock, which the browser
// gives up with the tab (closed, reloaded or crashed).

/** client_id -> the function giving its lock back, for the stored replies this tab sends. */
const heldReplies = new Map();
/** client_ids whose lock this tab is in line for (another tab holds it). */
const awaitedReplies = new Set();
/** How long a tab given a stored reply's lock waits for the store to say it was settled. */
const TAKEOVER_GRACE_MS = 1000;

function lockName(clientId) {
  return `${outbox.prefix}${clientId}`;
}

/** The stored form of one of our replies to `contactId`. */
function entryOf(contactId, msg) {
  return createEntry({
    clientId: msg.client_id,
    agentId: userid,
    account,
    contactId,
    msgType: msg.msg_type,
    msg: msg.msg,
    queuedAt: msg.queued_at,
    written: Boolean(msg.written),
  });
}

/** Keeps a reply this tab queued until the bridge has it; this tab sends it. */
function storeReply(contactId, msg) {
  msg.queued_at = Date.now();
  msg.written = false;
  msg.stored = false;
  // A message to another agent is neither echoed nor taken once by its client_id: stored, each
  // page after would deliver it again. It stays the page's, which asks before it is left.
  if (state.contacts.get(contactId)?.kind === "agent" || !isKept(msg.msg_type, msg.msg)) return;
  const clientId = msg.client_id;
  const keep = () => {
    const found = findByClientId(clientId, contactId);
    // Taken by the bridge, refused or cancelled before the lock came: nothing to keep.
    if (found?.msg !== msg || msg.echoed || msg.status !== "sending") return false;
    msg.stored = outbox.put(entryOf(contactId, msg));
    return msg.stored;
  };
  if (!locks) {
    if (keep()) heldReplies.set(clientId, () => {});
    return;
  }
  let release = () => {};
  const held = new Promise((resolve) => release = resolve);
  heldReplies.set(clientId, release);
  // The lock first, the store after: the other tabs learn of the reply from the store, so each
  // stands in line behind this one. Stored first, another tab's request could come first (the
  // store and the locks are told apart), and both tabs sent it.
  locks.request(lockName(clientId), () => {
    if (keep()) return held;
    heldReplies.delete(clientId);
  }).catch(() => {
    heldReplies.delete(clientId);
    keep();
  });
}

/** Stands in line to send a stored reply another page queued; `atLoad`: found as this page
 * loaded (the page that queued it may be gone), not told by a live tab. */
function awaitReply(clientId, atLoad) {
  if (heldReplies.has(clientId) || awaitedReplies.has(clientId)) return;
  if (!locks) {
    // Without Web Locks no tab can tell whether the one that queued it lives: the page that finds
    // it as it loads sends it, and the bridge, which sends one client_id once, keeps WeChat from
    // a second copy should another do so too.
    if (atLoad) heldReplies.set(clientId, () => {});
    return;
  }
  awaitedReplies.add(clientId);
  locks.request(lockName(clientId), async () => {
    awaitedReplies.delete(clientId);
    // The tab before gives the lock up as it settles the reply, and the store's removal can
    // reach this tab after the lock does: taken at once, the reply went twice.
    await new Promise((resolve) => setTimeout(resolve, TAKEOVER_GRACE_MS));
    // Taken, refused or cancelled while another tab held it: nothing left to send.
    const found = findByClientId(clientId);
    if (!outbox.get(clientId) || !found || found.msg.echoed) return;
    let release = () => {};
    const held = new Promise((resolve) => release = resolve);
    heldReplies.set(clientId, release);
    flushOutbox();
    return held;
  }).catch(() => awaitedReplies.delete(clientId));
}

/** The bridge has the reply (or the agent cancelled it): no tab keeps or sends it any more. */
function settleStored(clientId) {
  if (!clientId) return;
  outbox.remove(clientId);
  heldReplies.get(clientId)?.();
  heldReplies.delete(clientId);
}

/** Shows a stored reply in its conversation, as it was when queued: waiting for the connection,
 * or failed when too old to go out by itself (console/outbox.js). Returns whether it is too old. */
function restoreStored(entry, atLoad) {
  const found = findByClientId(entry.client_id, entry.contact_id);
  if (found) {
    // The echo or the history came first: the bridge has it.
    if (found.msg.echoed || !found.msg.local) settleStored(entry.client_id);
    else if (found.msg.written !== entry.written) {
      found.msg.written = entry.written;
      found.msg.rev += 1;
      if (state.current === found.contactId) renderMessages();
    }
    return false;
  }
  const expired = storedFate(entry, Date.now()) === "expired";
  upsertMessage(entry.contact_id, {
    client_id: entry.client_id,
    contact_id: entry.contact_id,
    direction: "out",
    msg_type: entry.msg_type,
    msg: entry.msg,
    status: expired ? "failed" : "sending",
    failure: expired ? { message: t("outbox.expired") } : undefined,
    local: true,
    stored: true,
    restored: true,
    expired,
    written: entry.written,
    queued_at: entry.queued_at,
    send_time: Math.floor(entry.queued_at / 1000),
    agent_id: userid,
  });
  if (!expired) {
    awaitReply(entry.client_id, atLoad);
    showRestoredInList(entry);
  }
  if (state.current === entry.contact_id) renderMessages({ toBottom: true });
  return expired;
}

/** A reply another tab of ours stored heads its contact's entry here too, as it does there
 * (unless the list has something newer); a page loading has no list yet to show it in. */
function showRestoredInList(entry) {
  const contact = state.contacts.get(entry.contact_id);
  const at = Math.floor(entry.queued_at / 1000);
  if (!contact || Number(contact.last_message_time) > at) return;
  showReply(contact, entry.client_id, {
    last: {
      msg_type: entry.msg_type,
      preview: previewOf(entry.msg_type, entry.msg),
      direction: "out",
    },
    at,
    touched: ++touchCounter,
  });
  renderContacts();
}

/** Every reply stored by an earlier page, or by a tab still open, shown where it belongs. */
function restoreOutbox() {
  let expired = 0;
  for (const entry of outbox.list()) if (restoreStored(entry, true)) expired += 1;
  // In a conversation the agent may not open soon: said once, not left to be found.
  if (expired > 0) toast(t("outbox.expiredNotice", { n: expired }), "error");
}

/** Another tab stored a reply (shown here too), or it left the store: cancelled there (never
 * written to a socket, the copy here goes), or the bridge has it (its echo, reply_sent or the
 * history says how it went). */
function onStoredChange(clientId, value) {
  const entry = value === null ? null : outbox.parse(value);
  if (entry) {
    restoreStored(entry, false);
    return;
  }
  heldReplies.get(clientId)?.();
  heldReplies.delete(clientId);
  const found = findByClientId(clientId);
  if (!found || !found.msg.local || found.msg.echoed) return;
  if (found.msg.status !== "sending" && !found.msg.expired) return;
  if (found.msg.written && found.msg.status === "sending") {
    // Removed, this copy waited for an echo this tab's socket could miss (it was reconnecting
    // without since=), and the reply was gone from this tab though sent.
    checkCopyLater(found.contactId, found.msg);
    return;
  }
  dropUnsent(found.contactId, found.msg);
  withdrawFromList(found.contactId, clientId);
  if (state.current === found.contactId) renderMessages();
}

/** A copy of another tab's reply, which the bridge took or refused: unless the echo or the
 * outcome came meanwhile, the history says what it became (not there: refused, it goes). */
function checkCopyLater(contactId, msg) {
  setTimeout(async () => {
    const gone = () =>
      msg.echoed || msg.status !== "sending" || !conv(contactId).byKey.has(msg.key);
    if (gone()) return;
    let items;
    try {
      items = (await api("/history", { contact_id: contactId, limit: HISTORY_PAGE })).messages ??
        [];
    } catch {
      return; // Left as it is: the next history read says.
    }
    if (gone()) return;
    const item = items.find((i) =>
      i.direction === "out" && String(i.client_id ?? "") === msg.client_id
    );
    if (item) upsertMessage(contactId, { ...item, echoed: true });
    else dropUnsent(contactId, msg);
    if (state.current === contactId) renderMessages();
  }, 1500);
}

/** A reply too old to go out by itself: failed, with the usual Try again (a new reply). */
function expireReply(msg) {
  msg.status = "failed";
  msg.expired = true;
  msg.failure = { message: t("outbox.expired") };
  msg.rev += 1;
}

/** Sends replies a page before this one queued, unless the bridge already has them: that page
 * may have written one just before it went, and the bridge, asked again, answers nothing new. */
async function sendRestored(contactId, msgs) {
  let items = [];
  try {
    items = (await api("/history", { contact_id: contactId, limit: HISTORY_PAGE })).messages ?? [];
  } catch {
    // No history to ask (a colleague's thread, the bridge busy): the client_id keeps it single.
  }
  const wanted = new Set(msgs.map((msg) => msg.client_id));
  for (const item of items) {
    if (item.direction !== "out" || !wanted.has(String(item.client_id ?? ""))) continue;
    upsertMessage(contactId, { ...item, echoed: true });
    settleStored(String(item.client_id));
  }
  for (const msg of msgs) {
    msg.checked = true;
    const pending = msg.status === "sending" && !msg.echoed && conv(contactId).byKey.has(msg.key);
    if (pending && heldReplies.has(msg.client_id)) sendReplyFrame(contactId, msg);
  }
  if (state.current === contactId) renderMessages();
}

/** Takes back a reply that has not left this browser (waiting for the connection, or too old to
 * go by itself), in every tab of this agent. */
function cancelReply(contactId, msg) {
  dropUnsent(contactId, msg);
  settleStored(msg.client_id);
  withdrawFromList(contactId, msg.client_id);
  renderMessages();
}

/** Takes a reply (or upload) of ours that never left out of its conversation. Counted among the
 * messages seen, it made the next new one read as seen already (no "New messages" for it). */
function dropUnsent(contactId, msg) {
  const c = conv(contactId);
  const at = sortedMessages(c).indexOf(msg);
  if (c.seen && at >= 0 && at < c.seen) c.seen -= 1;
  removeMessage(c, msg);
}

/** A reply of ours taken back before it left: its contact's entry shows what it did before. */
function withdrawFromList(contactId, clientId) {
  const kept = (id) => Boolean(findByClientId(id, contactId));
  if (withdrawReply(state.contacts.get(contactId), clientId, kept)) renderContacts();
}

// ---------------------------------------------------------------------------------------------
// Envelopes from the bridge

function handleEnvelope(envelope) {
  const kind = envelopeKind(envelope);
  const data = envelope?.data ?? {};
  if (kind === "heartbeat") {
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
  switch (kind) {
    case "error":
      return handleError(envelope);
    case "ack":
      return handleAck(data);
    case "note":
      return handleNote(data);
    case "system":
      return handleSystem(data);
    case "echo":
      return handleEcho(data);
    default:
      return handleIncoming(data);
  }
}

/** A private note in a conversation: ours echoed, or a handover note from the agent before. */
function handleNote(data) {
  const contactId = String(data.contact_id ?? "");
  if (!contactId) return;
  upsertMessage(contactId, { ...data, direction: "note" });
  if (state.current === contactId) renderMessages({ toBottom: data.agent_id === userid });
}

/** A code-0 answer to one of our frames (a command, or a reply's acceptance). */
function handleAck(data) {
  if (data.client_id) sentNotes.delete(String(data.client_id));
  if (!data.client_id || !data.status) return;
  const found = findByClientId(String(data.client_id), data.contact_id);
  if (!found || !["sent", "delivered", "failed"].includes(data.status)) return;
  // "delivered": a message to another agent, handed to its sockets.
  const status = data.status === "failed" ? "failed" : "sent";
  settleStored(String(data.client_id));
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
    contact.name = data.from ? String(data.from) : t("conv.direct");
  } else {
    if (data.name) nameFromBridge(contact, String(data.name));
    if (data.avatar) contact.avatar = data.avatar;
  }
  if (isNew && fromAgent) {
    contact.last_message = {
      local: true,
      msg_type: msg.msg_type,
      // As in the thread: a colleague's "system" message does not read as the system's notice.
      preview: msg.msg_type === "system" ? "[system]" : previewOf(msg.msg_type, msg.msg),
      direction: "in",
    };
    contact.last_message_time = Math.max(
      Number(contact.last_message_time) || 0,
      Number(msg.send_time) || nowS(),
    );
    contact.touched = ++touchCounter;
    if (!seesNewest(contactId)) contact.unread = (Number(contact.unread) || 0) + 1;
  } else if (isNew) {
    const at = Number(msg.send_time) || nowS();
    contact.last_message = {
      local: true,
      msg_type: msg.msg_type,
      preview: previewOf(msg.msg_type, msg.msg),
      direction: "in",
    };
    contact.last_message_time = Math.max(Number(contact.last_message_time) || 0, at);
    Object.assign(contact, afterInbound(contact, at));
    contact.status = "open";
    contact.touched = ++touchCounter;
    leaveWaiting(contactId);
    if (seesNewest(contactId)) scheduleRead(contactId);
    else contact.unread = (Number(contact.unread) || 0) + 1;
    raiseAlert("message", contactId, contact.name || contactId);
    scheduleContactsRefresh(1500);
  }
  renderContacts();
  if (state.current === contactId) {
    schedule("head");
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
  if (data.client_id) settleStored(String(data.client_id));
  const contact = ensureContact(contactId, {});
  if (!msg.counted && contact.kind !== "agent") {
    // WeChat's quota counts every reply, from any of our tabs: the bridge echoes each once.
    msg.counted = true;
    Object.assign(contact, afterReply(contact));
    leaveWaiting(contactId);
    if (state.current === contactId) schedule("head");
  }
  if (isNew || msg.local) {
    contact.last_message = {
      local: true,
      msg_type: msg.msg_type,
      preview: previewOf(msg.msg_type, msg.msg),
      direction: "out",
      agent_id: msg.agent_id,
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
    if (msg.client_id) settleStored(String(msg.client_id));
    if (found) {
      upsertMessage(found.contactId, {
        client_id: msg.client_id,
        status: "sent",
        reply_id: msg.reply_id,
      });
      if (state.current === found.contactId) renderMessages();
    }
    if (state.failures > 0) {
      state.failures = 0;
      renderConn();
    }
    return;
  }
  const listed = data.id ? state.system.items.find((item) => item.id === data.id) : null;
  // Listed from another tab's save before this socket brought it: new here all the same (the
  // waiting queue, the alerts), only not listed twice.
  const known = Boolean(listed) && !listed.adopted;
  if (listed) delete listed.adopted;
  // The account's reports (a follower's place, WeChat's kf sessions, its own sends): listed,
  // marked, nothing to read.
  const quiet = isReport(msg);
  const followerId = msg.follower_id ? String(msg.follower_id) : "";
  const takenByOther = msg.event === "claimed" && msg.agent_id && msg.agent_id !== userid;
  if (!listed) {
    // A report is never counted, so it is read as it comes. Shown in its follower's thread too
    // (the last branch below), it is read there if that is in view: else the agent who saw it
    // come kept a count of it on the system list and in the title.
    // The queue's own news (who waits, who took them) is what the waiting list shows, live, and
    // counts: counted here too, a waiting follower was two in the title, and one after it left.
    const queue = msg.event === "waiting" || msg.event === "waiting_taken" || takenByOther;
    // A follower's own act (a menu tap) counts on its contact, as the bridge counts it: counted
    // here too, one tap was two in the title.
    const read = quiet || queue || countsUnread(msg) || isViewing(SYSTEM_ID) ||
      (inThread(msg) && isViewing(followerId));
    state.system.items.push({ ...data, read });
    if (state.system.items.length > 500) state.system.items.splice(0, 100);
    scheduleSaveContext();
  }
  if (msg.event === "waiting_taken" && Array.isArray(msg.follower_ids)) {
    // An agent coming online took the backlog: one notice for all of it.
    for (const id of msg.follower_ids) leaveWaiting(String(id));
  }
  if (followerId && msg.event === "waiting") {
    // The queue is live: who waits, since when, what they asked.
    if (!known && !state.waiting.some((w) => w.contact_id === followerId)) {
      state.waiting.push({
        contact_id: followerId,
        name: msg.follower_name || followerId,
        since: Number(msg.since) || nowS(),
        preview: String(msg.preview ?? ""),
      });
      raiseAlert("follower", followerId, msg.follower_name || followerId);
    }
  } else if (takenByOther) {
    leaveWaiting(followerId);
    // Someone else took one we had closed: it is theirs now.
    const c = state.contacts.get(followerId);
    if (c && c.status !== "open" && followerId !== state.current) state.contacts.delete(followerId);
    else if (c) Object.assign(c, { status: "open", agent_id: String(msg.agent_id) });
  } else if (followerId && FORGET_EVENTS.includes(msg.event)) {
    onForgotten(followerId);
  } else if (followerId) {
    const { isNew } = upsertMessage(followerId, {
      ...data,
      direction: "system",
      note_for: followerId,
    });
    const c = conv(followerId);
    // Seen as it comes: below the view it is no "New messages" of its own.
    if (quiet && isNew && c.seen !== undefined) c.seen += 1;
    if (isNew && countsUnread(msg)) {
      // The bridge counted it in the contact's unread: so does the page, or the number jumped
      // at the next contacts refresh (and a read here must tell the bridge).
      const contact = state.contacts.get(followerId);
      if (isViewing(followerId)) scheduleRead(followerId);
      else if (contact) contact.unread = (Number(contact.unread) || 0) + 1;
    }
    if (msg.event === "LOCATION" && !known) onLocation(followerId, msg, data);
    if (msg.event === "transferred_out") onTransferredOut(followerId, msg, data);
    else if (msg.event === "closed") onClosed(followerId);
    else if (["assigned", "transferred_in", "claimed"].includes(msg.event)) {
      const fresh = !state.contacts.has(followerId) || state.transferred.has(followerId);
      // Taken here with "Take it": the agent means to answer them now. Left where it was, the
      // one who waited longest was to be found among all the rows, the focus on the page body.
      const tookIt = msg.event === "claimed" && !takenByOther && state.taking.has(followerId);
      leaveWaiting(followerId);
      onAssigned(followerId, msg, Number(data.send_time) || nowS());
      if (tookIt && !known) openContact(followerId);
      if (!known && fresh && msg.event !== "claimed") {
        raiseAlert("follower", followerId, msg.follower_name || followerId);
      }
    } else if (msg.event === "window_closing" && !known) {
      raiseAlert("closing", followerId, msg.follower_name || followerId);
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
      "claimed",
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
  // Not ours to send to any more, and out of sight to remove: a staged file goes.
  dropStaged(followerId);
  finishAction(followerId);
  saveContext();
}

/** A follower handed over is off that list since `at`: other tabs' older copies must not list it
 * again (saveContext). */
function returned(followerId, at) {
  state.returned.delete(followerId);
  state.returned.set(followerId, { contact_id: followerId, at });
  scheduleSaveContext();
}

/** The follower's client reported a new place (a LOCATION 102): its header shows it at once. */
function onLocation(followerId, msg, data) {
  const contact = state.contacts.get(followerId) ?? state.transferred.get(followerId);
  const location = locationFromReport(msg, data.send_time);
  if (contact && location) contact.location = location;
}

/**
 * The bridge forgot the follower: what this page holds of it goes too (its conversation, its
 * drafts, its place in the lists); the system's notice says so. It stayed listed, its messages
 * on screen and its drafts in localStorage, until the next reload.
 */
function onForgotten(followerId) {
  const name = state.contacts.get(followerId)?.name || followerId;
  leaveWaiting(followerId);
  state.contacts.delete(followerId);
  if (state.transferred.delete(followerId)) returned(followerId, nowS());
  state.convs.delete(followerId);
  drafts.set(followerId, "");
  noteDrafts.set(followerId, "");
  // A file staged for the follower could be neither sent nor removed now, and the page asked
  // before every leave for it: it goes with the rest.
  dropStaged(followerId);
  if (state.current === followerId) {
    state.current = null;
    // The address named it: a reload would ask the bridge for a history it no longer has.
    history.replaceState(null, "", `${location.pathname}${location.search}`);
    el.messages.replaceChildren();
    setReplyText("");
    closeConversationView();
    renderConversation();
    // Gone under the agent's hands, mid-reply: the pane says why, and holds the focus, which
    // fell to the page body with the box (what was typed on went nowhere).
    el.conversationGone.textContent = t("conv.forgotten", { name });
    el.conversationGone.hidden = false;
    // On a phone the pane is out of sight, back at the list.
    if (isNarrow()) toast(el.conversationGone.textContent);
    else el.conversationGone.focus();
  }
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
function onAssigned(followerId, msg, at) {
  const back = state.transferred.delete(followerId);
  if (back) returned(followerId, at);
  const wasAway = back || !state.contacts.has(followerId);
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
    c.loaded = false;
    // Open here (a handed-over one is never loaded after a reload): it loads now.
    if (state.current === followerId) loadHistory(followerId);
  }
}

/** A transfer or close of this contact finished (by this console, or another of ours). */
function finishAction(followerId) {
  if (state.action?.contactId !== followerId) return;
  clearTimeout(state.action.timer);
  const kind = state.action.kind;
  state.action = null;
  // Focus is not dropped on the page body: after an end it stays in the conversation (the reply
  // box reopens it), after a transfer it goes to the next conversation in the list.
  requestAnimationFrame(() => {
    // The list this picks from may still be the one from before the transfer: render it first.
    if (frame) flushRender();
    if (kind === "close" && state.current === followerId) {
      (el.reply.disabled ? el.messages : el.reply).focus();
      return;
    }
    const next = el.contactList.querySelector(".contact:not([data-status='transferred'])") ??
      el.filter;
    next.focus();
  });
}

/** A refused command: the open form says why, or a toast does. True when it was ours. */
function commandRefused(clientId, message) {
  const a = state.action;
  if (a && a.busy && a.clientId === clientId) {
    clearTimeout(a.timer);
    a.busy = false;
    a.error = a.kind === "transfer"
      ? t("transfer.failed", { message })
      : t("close.failed", { message });
    renderAction();
    if (a.kind === "transfer" && state.current === a.contactId) el.transferTo.select();
    return true;
  }
  if (clientId.startsWith("cmd-rename-")) {
    renameRefused(clientId, message);
    return true;
  }
  if (clientId.startsWith("cmd-labels-")) {
    labelsRefused(clientId, message);
    return true;
  }
  if (clientId.startsWith("cmd-note-")) {
    noteRefused(clientId, message);
    return true;
  }
  if (clientId.startsWith("cmd-capacity-")) {
    state.capacityError = t("capacity.refused", { message });
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
  if (isQuietRefusal(clientId)) return;
  if (clientId.startsWith("cmd-claim-")) {
    // Someone else was quicker: the queue is read again. The bridge's "contact o… is served
    // by alice" named the follower by its OpenID, in English whatever the console's language.
    const id = claimIds.get(clientId);
    claimIds.delete(clientId);
    const name = state.waiting.find((w) => w.contact_id === id)?.name || id;
    state.taking.clear();
    toast(id ? t("waiting.lost", { name }) : message, "error");
    scheduleContactsRefresh(100);
    renderViews();
    return;
  }
  if (clientId.startsWith("cmd-") && commandRefused(clientId, message)) return;
  if (data.client_id) {
    const found = findByClientId(String(data.client_id), data.contact_id);
    if (found) {
      // Refused: the bridge had it, and gave its answer; Try again sends it as a new reply.
      settleStored(String(data.client_id));
      if (data.errcode !== undefined || data.limit) {
        state.failures += 1;
        renderConn();
      }
      const contact = state.contacts.get(found.contactId);
      if (contact && WINDOW_CLOSED_ERRCODES.includes(Number(data.errcode))) {
        contact.window_closed = true;
        if (state.current === found.contactId) schedule("head");
      }
      // WeChat delivered nothing and the bridge gave the reply back: its count says so.
      if (contact && typeof data.replies_since_inbound === "number") {
        Object.assign(contact, afterGivenBack(contact, data.replies_since_inbound));
        if (state.current === found.contactId) schedule("head");
      }
      upsertMessage(found.contactId, {
        client_id: data.client_id,
        status: "failed",
        failure: {
          message,
          errcode: data.errcode,
          errmsg: data.errmsg,
          limit: data.limit,
          reopens_at: data.reopens_at,
          // Sent, and WeChat never clearly refused it (the bridge says so).
          unconfirmed: data.unconfirmed === true,
        },
      });
      if (state.current === found.contactId) renderMessages();
      return;
    }
  }
  toast(message, "error");
}

/** Whether a failed reply went to WeChat and got no clear answer (-1: a timeout, a reset, a
 * 5xx; the bridge does not send it again): it counts it as sent, for it may have
 * reached the follower, and says so (`unconfirmed`), on the -1 and in history. */
function mayHaveArrived(msg) {
  const f = msg.failure;
  if (!f) return msg.status === "failed" && msg.unconfirmed === true;
  return f.unconfirmed === true;
}

/** A readable sentence for a refused reply: WeChat's own reason, or the bridge's. */
function failureText(msg) {
  // "Not delivered" and "refused" read as safe to send again, and the follower got it twice.
  if (mayHaveArrived(msg)) {
    const errmsg = msg.failure?.errmsg ?? (typeof msg.error === "string" ? msg.error : "");
    return t("failure.noAnswer", { errmsg });
  }
  const f = msg.failure ?? (typeof msg.error === "object" && msg.error ? msg.error : null);
  if (!f) return typeof msg.error === "string" && msg.error ? msg.error : t("failure.default");
  const hasCode = f.errcode !== undefined && f.errcode !== null && f.errcode !== -1;
  let text;
  if (f.errmsg && hasCode) text = t("failure.wechat", { errmsg: f.errmsg, errcode: f.errcode });
  else if (f.message) text = f.message;
  else if (f.errmsg) text = f.errmsg;
  else if (f.limit === "window") text = t("failure.window");
  else if (f.limit === "quota") text = t("failure.quota");
  else text = t("failure.default");
  if (f.reopens_at) text += t("failure.reopens", { when: reopensText(Number(f.reopens_at)) });
  return text;
}

function reopensText(seconds) {
  const at = new Date(seconds * 1000);
  if (dayKey(seconds) === dayKey(nowS())) return `at ${timeFormat.format(at)}`;
  return `on ${dayFormat.format(at)} ${timeFormat.format(at)}`;
}

// ---------------------------------------------------------------------------------------------
// Replies

function sendReplyFrame(contactId, msg) {
  if (!send(replyFrame(contactId, msg))) return;
  // The bridge neither echoes nor acknowledges a message to another agent on the socket, only
  // refuses it (-1, which still turns it to failed): once written, it counts as sent.
  if (state.contacts.get(contactId)?.kind === "agent") {
    msg.status = "sent";
    msg.rev += 1;
    settleStored(msg.client_id);
    return;
  }
  if (!msg.written) {
    // It may reach the bridge now: no tab offers to cancel it any more. Not put back once it
    // left the store (cancelled in another tab a moment ago).
    msg.written = true;
    msg.rev += 1;
    if (msg.stored && outbox.get(msg.client_id)) outbox.put(entryOf(contactId, msg));
  }
}

/** What WeChat or the bridge said of a failed reply: live, or as history keeps it. */
function failureOf(msg) {
  return msg.failure ?? (typeof msg.error === "object" && msg.error ? msg.error : null);
}

/** Whether a reply to `contactId` can go now (a colleague always can be written to). */
function canReplyTo(contactId) {
  const contact = state.contacts.get(contactId);
  return !contact || contact.kind === "agent" || replyState(contact, nowS()).canReply;
}

/** Takes a failed text back into the reply box to change it; the failed one leaves the thread.
 * Copying a 3,000-character refusal out of its bubble by hand was the only way before. */
function editReply(contactId, msg) {
  if (msg.status !== "failed" || state.current !== contactId) return;
  if (state.mode !== "reply") {
    setMode("reply");
    setReplyText(drafts.get(contactId));
  }
  const text = String(msg.msg?.content ?? "");
  setReplyText(editedBox(el.reply.value, text));
  drafts.set(contactId, el.reply.value);
  cancelReply(contactId, msg);
  tabs?.postMessage({ withdrawn: { contact_id: contactId, client_id: msg.client_id } });
  autosize();
  renderViews();
  el.reply.focus();
  el.reply.setSelectionRange(text.length, text.length);
}

/** Sends a failed text again, as a new reply (the bridge takes one client_id only once). */
function retryReply(contactId, msg) {
  // Only a failed reply: the second click of a double click, before the render took the button
  // away, sent it again under a new client_id, and the follower got it twice.
  if (msg.status !== "failed") return;
  const contact = state.contacts.get(contactId);
  if (contact && !replyState(contact, nowS()).canReply && contact.kind !== "agent") {
    toast(t(`reason.${replyState(contact, nowS()).reason}`), "error");
    return;
  }
  // One too old to go by itself leaves the store with its old client_id.
  settleStored(msg.client_id);
  // This agent's other tabs let go of the failed one (the echo of the new one shows there): its
  // Retry there sent the same words again.
  tabs?.postMessage({ withdrawn: { contact_id: contactId, client_id: msg.client_id } });
  const clientId = newClientId();
  renameReply(contact, msg.client_id, clientId);
  rekeyClientId(conv(contactId), msg, clientId);
  msg.status = "sending";
  msg.failure = undefined;
  msg.error = undefined;
  msg.echoed = false;
  msg.restored = false;
  msg.expired = false;
  // The bridge counts the Retry against WeChat's 5 as the new reply it is, and so does its echo.
  msg.counted = false;
  msg.rev += 1;
  storeReply(contactId, msg);
  sendReplyFrame(contactId, msg);
  renderMessages();
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
    contact_id: contactId,
  });
  storeReply(contactId, msg);
  sendReplyFrame(contactId, msg);
  showReply(ensureContact(contactId, {}), msg.client_id, {
    last: { msg_type: "text", preview: text, direction: "out" },
    at: nowS(),
    touched: ++touchCounter,
  });
  renderContacts();
  renderMessages({ toBottom: true });
}

/** An input method is composing in the reply box (from compositionstart to compositionend). */
let composing = false;

/** Puts `text` in the reply box. That ends a composition there, and Chrome says so by no
 * compositionend: were `composing` left on, Enter would never send again until a blur. */
function setReplyText(text) {
  el.reply.value = text;
  composing = false;
  renderCount();
}

/** The text's length against where it goes, shown from near the limit on; the length now. */
function renderCount() {
  // A message to a colleague never goes to WeChat: only its limits are WeChat's.
  const toAgent = state.contacts.get(state.current)?.kind === "agent";
  const len = textLength(toAgent && state.mode === "reply" ? "agent" : state.mode, el.reply.value);
  const shown = len.near && !el.composer.hidden;
  el.composerCount.hidden = !shown;
  el.composerCount.dataset.over = String(len.over);
  if (shown) {
    const n = (v) => v.toLocaleString(lang);
    el.composerCount.textContent = t(`count.${len.unit}`, { used: n(len.used), max: n(len.max) });
    el.composerCount.title = t(`count.${len.unit}Title`, { max: n(len.max) });
  }
  return len;
}

function onComposerKeydown(event) {
  // A Chinese input method's Enter picks a candidate: it is not ours, nor the picker's. Not every
  // browser and input method marks that keydown (isComposing, keyCode 229), so the composition
  // events are followed too.
  if (composing || event.isComposing || event.keyCode === 229) return;
  if (quickPickerKey(event)) {
    event.preventDefault();
    return;
  }
  if (event.key === "Escape") {
    el.reply.blur();
    return;
  }
  if (event.key !== "Enter" || event.shiftKey) return;
  event.preventDefault();
  submitReply();
}

function submitReply() {
  const text = el.reply.value;
  const files = state.mode === "reply" ? staged.list(state.current) : [];
  if ((!text.trim() && files.length === 0) || el.reply.disabled) return;
  // Past the limit it would be refused (a note by the bridge, a reply by WeChat's 45002): the
  // text stays in the box to shorten.
  const len = renderCount();
  if (len.over) {
    const n = (v) => v.toLocaleString(lang);
    toast(
      t(state.mode === "note" ? "count.overNote" : "count.overReply", {
        used: n(len.used),
        max: n(len.max),
      }),
      "error",
    );
    return;
  }
  if (state.mode === "note") {
    if (!sendNote(text.trim())) {
      toast(t("command.offline"), "error");
      return;
    }
  } else {
    // The files first, as they were put in above the text.
    if (files.length) sendStaged(state.current);
    if (text.trim()) sendReply(text.replace(/\s+$/, ""));
  }
  setReplyText("");
  draftsOf(state.mode).set(state.current, "");
  state.quick = null;
  autosize();
  renderViews();
  // A click on Send left the focus on the button, where the next reply's j or k opened another
  // conversation: the agent goes on typing in the box, as after Enter.
  if (document.activeElement === el.sendButton) el.reply.focus();
}

function autosize() {
  // A hidden box has no height to measure: it is sized when it shows.
  if (!el.reply.offsetParent) return;
  const box = el.messages;
  const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  el.reply.style.height = "auto";
  el.reply.style.height = `${Math.min(el.reply.scrollHeight, 180)}px`;
  // The box grows into the conversation: one read to its last message stays there.
  if (atEnd) box.scrollTop = box.scrollHeight;
}

function onComposerInput() {
  autosize();
  renderCount();
  if (state.current && state.current !== SYSTEM_ID) {
    draftsOf(state.mode).set(state.current, el.reply.value);
  }
  updateQuickPicker();
  if (state.mode === "note") return;
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

/** Uploads run one at a time, so that the follower gets the files in the order chosen. */
let uploadChain = Promise.resolve();

function canAttach() {
  return Boolean(state.current) && state.current !== SYSTEM_ID && !el.conversation.hidden &&
    !el.composer.hidden && !state.needsToken;
}

/** Files picked, pasted or dropped, waiting in the composer for Send. */
const staged = createStaged();

/** Puts each file in the composer of the open conversation, with a preview; Send sends them. */
async function attachFiles(files) {
  const contactId = state.current;
  if (!canAttach() || files.length === 0) return;
  for (const file of files) {
    const contentType = await uploadTypeOf(file);
    const kind = kindOf(contentType);
    // A picture the browser can show is shown at once, from the file itself.
    const preview = kind === "image" && UPLOAD_KINDS[contentType] ? URL.createObjectURL(file) : "";
    staged.add(contactId, { file, contentType, kind, preview });
  }
  if (state.current === contactId) {
    renderStaged();
    if (!isNarrow() && !el.reply.disabled) el.reply.focus();
  }
}

/** Takes a staged file off before it was sent. */
function unstage(contactId, id) {
  const item = staged.remove(contactId, id);
  if (item?.preview) URL.revokeObjectURL(item.preview);
  renderStaged();
  if (!isNarrow() && !el.reply.disabled) el.reply.focus();
}

/** Lets go of every file staged for `contactId`, unsent. */
function dropStaged(contactId) {
  for (const item of staged.take(contactId)) if (item.preview) URL.revokeObjectURL(item.preview);
  renderStaged();
}

/** The open conversation's staged files above the reply box: preview, name, size, Remove. */
function renderStaged() {
  const id = state.current;
  const items = id && id !== SYSTEM_ID && !el.composer.hidden ? staged.list(id) : [];
  el.staged.hidden = items.length === 0;
  el.staged.replaceChildren(
    ...items.map((item) => {
      const name = item.file.name || item.kind;
      return h(
        "div",
        { class: `staged-item kind-${item.kind}`, dataset: { stagedId: item.id } },
        item.preview
          ? h("img", { class: "staged-thumb", src: item.preview, alt: name })
          : h("span", { class: "staged-kind", "aria-hidden": "true" }, t(`staged.${item.kind}`)),
        h(
          "span",
          { class: "staged-name" },
          h("span", { class: "staged-file" }, name),
          h("small", {}, formatSize(item.file.size)),
        ),
        h("button", {
          type: "button",
          class: "link-button staged-remove",
          "aria-label": t("staged.removeName", { name }),
          onclick: () => unstage(id, item.id),
        }, t("staged.remove")),
      );
    }),
    ...(items.length ? [h("small", { class: "staged-hint" }, t("staged.hint"))] : []),
  );
}

/** Sends the files staged for `contactId`, each as its own reply, in order. */
function sendStaged(contactId) {
  for (const item of staged.take(contactId)) {
    if (item.preview) URL.revokeObjectURL(item.preview);
    uploadFile(contactId, item.file, item.contentType);
  }
  renderStaged();
  if (state.current === contactId) renderMessages({ toBottom: true });
}

/** A file on its way as a reply: shown, then uploaded in turn and sent. */
function uploadFile(contactId, file, contentType) {
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

/** Whether a file chosen for a reply is only in this page: on its way to the bridge (or waiting
 * its turn), or failed, a retry could send it, and it is neither retried nor removed (leaving
 * loses it as surely). One refused for good (too large, a type WeChat refuses) loses nothing. */
function uploadsUnderway() {
  for (const c of state.convs.values()) {
    for (const msg of c.byKey.values()) {
      if (!msg.upload || msg.upload.canceled) continue;
      if (msg.status === "uploading") return true;
      if (msg.status === "failed" && msg.failure?.upload && msg.upload.retryable) return true;
    }
  }
  return false;
}

function queueUpload(contactId, msg) {
  uploadChain = uploadChain.then(() => runUpload(contactId, msg)).catch((error) => {
    uploadFailed(
      contactId,
      msg,
      t("upload.failed", { message: error?.message ?? String(error) }),
      true,
    );
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
      t("upload.token"),
      true,
    );
    tokenRefused();
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
    const size = result.status === 413 ? t("upload.thisFile", { size: formatSize(up.size) }) : "";
    uploadFailed(
      contactId,
      msg,
      t("upload.refused", { status: result.status, reason: reason || t("upload.noReason"), size }),
      result.status >= 500 || result.status === 429 || result.status === 408,
    );
    return;
  }
  if (typeof body?.media_id !== "string" || !safeUrl(body?.media_url)) {
    uploadFailed(
      contactId,
      msg,
      t("upload.noMedia"),
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
  storeReply(contactId, msg);
  sendReplyFrame(contactId, msg);
  showReply(ensureContact(contactId, {}), msg.client_id, {
    last: { msg_type: msg.msg_type, preview: previewOf(msg.msg_type, msg.msg), direction: "out" },
    at: nowS(),
    touched: ++touchCounter,
  });
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
    xhr.onerror = () => reject(new Error(t("upload.unreachable")));
    xhr.onabort = () => reject(new Error(t("upload.cancelled")));
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
  if (!up.started) return t("upload.waiting");
  const percent = Math.round((up.progress ?? 0) * 100);
  return percent >= 100 ? t("upload.finishing") : t("upload.progress", { percent });
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
  dropUnsent(contactId, msg);
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
    // Set through the CSSOM: a style attribute is inline style, which the page's CSP blocks.
    const bar = h("span", { class: "upload-bar" });
    bar.style.width = `${percent}%`;
    const track = h("div", {
      class: "upload-track",
      role: "progressbar",
      "aria-label": t("upload.aria", { name: up.name }),
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
    el.dropLabel.textContent = t("composer.dropTo", { name: contact.name || state.current });
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
  return matchesSearch(c, state.filter);
}

function sortedContacts() {
  const now = nowS();
  return [...state.contacts.values()]
    .filter((c) =>
      matchesFilter(c) && !state.transferred.has(c.contact_id) &&
      (c.kind === "agent"
        ? state.triage === "all"
        : isPinnedHere(c.contact_id) || matchesTriage(c, state.triage, userid, now))
    )
    .sort((a, b) =>
      (Number(b.last_message_time) || 0) - (Number(a.last_message_time) || 0) ||
      (b.touched ?? 0) - (a.touched ?? 0)
    );
}

/** The open conversation stays in the filter it was opened in until the agent leaves it: read
 * (under Unread) it left the list at once, and Alt+↓ from nowhere in it went back to the top. */
function pinCurrent() {
  const id = state.current;
  const c = id ? state.contacts.get(id) : null;
  if (!c) {
    state.pinned = null;
    return;
  }
  // Every filter it matched while open keeps it: pinned only in the last one, a look at
  // Closed and back to Unread lost the conversation still being read.
  if (state.pinned?.id !== id) state.pinned = { id, filters: new Set() };
  if (matchesTriage(c, state.triage, userid, nowS())) state.pinned.filters.add(state.triage);
}

/** Whether the open conversation stays in the list under the current filter (pinCurrent). */
function isPinnedHere(contactId) {
  const pin = state.pinned;
  return pin?.id === contactId && contactId === state.current && pin.filters.has(state.triage);
}

function renderContacts() {
  schedule("contacts");
}

/** The next list render brings the open conversation's entry into the list's view. */
let revealActive = false;
/** The contacts with a reply or note draft, as the list render being drawn read them. */
let listDrafts = new Set();

function renderContactsNow() {
  // Rows that moved are taken out and put back: a keyboard user's focus in them must not fall
  // to the page body each time a message comes in.
  const focused = focusedListEntry();
  // One read of each draft index a render, not two storage reads for every contact listed.
  listDrafts = new Set([...drafts.contacts(), ...noteDrafts.contacts()]);
  const listed = sortedContacts();
  const items = listed.map((c) => contactRows.row(c.contact_id, rowKey(c), () => contactItem(c)));
  syncChildren(el.contactList, items);
  contactRows.prune(new Set(state.contacts.keys()));
  if (revealActive) {
    revealActive = false;
    // Opened from the reply box (Alt+↓), the focus stays there: the entry is not scrolled to
    // by a focus, and down a long list the open one went out of the list's view.
    el.contactList.querySelector(".contact.active")?.scrollIntoView({ block: "nearest" });
  }
  el.contactsEmpty.hidden = items.length > 0 || !state.contactsLoaded;
  el.contactsEmpty.textContent = state.filter
    ? t("list.noMatch")
    : state.triage !== "all"
    ? t("list.noneInFilter")
    : state.transferred.size > 0
    ? t("list.noOpen")
    : t("list.empty");

  const transferred = [...state.transferred.values()].filter(matchesFilter)
    .sort((a, b) => b.transferred_at - a.transferred_at);
  el.transferredSection.hidden = transferred.length === 0;
  el.transferredList.replaceChildren(...transferred.map(transferredItem));

  el.systemEntry.replaceChildren(systemItem());
  if (focused) refocusListEntry(focused);
  renderCapacity();
  renderTitle();
  // The header's window countdown stays in step with the list's.
  if (state.current) renderConversationHead();
  renderViews();
}

/** The conversation button in the sidebar's lists that has the focus, or null. */
function focusedListEntry() {
  const active = document.activeElement;
  if (!(active instanceof HTMLElement) || !active.matches(".contact")) return null;
  const lists = [el.contactList, el.transferredList, el.systemEntry];
  return lists.some((list) => list.contains(active)) ? active.dataset.contactId ?? null : null;
}

/** Focus back on the rebuilt button for `contactId`; when it left the lists, on the first
 * conversation (or the filter), never the page body. */
function refocusListEntry(contactId) {
  const selector = `.contact[data-contact-id="${CSS.escape(contactId)}"]`;
  const again = el.contactList.querySelector(selector) ??
    el.transferredList.querySelector(selector) ?? el.systemEntry.querySelector(selector);
  (again ?? el.contactList.querySelector(".contact") ?? el.filter).focus({ preventScroll: true });
}

/** The contact list's rows, kept while what they show stays the same (console/row_cache.js). */
const contactRows = createRowCache();

/** Everything contactItem() shows of `contact`: a row whose key is unchanged is not rebuilt. */
function rowKey(contact) {
  const id = contact.contact_id;
  const current = state.current === id;
  const last = contact.last_message;
  const win = windowOf(contact);
  return JSON.stringify([
    contact.kind,
    contact.name,
    contact.avatar,
    contact.status,
    contact.labels,
    last ? [last.direction, last.agent_id, last.msg_type, last.preview, last.local] : null,
    listTime(Number(contact.last_message_time)),
    current && seesNewest(id) ? 0 : Number(contact.unread) || 0,
    current || !listDrafts.has(id) ? "" : drafts.get(id) || noteDrafts.get(id),
    win.state,
    win.label,
    current,
  ]);
}

/** A row of the contact list; rowKey() names everything it reads. */
function contactItem(contact) {
  const win = windowOf(contact);
  const unread = state.current === contact.contact_id && seesNewest(contact.contact_id)
    ? 0
    : Number(contact.unread) || 0;
  const last = contact.last_message;
  // Another agent's reply is theirs, not "You:".
  const by = last?.direction === "out"
    ? (last.agent_id && last.agent_id !== userid ? `${last.agent_id}: ` : t("list.you"))
    : "";
  // A reply (or note) half typed here and left for another conversation says so, over what
  // came since: covered by the follower's next message, it was forgotten.
  const draft = state.current === contact.contact_id || !listDrafts.has(contact.contact_id)
    ? ""
    : (drafts.get(contact.contact_id) || noteDrafts.get(contact.contact_id)).trim();
  const preview = draft
    ? [h("span", { class: "draft-tag" }, t("list.draft")), draft.split("\n", 1)[0]]
    : last
    ? `${by}${listPreview(last)}`
    : "";
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
          h("span", { class: "contact-preview", dir: "auto" }, preview || "\u00a0"),
          unread > 0
            ? h(
              "span",
              { class: "unread", "aria-label": t("list.unread", { n: unread }) },
              String(unread),
            )
            : null,
        ),
        h(
          "span",
          { class: "contact-row contact-tags" },
          closed ? h("span", { class: "window-pill closed" }, t("list.closed")) : h(
            "span",
            { class: `window-pill ${win.state}`, title: t("window.title") },
            win.label,
          ),
          ...rowLabels(contact.labels ?? []),
        ),
      ),
    ),
  );
}

/** Labels a list row shows: a row is one line, so past the first few a "+N" names the rest. */
const ROW_LABELS = 3;
function rowLabels(labels) {
  const shown = labels.slice(0, ROW_LABELS).map((l) =>
    h("span", { class: "label small", title: l }, l)
  );
  const rest = labels.slice(ROW_LABELS);
  if (rest.length) {
    shown.push(h("span", { class: "label small more", title: rest.join(", ") }, `+${rest.length}`));
  }
  return shown;
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
          h(
            "span",
            { class: "window-pill closed" },
            t("list.transferredTo", { to: entry.transferred_to }),
          ),
        ),
      ),
    ),
  );
}

function systemItem() {
  const last = state.system.items.at(-1);
  const unseen = systemUnseen();
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
          h("span", { class: "contact-name" }, t("list.system")),
          h("span", { class: "contact-time" }, last ? listTime(Number(last.send_time)) : ""),
        ),
        h(
          "span",
          { class: "contact-row" },
          h(
            "span",
            { class: "contact-preview" },
            // Newer than the notices counted, it says why the count did not move.
            last && isReport(last.msg) ? reportTag() : null,
            last ? previewOf("system", last.msg) : t("list.systemEmpty"),
          ),
          unseen > 0 ? h("span", { class: "unread quiet" }, String(unseen)) : null,
        ),
      ),
    ),
  );
}

function renderTitle() {
  const all = updateBadge();
  document.title = all > 0 ? `(${all}) ${t("app.title")}` : t("app.title");
  // On a phone the conversation covers the list, and its title is out of sight: what waits in
  // the other conversations shows on the way back to them, as in WeChat.
  el.backCount.hidden = all === 0;
  el.backCount.textContent = all > 99 ? "99+" : String(all);
  el.back.setAttribute("aria-label", all > 0 ? t("conv.backN", { n: all }) : t("conv.back"));
}

// ---------------------------------------------------------------------------------------------
// Rendering: the conversation

function openContact(contactId) {
  // An unanswered form stays with its conversation (its answer still lands); an idle one closes.
  if (state.action && state.action.contactId !== contactId && !state.action.busy) {
    state.action = null;
  }
  if (state.renaming && state.renaming.contactId !== contactId) state.renaming = null;
  const previous = state.current;
  if (previous && previous !== contactId) {
    // The draft was kept as it was typed (input, quick reply, send), so leaving writes nothing:
    // another tab of this agent may be typing it. The nodes leave the DOM and memory.
    const old = state.convs.get(previous);
    if (old) {
      old.highlight = null;
      old.nodes.clear();
      old.days.clear();
      old.edges.clear();
      old.win = null;
    }
    systemView.nodes.clear();
    el.messages.replaceChildren();
  }
  if (previous !== contactId) {
    const reply = contactId === SYSTEM_ID ? "" : drafts.get(contactId);
    const note = contactId === SYSTEM_ID || reply ? "" : noteDrafts.get(contactId);
    // A note left half-typed comes back as a note, never in the reply box.
    setReplyText(reply || note);
    state.quick = null;
    setMode(note ? "note" : "reply");
    autosize();
  }
  state.current = contactId;
  revealActive = true;
  pinCurrent();
  // On a phone the conversation is a screen of its own: the back gesture returns to the list.
  const url = `${location.pathname}${location.search}#${encodeURIComponent(contactId)}`;
  if (isNarrow() && !history.state?.conversation) {
    history.pushState({ conversation: contactId }, "", url);
  } else {
    history.replaceState(history.state?.conversation ? { conversation: contactId } : null, "", url);
  }
  el.app.classList.add("show-conversation");
  if (contactId === SYSTEM_ID) {
    markSystemRead();
  } else {
    markRead(contactId);
    const c = conv(contactId);
    // A follower handed over is the other agent's: the bridge refuses its history (403), so
    // what this page kept is all there is; after a reload, the notice says where it went.
    if (!c.loaded && !c.loading && hasHistory(contactId)) loadHistory(contactId);
  }
  renderContacts();
  renderConversation({ toBottom: true });
  autosize();
  renderMessagesNow({ toBottom: true });
  if (contactId !== SYSTEM_ID && !isNarrow() && !el.composer.hidden && !el.reply.disabled) {
    el.reply.focus();
  }
}

/** Reply (to WeChat) or private note (to the conversation only). */
function setMode(mode) {
  state.mode = mode;
  el.modeReply.setAttribute("aria-selected", String(mode === "reply"));
  el.modeNote.setAttribute("aria-selected", String(mode === "note"));
  el.composer.dataset.mode = mode;
  el.reply.placeholder = mode === "note"
    ? t("composer.notePlaceholder")
    : t("composer.placeholder");
  el.sendButton.textContent = mode === "note" ? t("composer.addNote") : t("composer.send");
  renderCount();
  if (state.current) renderConversationHead();
}

/** The agent turns the box to a reply or a note: what it holds is kept as that from now on. */
function switchMode(mode) {
  const id = state.current;
  if (mode !== state.mode && id && id !== SYSTEM_ID) {
    draftsOf(state.mode).set(id, "");
    draftsOf(mode).set(id, el.reply.value);
  }
  setMode(mode);
  el.reply.focus();
}

function isNarrow() {
  return matchMedia("(max-width: 760px)").matches;
}

function closeConversationView() {
  el.app.classList.remove("show-conversation");
  // Back at the list the agent has left the conversation (pinCurrent): read under Unread, it
  // stayed there, among the ones still to read.
  if (state.pinned) {
    state.pinned = null;
    renderContacts();
  }
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
  el.conversationGone.hidden = true;
  renderConversationHead();
  renderAction();
  renderMessages(options);
}

/** The follower's last known place under its name, a link to the map; hidden when unknown. */
function renderPlace(place) {
  el.convPlace.hidden = !place;
  if (!place) return;
  el.convPlace.href = place.href;
  // The pin beside it is an inline SVG: an emoji is an empty box where no emoji font is.
  el.convPlaceText.textContent = t("conv.place", {
    coords: place.coords,
    when: place.time ? listTime(place.time) : "",
  });
  el.convPlace.title = t("conv.placeTitle", {
    precision: place.precision,
    time: place.time ? placeTimeFormat.format(new Date(place.time * 1000)) : "",
  });
}

function renderConversationHead() {
  const id = state.current;
  if (!id) return;
  const isSystem = id === SYSTEM_ID;
  const contact = isSystem
    ? { contact_id: SYSTEM_ID, name: t("list.system") }
    : ensureContactView(id);
  fillAvatar(el.convAvatar, contact);
  el.convName.textContent = contact.name || id;
  const renamable = canRename(id);
  const editing = renamable && state.renaming?.contactId === id;
  // While the name is edited, the OpenID under it says who is being named.
  const named = editing || (contact.name && contact.name !== id);
  el.convSub.textContent = isSystem
    ? t("conv.systemSub")
    : contact.kind === "agent"
    ? t("conv.agentSub")
    : named
    ? id
    : t("conv.follower");
  el.convSub.title = !isSystem && contact.kind !== "agent" && named ? t("conv.openid") : "";
  el.convSub.classList.toggle("plain", isSystem || contact.kind === "agent" || !named);
  renderPlace(isSystem ? null : placeView(contact.location));
  renderRename(renamable, editing);
  const transferred = state.transferred.get(id);
  const waiting = state.waiting.some((w) => w.contact_id === id) ||
    contact.status === "waiting";
  // Ours to transfer or end: a follower we serve, not one we handed over, closed or not yet got.
  const ours = !isSystem && !transferred && contact.kind !== "agent" &&
    state.contacts.has(id) && contact.status !== "closed" && contact.status !== "waiting";
  el.convActions.hidden = !ours;
  el.composer.hidden = isSystem || Boolean(transferred);
  el.composerTools.hidden = el.composer.hidden || contact.kind === "agent";
  el.composerHint.hidden = el.composer.hidden;
  renderStaged();
  const status = transferred ? "transferred" : contact.status ?? "open";
  el.conversation.dataset.status = isSystem ? "system" : status;
  if (isSystem) {
    el.convWindow.hidden = true;
    el.convQuota.hidden = true;
    el.windowNotice.hidden = true;
    setComposerBlocked(null);
    return;
  }
  const win = windowOf(contact);
  const limits = replyState(contact, nowS());
  const closed = contact.status === "closed";
  el.convWindow.hidden = false;
  el.convWindow.className = `window-pill ${transferred || closed ? "closed" : win.state}`;
  el.convWindow.textContent = transferred
    ? t("list.transferred")
    : closed
    ? t("list.closed")
    : win.state === "unknown"
    ? ""
    : win.label;
  el.convWindow.title = transferred
    ? t("list.transferredTo", { to: transferred.transferred_to })
    : t("window.title");
  const quota = transferred ? null : quotaPill(contact, nowS(), t);
  el.convQuota.hidden = !quota;
  el.convQuota.textContent = quota?.text ?? "";
  el.convQuota.title = t(quotaKeys(limits).title);
  el.convQuota.dataset.left = String(quota?.left ?? 0);
  const name = contact.name || id;
  const notice = (kind, text) => {
    el.windowNotice.hidden = false;
    el.windowNotice.className = `window-notice ${kind}`;
    el.windowNotice.textContent = text;
  };
  if (transferred) {
    notice("info", t("notice.transferred", { to: transferred.transferred_to, name }));
  } else if (contact.kind === "agent") {
    el.windowNotice.hidden = true;
  } else if (contact.subscribed === false) {
    notice("closed", t("notice.unsubscribed", { name }));
  } else if (win.state === "closed") {
    notice("closed", t("notice.windowClosed", { name }));
  } else if (limits.reason === "quota") {
    notice("closed", t(quotaKeys(limits).used, { name }));
  } else if (waiting) {
    notice("info", t("notice.waiting", { name }));
  } else if (win.state === "soon") {
    notice("soon", t("notice.soon", { d: formatDuration(win.left) }));
  } else if (closed) {
    notice("info", t("notice.ended", { name }));
  } else {
    el.windowNotice.hidden = true;
  }
  // What WeChat will refuse is not offered: the box says why instead (notes always go).
  const blocked = contact.kind === "agent" || transferred || state.mode === "note" ||
      limits.state === "unknown"
    ? null
    : limits.reason;
  setComposerBlocked(blocked);
}

/** Disables the reply box with the reason (a key of reason.*), or enables it (null). */
function setComposerBlocked(reason) {
  const blocked = reason !== null && reason !== undefined;
  el.reply.disabled = blocked;
  el.sendButton.disabled = blocked;
  el.attachButton.disabled = blocked;
  el.composer.dataset.blocked = String(blocked);
  el.composerReason.hidden = !blocked;
  el.composerReason.textContent = blocked ? t(`reason.${reason}`) : "";
  if (blocked) {
    el.reply.placeholder = t(`reason.${reason}`);
  } else {
    el.reply.placeholder = state.mode === "note"
      ? t("composer.notePlaceholder")
      : t("composer.placeholder");
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
  if (kind === "transfer") {
    el.transferTo.value = "";
    el.transferNote.value = "";
    state.transferTo = "";
    loadAgents();
  }
  renderAction();
  renderViews();
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
    ? [
      el.transferName,
      el.transferSubmit,
      el.transferError,
      t("transfer.busy"),
      t("transfer.submit"),
    ]
    : [el.closeName, el.closeSubmit, el.closeError, t("close.busy"), t("close.submit")];
  nameEl.textContent = name;
  el.closeQuestion.textContent = t("close.question", { name });
  el.transferNote.disabled = a.busy;
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
    a.error = t("transfer.needAgent");
    renderAction();
    el.transferTo.focus();
    return;
  }
  const picked = state.agents.find((x) => x.agent_id === to);
  // An offline agent is accepted (they see it when back), but never silently.
  if (picked && !picked.online) toast(t("transfer.offlineWarn", { agent: to }), "info");
  const note = el.transferNote.value.trim();
  runAction(a, "transfer", { contact_id: a.contactId, msg: note ? { to, note } : { to } });
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
    a.error = t("command.offline");
    renderAction();
    return;
  }
  a.busy = true;
  a.error = "";
  a.clientId = clientId;
  a.timer = setTimeout(() => {
    if (state.action !== a || !a.busy) return;
    a.busy = false;
    a.error = t("command.noAnswer");
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
    // Told once the bridge has it: a name it refused never shows in the other tabs.
    tabs?.postMessage({ edited: { contact_id: contact.contact_id, name } });
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
  if (name === "") return renameProblem(t("rename.empty"));
  if (name.length > NAME_MAX) {
    return renameProblem(t("rename.long", { max: NAME_MAX, n: name.length }));
  }
  if (name === contact.name) return cancelRename();
  const clientId = sendCommand("rename", { contact_id: id, msg: { name } });
  if (!clientId) {
    return renameProblem(t("command.offline"));
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
        t("rename.unconfirmed"),
      );
    }
  }, delay);
}

function renameRefused(clientId, message) {
  for (const [id, pending] of state.renames) {
    if (pending.clientId === clientId) {
      renameFailed(id, pending, t("rename.failed", { message }));
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
  el.capacityValue.textContent = typeof max === "number" ? String(max) : t("capacity.none");
  el.capacityButton.dataset.max = typeof max === "number" ? String(max) : "";
  el.capacityButton.classList.toggle("full", typeof max === "number" && openCount() >= max);
  const open = openCount();
  el.capacityOpen.textContent = t("capacity.open", { n: open });
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
    state.capacityError = t("capacity.bad");
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

/** A browser where the agent never set the capacity shows the one the bridge enforces (set on
 * another PC or profile, GET B/agents has it), rather than "no limit" while the bridge queues
 * followers; asked again on each connect, since another console may change it meanwhile. */
async function adoptBridgeCapacity() {
  let body;
  try {
    body = await api("/agents");
  } catch {
    return;
  }
  // Set in this browser while the answer came: that one is sent, and shown.
  if (readCapacity() !== undefined) return;
  const own = (Array.isArray(body?.agents) ? body.agents : []).find((a) => a.agent_id === userid);
  // An agent the bridge has no record of has no limit there.
  state.capacity = typeof own?.capacity === "number" ? own.capacity : null;
  renderCapacity();
}

/** The follower simulator writes as a demo account: offered only where the bridge runs in demo
 * mode (with WeChat credentials its demo routes are 404, and what it posted went into the real
 * account's bridge with no reply able to come back). */
async function showSimulatorInDemo() {
  try {
    await api("/demo/replies", { contact_id: "simulator-probe" });
    el.simulatorLink.hidden = false;
  } catch (error) {
    // A token refused says nothing of the mode; the next connect asks again.
    if (!(error instanceof AuthError)) el.simulatorLink.hidden = true;
  }
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

function renderMessages(options) {
  if (state.current) schedule("messages", options);
}

/** A node that stays the same object while `key` does, so re-renders do not replace it. */
function cachedNode(cache, key, build) {
  let node = cache.get(key);
  if (!node) cache.set(key, node = build());
  return node;
}

/** Puts `nodes` into `box` in order, touching only what changed: an append is one insert. */
function reconcile(box, nodes) {
  const want = new Set(nodes);
  for (const child of [...box.childNodes]) if (!want.has(child)) child.remove();
  let cursor = box.firstChild;
  for (const node of nodes) {
    if (cursor === node) cursor = cursor.nextSibling;
    else box.insertBefore(node, cursor);
  }
}

const systemView = { nodes: new Map(), days: new Map(), edges: new Map() };

function renderMessagesNow({ toBottom = false } = {}) {
  const id = state.current;
  if (!id) return;
  const box = el.messages;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  let list;
  let c = null;
  if (id === SYSTEM_ID) {
    list = state.system.items.slice(-win.MAX).map((data, i) => ({
      ...data,
      direction: "system",
      key: `s${data.id ?? i}`,
      order: i,
      rev: 0,
    }));
  } else {
    c = conv(id);
    list = sortedMessages(c);
    c.win = !c.win || toBottom ? win.newestWindow(list.length) : win.grow(c.win, list.length);
  }
  const w = c ? c.win : win.newestWindow(list.length);
  const view = c ?? systemView;
  const nodes = [];
  const edge = (key, build) => nodes.push(cachedNode(view.edges, key, build));
  if (c && w.start > 0) {
    edge("earlier", () =>
      h(
        "div",
        { class: "history-edge" },
        h("button", {
          type: "button",
          class: "ghost-button",
          onclick: () => slideOlder(c),
        }, t("conv.loadEarlier")),
      ));
  } else if (c) {
    if (c.loading) edge("loading", () => h("div", { class: "history-edge" }, t("conv.loading")));
    else if (c.error) {
      nodes.push(h(
        "div",
        { class: "history-edge error" },
        c.error,
        " ",
        h(
          "button",
          { type: "button", class: "link-button", onclick: () => loadHistory(id) },
          t("conv.tryAgain"),
        ),
      ));
    } else if (c.nextBefore) {
      edge("more", () =>
        h(
          "div",
          { class: "history-edge" },
          h("button", {
            type: "button",
            class: "ghost-button",
            onclick: () => loadHistory(id, { older: true }),
          }, t("conv.loadEarlier")),
        ));
    } else if (c.loaded && list.length > 0) {
      edge("start", () => h("div", { class: "history-edge" }, t("conv.start")));
    }
  }
  if (list.length === 0 && !(c?.loading)) {
    edge(
      "empty",
      () =>
        h(
          "div",
          { class: "history-edge" },
          id === SYSTEM_ID ? t("conv.systemEmpty") : t("conv.empty"),
        ),
    );
  }
  let lastDay = "";
  const shown = new Set();
  for (let i = w.start; i < w.end; i++) {
    const msg = list[i];
    const day = dayKey(Number(msg.send_time) || nowS());
    if (day !== lastDay) {
      // The label is in the key: a page left open overnight had yesterday's "Today" for good.
      const label = dayLabel(Number(msg.send_time) || nowS());
      nodes.push(
        cachedNode(
          view.days,
          `${day}:${label}:${i === w.start ? "top" : msg.key}`,
          () => h("div", { class: "day", role: "separator" }, h("span", {}, label)),
        ),
      );
      lastDay = day;
    }
    shown.add(msg.key);
    nodes.push(messageNode(view, msg));
  }
  // Nodes out of the window are let go: the DOM and this cache stay bounded.
  for (const key of view.nodes.keys()) if (!shown.has(key)) view.nodes.delete(key);
  if (view.days.size > 64) view.days.clear();
  const anchor = !toBottom && !nearBottom ? anchorOf(box) : null;
  // reconcile moves cached nodes without rebuilding them, so a playing <audio> keeps playing.
  reconcile(box, nodes);
  if (toBottom || (nearBottom && w.following)) {
    box.scrollTop = box.scrollHeight;
    if (c) c.seen = list.length;
    caughtUp();
  } else if (anchor?.node.isConnected) {
    box.scrollTop = anchor.node.offsetTop - anchor.top;
  }
  renderNewPill(c, list.length);
}

/** The first message in view and its distance from the top, to keep it still over a render. */
function anchorOf(box) {
  for (const node of box.children) {
    // Not the edge or the top day line: a render keeps them on top, over the older messages it
    // put in, so the page showed those, not the one being read, and at scrollTop 0 the wheel
    // had nothing to scroll to ask for more.
    if (!node.classList.contains("msg")) continue;
    if (node.offsetTop + node.offsetHeight > box.scrollTop) {
      return { node, top: node.offsetTop - box.scrollTop };
    }
  }
  return null;
}

/** "New messages ↓": messages arrived below while the agent reads further up. */
function renderNewPill(c, length) {
  // Only what came since the agent was last at the newest: counting every message below the
  // window too, a conversation opened at a search hit had one new message read as two.
  const pending = c ? Math.max(0, length - (c.seen ?? length)) : 0;
  el.newPill.hidden = pending === 0;
  el.newPill.textContent = pending > 1
    ? t("conv.newMessagesN", { n: pending })
    : t("conv.newMessages");
  renderLatestButton(c, length);
}

/** "Jump to latest": the view is away from the newest message (a search hit, scrolled back),
 * and no pill already offers the way down. */
function renderLatestButton(c, length) {
  const box = el.messages;
  const away = Boolean(c?.win) &&
    (c.win.end < length || box.scrollHeight - box.scrollTop - box.clientHeight >
        box.clientHeight / 2);
  el.latest.hidden = !away || !el.newPill.hidden;
}

/** Shows the newest message, at the bottom, with the window drawn anew around it. */
function jumpToLatest() {
  const c = state.current ? conv(state.current) : null;
  if (c) {
    c.win = null;
    c.highlight = null;
  }
  renderMessagesNow({ toBottom: true });
  // The focus leaves the button, hidden now; on a phone, not for a keyboard over the messages.
  if (!isNarrow() && !el.reply.disabled && !el.composer.hidden) el.reply.focus();
  else el.messages.focus({ preventScroll: true });
}

function slideOlder(c) {
  const next = win.older(c.win);
  c.win = next.win;
  renderMessagesNow({});
  if (next.atStart && c.nextBefore && !c.loading) loadHistory(state.current, { older: true });
}

/** When the agent last scrolled by hand: only that moves the window or stops it following the
 * newest message. Scroll events the page causes itself (trimming the top of a following
 * window, the browser's scroll anchoring) would otherwise read as the agent scrolling away. */
// Never, at first: 0 would read as a scroll at the page's start (performance.now()'s origin),
// and a scroll the page causes itself within its first second stopped it following the newest.
let userScrollAt = -Infinity;

function noteUserScroll() {
  userScrollAt = performance.now();
}

function onMessagesScroll() {
  const c = state.current && state.current !== SYSTEM_ID ? conv(state.current) : null;
  if (!c?.win) return;
  renderLatestButton(c, sortedMessages(c).length);
  if (performance.now() - userScrollAt > 1000) return;
  const box = el.messages;
  const length = sortedMessages(c).length;
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  if (box.scrollTop < 60) {
    if (c.win.start > 0) slideOlder(c);
    else if (c.nextBefore && !c.loading) loadHistory(state.current, { older: true });
  } else if (atBottom && c.win.end < length) {
    c.win = win.newer(c.win, length);
    renderMessagesNow({});
  } else if (atBottom) {
    c.win.following = true;
    c.seen = length;
    renderNewPill(c, length);
    caughtUp();
  } else if (c.win.following && !atBottom) {
    c.win = { ...c.win, following: false };
  }
}

function messageNode(view, msg) {
  const cached = view.nodes.get(msg.key);
  if (cached && cached.rev === msg.rev) return cached.node;
  const node = buildMessage(msg);
  // The message a search opened stays marked when it is rebuilt (history merged into it).
  if (view.highlight === msg.key) node.classList.add("highlight");
  view.nodes.set(msg.key, { rev: msg.rev, node });
  return node;
}

function buildMessage(msg) {
  const time = h("time", {
    datetime: new Date((Number(msg.send_time) || nowS()) * 1000).toISOString(),
  }, timeFormat.format(new Date((Number(msg.send_time) || nowS()) * 1000)));
  // Another agent's message (`from`, set by the bridge) is never the system's notice, whatever
  // type it claims: drawn as one, a colleague could write "the conversation has ended".
  const fromAgent = msg.from !== undefined && msg.from !== null;
  if (!fromAgent && (msg.direction === "system" || msg.msg_type === "system")) {
    return systemNote(msg, time);
  }
  if (msg.direction === "note" || msg.msg_type === "note") {
    return h(
      "div",
      { class: "msg private-note", dataset: { id: msg.id ?? "" } },
      h("div", { class: "note-kicker" }, t("note.by", { agent: msg.agent_id ?? msg.name ?? "" })),
      h(
        "div",
        { class: "bubble" },
        h("div", { class: "text", dir: "auto" }, linkify(String(msg.msg?.content ?? ""))),
      ),
      h("div", { class: "meta" }, time),
    );
  }
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
        }, t("cancel")),
      );
    } else if (uploadFailedHere) {
      meta.append(h("span", { class: "status failed" }, t("status.notSent")));
    } else if (status === "sending") {
      const waiting = !(conn.opened && !conn.wentOffline);
      meta.append(
        h(
          "span",
          { class: "status sending" },
          waiting ? t("status.waitingConn") : t("status.sending"),
        ),
      );
      // Only what never left this browser can be taken back: a frame written may be at WeChat.
      if (waiting && msg.local && !msg.echoed && !msg.written) {
        meta.append(h("button", {
          type: "button",
          class: "link-button meta-action cancel-reply",
          onclick: () => cancelReply(msg.contact_id, msg),
        }, t("outbox.cancel")));
      }
    } else if (status === "failed") {
      meta.append(
        h(
          "span",
          { class: "status failed" },
          mayHaveArrived(msg) ? t("status.unconfirmed") : t("status.failed"),
        ),
      );
      if (msg.msg_type === "text" && (msg.local || msg.agent_id === userid)) {
        // Sent again unchanged, a text too long (45002) or past the window or the quota fails
        // again: Retry only where it can work, Edit always.
        if (canRetry(failureOf(msg), canReplyTo(msg.contact_id))) {
          meta.append(h("button", {
            type: "button",
            class: "link-button meta-action retry-button",
            onclick: () => retryReply(msg.contact_id, msg),
          }, t("status.retry")));
        }
        meta.append(h("button", {
          type: "button",
          class: "link-button meta-action edit-button",
          onclick: () => editReply(msg.contact_id, msg),
        }, t("status.edit")));
      }
      if (msg.expired) {
        meta.append(h("button", {
          type: "button",
          class: "link-button meta-action remove-reply",
          onclick: () => cancelReply(msg.contact_id, msg),
        }, t("outbox.remove")));
      }
    } else {
      meta.append(h("span", { class: "status sent" }, t("status.sent")));
    }
    // Who answered what: another agent's reply carries their id, not "You".
    if (msg.agent_id && msg.agent_id !== userid) {
      meta.prepend(h("span", { class: "by" }, t("status.by", { agent: msg.agent_id })));
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
        }, t("conv.tryAgain"))
        : null,
      msg.upload.retryable ? " · " : null,
      h("button", {
        type: "button",
        class: "link-button",
        onclick: () => discardUpload(msg.contact_id, msg),
      }, t("upload.remove")),
    ));
  } else if (out && status === "failed") {
    node.append(h("div", { class: "failure", role: "note" }, failureText(msg)));
  }
  return node;
}

/** A system message in the agent's language; the bridge's own text where the table has none. */
function systemText(m) {
  return eventText(m, t, lang);
}

/** The marker of a report (reports.js): listed, and deliberately counted nowhere. */
function reportTag() {
  return h("span", { class: "report-tag", title: t("report.title") }, t("report.tag"));
}

function systemNote(msg, time) {
  const m = msg.msg ?? {};
  const text = systemText(m);
  const node = h(
    "div",
    { class: "msg note", dataset: { event: m.event ?? "" } },
    isReport(m) ? reportTag() : null,
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
      }, t("conv.openConversation")),
    );
  }
  return node;
}

// ---------------------------------------------------------------------------------------------
// Token and sign-in

/**
 * The bridge refused this tab's token or it expired: a newer one another tab of this agent saved
 * meanwhile (replaced there before this one ran out) is taken, else the agent is asked. This tab
 * asked for a token already in this browser, and a shift's second tab asked again.
 */
function tokenRefused(reason) {
  const saved = readToken();
  if (!state.needsToken && saved && saved !== state.token) {
    abandonSocket();
    clearTimeout(conn.retryTimer);
    useToken(saved);
    return;
  }
  needToken(reason);
}

/** Asks for a token (`reason` says why, else whether the saved one was refused). */
function needToken(reason) {
  if (state.needsToken) return;
  state.needsToken = true;
  abandonSocket();
  clearTimeout(conn.retryTimer);
  setConn("token");
  el.tokenReason.textContent = reason ??
    (state.token ? t("token.refused") : t("token.required"));
  el.tokenAgent.textContent = userid;
  el.tokenInput.value = "";
  el.tokenPanel.hidden = false;
  el.panes.hidden = true;
  // A dialog left open covered the token box and kept the page under it inert: the focus
  // stayed in the dialog, and a pasted token went into the search box, then into a search.
  if (state.dialog) {
    state.dialog = null;
    renderViews();
  }
  el.tokenInput.focus();
}

/** Goes on with `token` (pasted here or in another tab) from the token panel. */
function useToken(token) {
  state.token = token;
  state.needsToken = false;
  start();
}

async function start() {
  el.panes.hidden = false;
  el.tokenPanel.hidden = true;
  el.tokenButton.hidden = !state.token;
  try {
    await loadContacts();
  } catch (error) {
    if (error instanceof AuthError) return;
    toast(
      t("toast.loadFailed", { what: t("toast.conversations"), message: error.message }),
      "error",
    );
  }
  connect();
  loadQuickReplies();
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (wanted && !state.current) openContact(wanted);
}

/** Keys that work anywhere on the page (see SHORTCUTS in console/views.js). */
function onGlobalKeydown(event) {
  if (event.isComposing || event.keyCode === 229) return;
  const typing = event.target instanceof HTMLElement &&
    (event.target.matches("input, textarea, select") || event.target.isContentEditable);
  const key = event.key;
  if (state.dialog) {
    if (key === "Escape") {
      event.preventDefault();
      closeDialog();
    }
    return;
  }
  const move = (step) => {
    const ids = [...el.contactList.querySelectorAll(".contact")].map((n) => n.dataset.contactId);
    if (ids.length === 0) return;
    const at = ids.indexOf(state.current);
    const next = ids[(at + step + ids.length) % ids.length] ?? ids[0];
    openContact(next);
    // From the reply box the agent goes on typing there (openContact focused it): on the list
    // entry, the next reply's j or k would open another conversation.
    if (event.target === el.reply && document.activeElement === el.reply) return;
    el.contactList.querySelector(`.contact[data-contact-id="${CSS.escape(next)}"]`)?.focus();
  };
  if (event.altKey && (key === "ArrowDown" || key === "ArrowUp")) {
    event.preventDefault();
    move(key === "ArrowDown" ? 1 : -1);
  } else if (event.altKey && (key === "t" || key === "T") && !el.convActions.hidden) {
    event.preventDefault();
    openAction("transfer");
  } else if (event.altKey && (key === "e" || key === "E") && !el.convActions.hidden) {
    event.preventDefault();
    openAction("close");
  } else if ((event.ctrlKey || event.metaKey) && (key === "k" || key === "K")) {
    event.preventDefault();
    openDialog("search");
  } else if (typing || event.ctrlKey || event.metaKey || event.altKey) {
    return;
  } else if (key === "j" || key === "k") {
    move(key === "j" ? 1 : -1);
  } else if (key === "r" && !el.composer.hidden && !el.reply.disabled) {
    event.preventDefault();
    el.reply.focus();
  } else if (key === "?") {
    event.preventDefault();
    openDialog("help");
  }
}

/** The 48-hour windows tick on: a conversation whose window enters its last two hours alerts
 * once (the bridge's own notice comes within the last hour). */
const closingAlerted = new Set();
function checkClosingWindows() {
  for (const c of state.contacts.values()) {
    if (c.kind === "agent" || c.status === "closed") continue;
    const key = `${c.contact_id}:${c.window_expires_at}`;
    if (replyState(c, nowS()).state === "soon" && !closingAlerted.has(key)) {
      closingAlerted.add(key);
      raiseAlert("closing", c.contact_id, c.name || c.contact_id);
    }
  }
}

function init() {
  applyStaticStrings();
  applyTheme();
  matchMedia("(prefers-color-scheme: dark)").addEventListener?.("change", applyTheme);
  if (!userid) {
    el.signin.hidden = false;
    setConn("idle");
    el.connLabel.textContent = t("conn.notSignedIn");
    el.signinForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = String(new FormData(el.signinForm).get("userid") ?? "").trim();
      if (value) location.search = `?userid=${encodeURIComponent(value)}`;
    });
    return;
  }
  el.agent.hidden = false;
  el.agentId.textContent = userid;
  mounts.triage = byId("triage-mount");
  mounts.waiting = byId("waiting-mount");
  mounts.transfer = byId("transfer-agents");
  mounts.quick = byId("quick-mount");
  mounts.panel = byId("panel-mount");
  mounts.dialog = byId("dialog-mount");
  restoreContext();
  setMode("reply");
  el.modeReply.addEventListener("click", () => switchMode("reply"));
  el.modeNote.addEventListener("click", () => switchMode("note"));
  el.quickButton.addEventListener("click", () => openDialog("quick"));
  el.panelButton.addEventListener("click", () => {
    state.panel = !state.panel;
    renderViews();
  });
  el.settingsButton.addEventListener("click", () => openDialog("settings"));
  el.helpButton.addEventListener("click", () => openDialog("help"));
  el.newPill.addEventListener("click", jumpToLatest);
  el.latest.addEventListener("click", jumpToLatest);
  el.messages.addEventListener("scroll", onMessagesScroll, { passive: true });
  for (const type of ["wheel", "touchmove", "keydown", "pointerdown"]) {
    el.messages.addEventListener(type, noteUserScroll, { passive: true });
  }
  // Pictures load after the conversation opened: it stays at the newest message.
  const keepFollowing = () => {
    const c = state.current ? state.convs.get(state.current) : null;
    if (c?.win?.following ?? state.current === SYSTEM_ID) {
      el.messages.scrollTop = el.messages.scrollHeight;
    }
  };
  el.messages.addEventListener("load", keepFollowing, true);
  // So does a conversation whose box gets shorter (the transfer or end form under its header, a
  // notice, the reply box growing): the newest messages were hidden under the form, and what
  // the follower wrote meanwhile came in out of view, its render no longer near the bottom.
  new ResizeObserver(keepFollowing).observe(el.messages);
  document.addEventListener("keydown", onGlobalKeydown);
  // A reload right after an event must not lose it to the save's debounce.
  addEventListener("pagehide", saveContext);
  addEventListener("beforeunload", (event) => {
    // A reply not yet taken by the bridge that the browser would not store is lost with the
    // page (a stored one is sent by the next page, or another tab), and so is a file still
    // uploading, or failed and kept for a retry that could send it, or put in the box and not
    // sent yet: it is only here.
    const unstored = [...pendingReplies()].some(([, msg]) => !msg.stored);
    if (!unstored && !uploadsUnderway() && staged.count() === 0) return;
    event.preventDefault();
    event.returnValue = t("alert.leave");
  });
  setInterval(() => {
    checkClosingWindows();
    // An agent coming online takes waiting followers without a notice to the rest: reread.
    if (state.waiting.length > 0) scheduleContactsRefresh(0);
  }, 30_000);

  el.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = el.tokenInput.value.trim();
    if (!token) return;
    writeToken(token);
    useToken(token);
  });
  el.tokenForget.addEventListener("click", () => {
    state.token = "";
    writeToken("");
    el.tokenInput.value = "";
    el.tokenReason.textContent = t("token.forgotten");
  });
  el.tokenButton.addEventListener("click", () => {
    state.needsToken = false;
    needToken();
    el.tokenReason.textContent = t("token.replace");
  });

  el.filter.addEventListener("input", () => {
    state.filter = el.filter.value.trim();
    // What the agent does shows at once; only bursts from the socket wait for a frame.
    renderContactsNow();
  });
  el.back.addEventListener("click", onBack);
  addEventListener("popstate", (event) => {
    if (!event.state?.conversation) closeConversationView();
  });
  tabs?.addEventListener("message", onTabMessage);
  addEventListener("storage", onStorage);
  el.reply.addEventListener("compositionstart", () => composing = true);
  el.reply.addEventListener("compositionend", () => composing = false);
  el.reply.addEventListener("blur", () => composing = false);
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
    // A socket open across the outage often gets no close (the watchdog would take a minute or
    // more to notice): what came meanwhile is asked for now.
    if (conn.opened && conn.wentOffline) replaceSocket();
    else if (!conn.opened) reconnectNow();
  });
  addEventListener("offline", () => {
    // Nothing arrives without a network, open socket or not: the header says so.
    if (conn.opened) conn.wentOffline = true;
    setConn("offline");
    // A reply on its way cannot go now, whatever the socket that has not closed yet says.
    refreshPending();
  });
  document.addEventListener("visibilitychange", () => {
    // Back on a tab left on the system list: what came meanwhile is read now, as in a follower's.
    if (isViewing(SYSTEM_ID) && unreadNotices(state.system.items) > 0) {
      markSystemRead();
      renderContacts();
    }
    if (isViewing(state.current) && state.current !== SYSTEM_ID) {
      const contact = state.contacts.get(state.current);
      if (contact && Number(contact.unread) > 0 && seesNewest(state.current)) {
        markRead(state.current);
      } else {
        // Notices about it that came meanwhile are in its thread, in view now.
        readNoticesOf(state.current);
      }
      renderContacts();
    }
  });

  // Clocks: the reply windows, the retry countdown, and a watchdog for sockets that went silent
  // (a dropped network often gives no close event until TCP gives up).
  setInterval(() => {
    if (conn.state === "waiting") renderConn();
    // The heartbeats' gap (the bridge's interval, configurable) sets the limit once one came,
    // on this socket or an earlier one. Before any, the least limit: a page's first socket
    // that went silent within its first heartbeat interval otherwise said Connected for good.
    if (conn.ws && conn.opened) {
      const limit = Math.max(WATCHDOG_MIN_MS, conn.heartbeatGap * 2.5);
      if (Date.now() - conn.lastFrameAt > limit) replaceSocket();
    }
  }, 1000);
  let today = dayKey(nowS());
  setInterval(() => {
    renderContacts();
    renderConversationHead();
    // At midnight the open conversation's "Today" becomes "Yesterday" without a message coming.
    if (dayKey(nowS()) !== today) {
      today = dayKey(nowS());
      renderMessages();
    }
  }, 30_000);

  restoreOutbox();
  start();
}

init();
