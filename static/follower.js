// The follower simulator: posts WeChat XML as the platform would for one follower, and polls the
// bridge's demo replies route for what the agent answered.

import { byIdOn, h, safeUrl as safeUrlOf, timeFormat } from "./common.js";

const B = "/im_component/wx_official_account";
const ACCOUNT = "gh_demo";
const POLL_MS = 1000;
const POLL_SLOW_MS = 5000;
const KEEP_MESSAGES = 200;

const byId = byIdOn("the simulator");

/**
 * With AGENT_SECRET set, the demo routes answer only an agent's token: the one in this page's
 * `?token=`, else one the console saved on this origin.
 */
function demoToken() {
  const given = new URLSearchParams(location.search).get("token");
  if (given) return given;
  try {
    for (let i = 0; i < localStorage.length; i++) {
      const key = localStorage.key(i) ?? "";
      if (key.startsWith("wxbridge.token:")) {
        const token = localStorage.getItem(key);
        if (token) return token;
      }
    }
  } catch {
    // No storage (private mode): no token.
  }
  return "";
}

/** Headers for the demo routes: the agent token when there is one. */
function demoHeaders(headers = {}) {
  const token = demoToken();
  return token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
}

/** A URL that may go into src or href; here data: URLs too. */
function safeUrl(value) {
  return safeUrlOf(value, ["http:", "https:", "blob:", "data:"]);
}

const el = {
  identity: byId("identity"),
  followerId: byId("follower-id"),
  followerName: byId("follower-name"),
  chat: byId("chat"),
  empty: byId("chat-empty"),
  banner: byId("banner"),
  compose: byId("compose"),
  text: byId("text"),
  send: byId("send"),
  picture: byId("picture"),
  pollState: byId("poll-state"),
};

const state = {
  followerId: "",
  name: "",
  since: 0,
  /** own messages and replies, in arrival order */
  items: [],
  replies: new Set(),
  typing: false,
  pollTimer: 0,
  generation: 0,
};

function randomFollowerId() {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  let id = "oDemo";
  for (let i = 0; i < 10; i++) id += alphabet[Math.floor(Math.random() * alphabet.length)];
  return id;
}

/** A MsgId like WeChat's: a 64-bit-sized decimal number. */
function newMsgId() {
  return `${Date.now()}${String(Math.floor(Math.random() * 100000)).padStart(5, "0")}`;
}

function cdata(text) {
  return `<![CDATA[${String(text).replaceAll("]]>", "]]]]><![CDATA[>")}]]>`;
}

/** WeChat's XML for one message: numbers bare, text in CDATA, in the order WeChat sends. */
function wechatXml(fields) {
  const parts = Object.entries(fields).map(([name, value]) =>
    typeof value === "number" ? `<${name}>${value}</${name}>` : `<${name}>${cdata(value)}</${name}>`
  );
  return `<xml>${parts.join("")}</xml>`;
}

// ---------------------------------------------------------------------------------------------
// Storage: the follower's identity, and its own messages (the bridge keeps the replies).

function loadIdentity() {
  const params = new URLSearchParams(location.search);
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem("wxbridge.follower") ?? "{}") ?? {};
  } catch {
    saved = {};
  }
  return {
    id: params.get("follower") || saved.id || randomFollowerId(),
    name: params.get("name") ?? saved.name ?? "",
  };
}

function saveIdentity() {
  try {
    localStorage.setItem(
      "wxbridge.follower",
      JSON.stringify({ id: state.followerId, name: state.name }),
    );
  } catch {
    // No storage: the identity lasts for this page.
  }
}

function ownKey() {
  return `wxbridge.follower.sent:${state.followerId}`;
}

function loadOwn() {
  try {
    const list = JSON.parse(localStorage.getItem(ownKey()) ?? "[]");
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

function saveOwn() {
  const own = state.items.filter((item) => item.mine).slice(-KEEP_MESSAGES).map((item) => ({
    ...item,
    // A local preview (blob:) does not survive a reload; the bridge's URL does.
    picture: item.remotePicture ?? null,
  }));
  try {
    localStorage.setItem(ownKey(), JSON.stringify(own));
  } catch {
    // Storage full or missing: the history lasts for this page.
  }
}

// ---------------------------------------------------------------------------------------------
// Sending as WeChat

async function postXml(fields) {
  // WeChat gives no display name; in demo mode the bridge takes the simulator's as `name`.
  const query = state.name ? `?name=${encodeURIComponent(state.name)}` : "";
  const res = await fetch(`${B}/send_xml${query}`, {
    method: "POST",
    headers: { "Content-Type": "text/xml; charset=utf-8" },
    body: wechatXml(fields),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`HTTP ${res.status}${text ? `: ${text.slice(0, 160)}` : ""}`);
}

function baseFields(msgType) {
  return {
    ToUserName: ACCOUNT,
    FromUserName: state.followerId,
    CreateTime: Math.floor(Date.now() / 1000),
    MsgType: msgType,
  };
}

async function sendText(text) {
  const item = addOwn({ kind: "text", text });
  try {
    await postXml({ ...baseFields("text"), Content: text, MsgId: item.msgId });
    setItemState(item, "sent");
  } catch (error) {
    setItemState(item, "failed", error.message);
  }
}

async function sendPicture(file) {
  const preview = URL.createObjectURL(file);
  const item = addOwn({ kind: "picture", picture: preview, state: "uploading" });
  try {
    // The bridge's demo upload takes the picture as the body, typed by its Content-Type.
    const res = await fetch(`${B}/demo/media`, {
      method: "POST",
      headers: demoHeaders({ "Content-Type": file.type || "application/octet-stream" }),
      body: file,
    });
    if (!res.ok) {
      throw new Error(`upload: HTTP ${res.status} ${(await res.text()).slice(0, 160)}`.trim());
    }
    const media = await res.json();
    if (!media?.media_id || !media?.pic_url) {
      throw new Error("upload: the answer has no media_id or pic_url");
    }
    item.remotePicture = media.pic_url;
    setItemState(item, "sending");
    await postXml({
      ...baseFields("image"),
      PicUrl: media.pic_url,
      MediaId: media.media_id,
      MsgId: item.msgId,
    });
    setItemState(item, "sent");
  } catch (error) {
    setItemState(item, "failed", error.message);
  }
}

function addOwn(fields) {
  const item = {
    mine: true,
    state: "sending",
    at: Math.floor(Date.now() / 1000),
    msgId: newMsgId(),
    ...fields,
  };
  state.items.push(item);
  saveOwn();
  render({ toBottom: true });
  return item;
}

function setItemState(item, name, error) {
  item.state = name;
  item.error = error ?? "";
  saveOwn();
  render();
}

// ---------------------------------------------------------------------------------------------
// Replies, by polling the demo route

function schedulePoll(delay) {
  clearTimeout(state.pollTimer);
  state.pollTimer = setTimeout(poll, delay);
}

async function poll() {
  const generation = state.generation;
  const url = new URL(`${B}/demo/replies`, location.origin);
  url.searchParams.set("contact_id", state.followerId);
  url.searchParams.set("since", String(state.since));
  try {
    const res = await fetch(url, { headers: demoHeaders() });
    if (generation !== state.generation) return;
    if (!res.ok) {
      await res.body?.cancel();
      showBanner(
        res.status === 404
          ? "Replies appear here only in demo mode (the bridge running without WeChat credentials)."
          : res.status === 401
          ? "The bridge requires an agent token (AGENT_SECRET): open the simulator from a signed-in console, or add ?token=… to its address."
          : `Could not fetch replies: HTTP ${res.status}`,
      );
      setPollState("error", "replies unavailable");
      schedulePoll(POLL_SLOW_MS);
      return;
    }
    const body = await res.json();
    if (generation !== state.generation) return;
    showBanner("");
    setPollState("ok", "live");
    let added = false;
    for (const reply of body.replies ?? []) {
      const n = Number(reply.n);
      if (state.replies.has(n)) continue;
      state.replies.add(n);
      state.items.push({
        mine: false,
        n,
        at: Number(reply.send_time) || Math.floor(Date.now() / 1000),
        reply,
      });
      added = true;
    }
    if (typeof body.next_since === "number") state.since = body.next_since;
    if (Boolean(body.typing) !== state.typing) {
      state.typing = Boolean(body.typing);
      added = true;
    }
    if (added) render({ toBottom: true });
    schedulePoll(POLL_MS);
  } catch (error) {
    if (generation !== state.generation) return;
    setPollState("error", "offline");
    showBanner(`Could not fetch replies: ${error.message}`);
    schedulePoll(POLL_SLOW_MS);
  }
}

function setPollState(name, label) {
  el.pollState.dataset.state = name;
  el.pollState.textContent = label;
}

function showBanner(text) {
  el.banner.hidden = !text;
  el.banner.textContent = text;
}

// ---------------------------------------------------------------------------------------------
// Rendering

function initial(name) {
  const first = Array.from(String(name ?? "").trim())[0] ?? "?";
  return /[a-z]/i.test(first) ? first.toUpperCase() : first;
}

function render({ toBottom = false } = {}) {
  const nearBottom = el.chat.scrollHeight - el.chat.scrollTop - el.chat.clientHeight < 100;
  const items = [...state.items].sort((a, b) => a.at - b.at);
  const nodes = [];
  let lastTime = 0;
  for (const item of items) {
    // WeChat shows the time when five minutes passed since the last one shown.
    if (item.at - lastTime >= 300) {
      nodes.push(h("div", { class: "time" }, timeFormat.format(new Date(item.at * 1000))));
      lastTime = item.at;
    }
    nodes.push(item.mine ? ownNode(item) : replyNode(item));
  }
  if (state.typing) nodes.push(h("div", { class: "typing" }, "The agent is typing…"));
  el.empty.hidden = nodes.length > 0;
  el.chat.replaceChildren(el.empty, ...nodes);
  if (toBottom || nearBottom) el.chat.scrollTop = el.chat.scrollHeight;
}

function ownNode(item) {
  let bubble;
  if (item.kind === "picture") {
    const src = safeUrl(item.picture) ?? safeUrl(item.remotePicture);
    bubble = h(
      "div",
      { class: "bubble picture" },
      src ? h("img", { src, alt: "Picture you sent" }) : "[Picture]",
    );
  } else {
    bubble = h("div", { class: "bubble" }, item.text);
  }
  const label = {
    uploading: "Uploading…",
    sending: "Sending…",
    sent: "Sent",
    failed: "Not sent",
  }[item.state] ??
    item.state;
  return h(
    "div",
    { class: "row mine", dataset: { msgId: item.msgId, state: item.state } },
    h(
      "div",
      { class: "face", "aria-hidden": "true" },
      initial(state.name || state.followerId.replace(/^o/, "")),
    ),
    h(
      "div",
      { class: "body" },
      bubble,
      h("span", { class: `state ${item.state}` }, item.error ? `${label}: ${item.error}` : label),
    ),
  );
}

function replyNode(item) {
  const { reply } = item;
  const m = reply.msg ?? {};
  let bubble;
  switch (reply.msg_type) {
    case "text":
      bubble = h("div", { class: "bubble" }, String(m.content ?? ""));
      break;
    case "image": {
      const src = safeUrl(m.media_url) ?? safeUrl(m.media_path) ?? safeUrl(m.pic_url);
      bubble = h(
        "div",
        { class: "bubble picture" },
        src ? h("img", { src, alt: "Picture from the account" }) : "[Picture]",
      );
      break;
    }
    case "voice": {
      const src = safeUrl(m.media_url) ?? safeUrl(m.media_path);
      bubble = h(
        "div",
        { class: "bubble media" },
        src ? player("audio", src) : "[Voice]",
      );
      break;
    }
    case "video": {
      const src = safeUrl(m.media_url) ?? safeUrl(m.media_path);
      bubble = h(
        "div",
        { class: "bubble media" },
        src ? player("video", src) : "[Video]",
        m.title ? h("div", { class: "card-title" }, m.title) : null,
      );
      break;
    }
    case "news": {
      const href = safeUrl(m.url);
      bubble = h(
        "div",
        { class: "bubble" },
        href
          ? h(
            "a",
            { class: "card-title", href, target: "_blank", rel: "noopener noreferrer" },
            m.title || href,
          )
          : h("div", { class: "card-title" }, m.title ?? "Article"),
        m.description ? h("div", { class: "card-sub" }, m.description) : null,
      );
      break;
    }
    default:
      bubble = h(
        "div",
        { class: "bubble" },
        `[${reply.msg_type ?? "message"}]${m.title ? ` ${m.title}` : ""}`,
      );
  }
  return h(
    "div",
    { class: "row theirs reply", dataset: { n: String(item.n), msgType: reply.msg_type ?? "" } },
    h("div", { class: "face", "aria-hidden": "true" }, "客"),
    h("div", { class: "body" }, bubble),
  );
}

/** An audio or video player; a file this browser cannot play (AMR) becomes a link to it. */
function player(kind, src) {
  const node = h(kind, {
    src,
    controls: "",
    preload: "metadata",
    ...(kind === "video" ? { playsinline: "" } : {}),
  });
  node.addEventListener("error", () => {
    node.replaceWith(
      h(
        "a",
        { class: "media-link", href: src, target: "_blank", rel: "noopener" },
        kind === "audio" ? "Voice message (open the file)" : "Video (open the file)",
      ),
    );
  }, { once: true });
  return node;
}

// ---------------------------------------------------------------------------------------------
// Identity

function useIdentity(id, name) {
  state.generation += 1;
  clearTimeout(state.pollTimer);
  state.followerId = id;
  state.name = name;
  state.since = 0;
  state.replies = new Set();
  state.items = loadOwn().map((item) => ({
    ...item,
    state: item.state === "sent" ? "sent" : "failed",
    error: item.state === "sent" ? "" : item.error || "interrupted",
  }));
  el.followerId.value = id;
  el.followerName.value = name;
  document.title = `${name || id} · Follower simulator`;
  saveIdentity();
  setPollState("idle", "…");
  render({ toBottom: true });
  poll();
}

function init() {
  const identity = loadIdentity();
  el.identity.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = el.followerId.value.trim();
    if (!id) return;
    useIdentity(id, el.followerName.value.trim());
  });
  el.followerId.addEventListener("change", () => {
    const id = el.followerId.value.trim();
    if (id && id !== state.followerId) useIdentity(id, el.followerName.value.trim());
  });
  el.followerName.addEventListener("change", () => {
    state.name = el.followerName.value.trim();
    saveIdentity();
    render();
  });
  el.compose.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = el.text.value;
    if (!text.trim()) return;
    el.text.value = "";
    sendText(text);
  });
  el.picture.addEventListener("change", () => {
    const file = el.picture.files?.[0];
    el.picture.value = "";
    if (file) sendPicture(file);
  });
  useIdentity(identity.id, identity.name);
}

init();
