// Alerts for an agent whose eyes are elsewhere: a sound (made with WebAudio, no file), a desktop
// notification and a count on the favicon, for a new follower, a message in a conversation not
// in view, and a reply window about to close. Each can be turned off; settings are kept.
// `alertFor` decides (plain, tested by `deno test`); `createAlerter` acts, in a browser.

const SETTINGS_KEY = "wxbridge.alerts:";
export const DEFAULT_SETTINGS = { sound: true, desktop: true, badge: true };

/** The kinds of alert, each with its own tone. */
export const TONES = { follower: [880, 1320], message: [660], closing: [440, 330] };

/** The storage key of an agent's settings (its other tabs hear of a change by it). */
export function alertSettingsKey(agentId) {
  return SETTINGS_KEY + agentId;
}

/** The saved settings for an agent, defaults where unset. */
export function loadAlertSettings(storage, agentId) {
  try {
    const saved = JSON.parse(storage.getItem(alertSettingsKey(agentId)) ?? "{}");
    return { ...DEFAULT_SETTINGS, ...pickBooleans(saved) };
  } catch {
    return { ...DEFAULT_SETTINGS };
  }
}

/** Keeps an agent's settings. */
export function saveAlertSettings(storage, agentId, settings) {
  try {
    storage.setItem(alertSettingsKey(agentId), JSON.stringify(pickBooleans(settings)));
  } catch {
    // No storage: the settings last for this page.
  }
}

function pickBooleans(o) {
  const out = {};
  for (const k of Object.keys(DEFAULT_SETTINGS)) if (typeof o?.[k] === "boolean") out[k] = o[k];
  return out;
}

/**
 * What to do for `event` ({kind: follower|message|closing, contactId}), given whether the agent
 * looks at that conversation (`viewing`) and whether the page is hidden: {sound, desktop} to
 * fire, or null for nothing. A message in the conversation in view, on a visible page, is no
 * news; a new follower or a closing window always is.
 */
export function alertFor(event, { viewing, hidden }, settings) {
  if (event.kind === "message" && viewing && !hidden) return null;
  const sound = settings.sound;
  // A desktop notification is for an agent who is not looking at the page.
  const desktop = settings.desktop && hidden;
  if (!sound && !desktop) return null;
  return { sound, desktop };
}

/** The favicon: the console's mark, with `count` in a red dot when there is one. */
export function faviconSvg(count) {
  const mark =
    '<rect x="2" y="4" width="24" height="19" rx="6" fill="#1d7a5a"/><path d="M8 23l-2 6 7-6z" fill="#1d7a5a"/><circle cx="9" cy="13.5" r="2" fill="#fff"/><circle cx="15" cy="13.5" r="2" fill="#fff"/><circle cx="21" cy="13.5" r="2" fill="#fff"/>';
  const label = count > 99 ? "99+" : String(count);
  const badge = count > 0
    ? `<circle cx="24" cy="9" r="8" fill="#d92d20"/><text x="24" y="12.5" font-size="${
      label.length > 1 ? 8 : 11
    }" font-family="Arial,sans-serif" font-weight="700" text-anchor="middle" fill="#fff">${label}</text>`
    : "";
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">${mark}${badge}</svg>`;
}

/** The browser side: plays tones, shows notifications, draws the favicon. */
export function createAlerter(win, getSettings) {
  let audio = null;
  let lastSoundAt = 0;
  let link = null;
  let badge = -1;

  function beep(kind) {
    const now = Date.now();
    // A burst of messages makes one sound, not a hundred.
    if (now - lastSoundAt < 1500) return;
    lastSoundAt = now;
    const Ctx = win.AudioContext ?? win.webkitAudioContext;
    if (!Ctx) return;
    try {
      audio ??= new Ctx();
      audio.resume?.();
      let t = audio.currentTime;
      for (const freq of TONES[kind] ?? TONES.message) {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.type = "sine";
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, t);
        gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.18);
        osc.connect(gain).connect(audio.destination);
        osc.start(t);
        osc.stop(t + 0.2);
        t += 0.16;
      }
    } catch {
      // Audio refused (no user gesture yet): the other alerts still fire.
    }
  }

  function notify(title, body, tag, onClick) {
    const N = win.Notification;
    if (!N || N.permission !== "granted") return;
    try {
      const n = new N(title, { body, tag, renotify: true });
      n.onclick = () => {
        win.focus();
        onClick?.();
        n.close();
      };
    } catch {
      // Some browsers allow notifications only from a service worker.
    }
  }

  return {
    /** Fires the alerts `event` calls for. */
    alert(event, context, text) {
      const settings = getSettings();
      const what = alertFor(event, context, settings);
      if (!what) return null;
      if (what.sound) beep(event.kind);
      if (what.desktop) notify(text.title, text.body, event.contactId, text.onClick);
      return what;
    },
    /** Asks for permission to notify (from a click: browsers want a gesture). */
    async requestPermission() {
      const N = win.Notification;
      if (!N) return "unsupported";
      if (N.permission === "default") return await N.requestPermission();
      return N.permission;
    },
    /** Draws the favicon with `count` (0 or badges off: the plain mark). */
    setBadge(count) {
      const n = getSettings().badge ? count : 0;
      if (n === badge) return;
      badge = n;
      const doc = win.document;
      link ??= doc.querySelector('link[rel="icon"]');
      if (!link) {
        link = doc.createElement("link");
        link.rel = "icon";
        doc.head.append(link);
      }
      link.type = "image/svg+xml";
      link.href = `data:image/svg+xml,${encodeURIComponent(faviconSvg(n))}`;
      link.dataset.count = String(n);
    },
  };
}
