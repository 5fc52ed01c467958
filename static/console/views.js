// The console's newer views, rendered with Preact + htm (static/vendor): triage filters and
// message search, the live waiting queue, quick replies (picker and manager), the transfer
// picker, the contact panel, settings and the shortcut sheet. Each takes plain props and
// callbacks from console.js; Preact puts every text into the page as text, never as HTML.

import { html, render, useEffect, useRef, useState } from "../vendor/preact-htm-3-1-1.js";
import { FILTERS } from "./triage.js";
import { LANGUAGES } from "./i18n.js";
import { searchedText, snippetOf } from "./search_snippet.js";

export { html, render };

/** The filter chips above the contact list, each with its count. */
export function FilterBar({ t, filter, counts, onFilter, onSearch }) {
  return html`<div class="triage" role="toolbar" aria-label=${t("filter.label")}>
    ${
    FILTERS.map((f) =>
      html`
        <button type="button" class=${`chip${filter === f ? " active" : ""}`}
          data-filter=${f} aria-pressed=${String(filter === f)} onClick=${() => onFilter(f)}>
                ${t(`filter.${f}`)}${f !== "all" && counts[f]
                  ? html`
                    <span class="chip-count">${counts[f]}</span>
                  `
                  : null}</button>
      `
    )
  }
    <button type="button" class="chip search-chip" id="search-open" onClick=${onSearch}
      title=${t("search.title")}>${t("search.button")}</button>
  </div>`;
}

/** The waiting queue: who waits, since when, what they asked, and "take it". */
export function WaitingList({ t, waiting, taking, onTake, since, preview }) {
  if (waiting.length === 0) return null;
  return html`
    <section class="waiting" id="waiting-live" aria-labelledby="waiting-title">
      <h3 id="waiting-title">${t("list.waiting")}${" "}<span class="count">${waiting
        .length}</span></h3>
      <ul class="contact-list">
          ${waiting.map((w) =>
            html`
              <li key=${w.contact_id}>
                <div class="contact waiting-entry" data-contact-id=${w.contact_id}>
                  <span class="contact-main">
                    <span class="contact-row">
                      <span class="contact-name">${w.name || w.contact_id}</span>
                      <span class="contact-time">${since(w)}</span>
                    </span>
                    <span class="contact-row">
                      <span class="contact-preview waiting-preview" dir="auto">${preview(w)}</span>
                    </span>
                  </span>
                  <button type="button" class="primary-button take-button"
                    disabled=${taking.has(w.contact_id)} onClick=${() => onTake(w.contact_id)}>
                          ${taking.has(w.contact_id) ? t("waiting.taking") : t("waiting.take")}
                        </button>
                </div>
              </li>
            `
          )}
        </ul>
    </section>
  `;
}

/** The list under the reply box while a `/query` is typed; arrows move, Enter or Tab take. */
export function QuickPicker({ t, items, active, onPick, onManage }) {
  return html`
    <div class="quick-picker" role="listbox" id="quick-picker"
      aria-label=${t("quick.title")}>
        ${items.length === 0
          ? html`<p class="quick-none">${t("quick.none")}</p>`
          : items.map((q, i) =>
            html`
              <div role="option" key=${q.id} id=${`quick-${q.id}`}
                class=${`quick-item${i === active ? " active" : ""}`} aria-selected=${String(
                  i === active,
                )} onMouseDown=${(e) => {
                  e.preventDefault();
                  onPick(q);
                }}>
                        <b>${q.title}</b><span>${q.text}</span>
                      </div>
            `
          )}
        <button type="button" class="link-button" onMouseDown=${(e) => {
          e.preventDefault();
          onManage();
        }}>${t("quick.manage")}</button>
      </div>
  `;
}

/** The team's quick replies: add, edit, delete. */
export function QuickManager({ t, items, error, onSave, onDelete, onClose }) {
  const [editing, setEditing] = useState(null);
  const title = useRef(null);
  useEffect(() => title.current?.focus(), [editing]);
  const submit = (e) => {
    e.preventDefault();
    const formEl = e.currentTarget;
    const form = new FormData(formEl);
    const saved = {
      id: editing?.id ?? undefined,
      title: String(form.get("title") ?? ""),
      text: String(form.get("text") ?? ""),
    };
    onSave(saved).then((ok) => {
      if (!ok) return;
      // Cleared for the next one, unless the next one is already being typed.
      const now = new FormData(formEl);
      if (now.get("title") === saved.title && now.get("text") === saved.text) formEl.reset();
      setEditing(null);
    });
  };
  // Fields take defaultValue, not value: the console renders on every message, and a value
  // would put back what the last render had over what is being typed (the search's too).
  return html`
    <div class="dialog-backdrop" onClick=${(e) => e.target === e.currentTarget && onClose()}>
      <section class="dialog" role="dialog" aria-modal="true" aria-labelledby="quick-manager-title"
        id="quick-manager" onKeyDown=${(e) => e.key === "Escape" && onClose()}>
        <header class="dialog-head">
          <h2 id="quick-manager-title">${t("quick.title")}</h2>
          <button type="button" class="ghost-button" onClick=${onClose}>${t("close")}</button>
        </header>
        <ul class="quick-list">
            ${items.length === 0 ? html`<li class="muted">${t("quick.empty")}</li>` : null}
            ${items.map((q) =>
              html`
                <li key=${q.id} data-id=${q.id}>
                  <div><b>${q.title}</b><p>${q.text}</p></div>
                  <button type="button" class="link-button" onClick=${() => setEditing(q)}>${t(
                    "edit",
                  )}</button>
                  <button type="button" class="link-button danger" onClick=${() => onDelete(q)}>${t(
                    "delete",
                  )}</button>
                </li>
              `
            )}
          </ul>
        <form class="quick-form" onSubmit=${submit} key=${editing?.id ?? "new"}>
            <label>${t("quick.titleLabel")}
              <input name="title" ref=${title} maxlength="40" required
                defaultValue=${editing?.title ?? ""} />
            </label>
            <label>${t("quick.textLabel")}
              <textarea name="text" rows="3" maxlength="1000" required
                defaultValue=${editing?.text ?? ""}></textarea>
            </label>
            <p class="hint">${t("quick.placeholders")}</p>
            ${error ? html`<p class="inline-error" role="alert">${error}</p>` : null}
            <div class="row">
              <button type="submit" class="primary-button" id="quick-save">${editing
                ? t("save")
                : t("quick.add")}</button>
              ${editing
                ? html`<button type="button" class="ghost-button" onClick=${() =>
                  setEditing(null)}>${t("cancel")}</button>`
                : null}
            </div>
          </form>
      </section>
    </div>
  `;
}

/** The agents a conversation can go to, with presence and load; the chosen one is `value`. */
export function TransferPicker({ t, agents, me, value, disabled, onPick }) {
  const others = agents.filter((a) => a.agent_id !== me);
  if (others.length === 0) return html`<p class="muted">${t("transfer.noAgents")}</p>`;
  return html`<div class="agent-picker" role="radiogroup" aria-label=${t("transfer.pick")}>
    ${
    others.map((a) =>
      html`
        <label key=${a.agent_id} class=${`agent-option${a.online ? "" : " offline"}`}>
          <input type="radio" name="transfer-agent" value=${a.agent_id} disabled=${disabled}
            checked=${value === a.agent_id} onChange=${() => onPick(a.agent_id)} />
          <span class=${`presence ${a.online ? "online" : "offline"}`} aria-hidden="true"></span>
          <b>${a.agent_id}</b>
          <span class="muted">${a.online
            ? t("transfer.online")
            : t("transfer.offline")} · ${a.capacity === null
            ? t("transfer.load", { n: a.load })
            : t("transfer.loadCap", { n: a.load, max: a.capacity })}</span>
        </label>
      `
    )
  }
  </div>`;
}

/** Who the follower is: name, OpenID, first contact, labels, earlier conversations. */
export function ContactPanel({ t, contact, firstContact, past, onLabels, onClose, onOpen }) {
  const [label, setLabel] = useState("");
  const labels = contact.labels ?? [];
  const add = (e) => {
    e.preventDefault();
    const v = label.trim();
    if (v && !labels.includes(v)) onLabels([...labels, v]);
    setLabel("");
  };
  return html`
    <aside class="contact-panel" id="contact-panel" aria-labelledby="panel-title">
      <header class="dialog-head">
        <h2 id="panel-title">${t("panel.title")}</h2>
        <button type="button" class="ghost-button" onClick=${onClose}>${t("close")}</button>
      </header>
      <dl>
        <dt>${t("panel.name")}</dt>
        <dd>${contact.name || contact.contact_id}</dd>
        <dt>${t("panel.openid")}</dt>
        <dd class="mono">${contact.contact_id}</dd>
        <dt>${t("panel.first")}</dt>
        <dd>${firstContact || "—"}</dd>
        <dt>${t("panel.labels")}</dt>
        <dd>
          <ul class="labels">
              ${labels.map((l) =>
                html`<li key=${l} class="label">${l}<button type="button" aria-label=${`${
                  t("delete")
                } ${l}`}
            onClick=${() => onLabels(labels.filter((x) => x !== l))}>×</button></li>`
              )}
            </ul>
          <form onSubmit=${add} class="label-form">
            <input id="label-input" value=${label} maxlength="20" placeholder=${t("panel.addLabel")}
              aria-label=${t("panel.addLabel")} onInput=${(e) => setLabel(e.target.value)} />
          </form>
        </dd>
        <dt>${t("panel.past")}</dt>
        <dd>${past.length === 0 ? t("panel.noPast") : html`<ul class="past">${
          past.map((p) =>
            html`
              <li
                key=${p.key}><button type="button" class="link-button" onClick=${() =>
                  onOpen(p)}>${p.label}</button></li>
            `
          )
        }</ul>`}</dd>
      </dl>
    </aside>
  `;
}

/** Search in messages, on the bridge, paged with "more results". */
export function SearchPanel({ t, query, results, busy, more, onQuery, onMore, onOpen, onClose }) {
  const input = useRef(null);
  useEffect(() => input.current?.focus(), []);
  return html`
    <div class="dialog-backdrop" onClick=${(e) => e.target === e.currentTarget && onClose()}>
      <section class="dialog search-dialog" role="dialog" aria-modal="true"
        aria-labelledby="search-title" id="search-panel"
        onKeyDown=${(e) => e.key === "Escape" && onClose()}>
          <header class="dialog-head">
            <h2 id="search-title">${t("search.title")}</h2>
            <button type="button" class="ghost-button" onClick=${onClose}>${t("close")}</button>
          </header>
          <form onSubmit=${(e) => {
            e.preventDefault();
            onQuery(new FormData(e.target).get("q"));
          }}>
            <input type="search" name="q" id="search-input" ref=${input} defaultValue=${query}
              placeholder=${t("search.placeholder")} aria-label=${t("search.placeholder")} />
          </form>
          <ul class="search-results">
            ${results.map((r) => {
              const s = snippetOf(searchedText(r.message.msg), query);
              return html`
                <li key=${`${r.contact_id}:${r.message.id}`}>
                  <button type="button" class="search-hit" onClick=${() => onOpen(r)}>
                    <b>${r.name}</b><span dir="auto">${s.before}${s.match
                      ? html`<mark>${s.match}</mark>`
                      : null}${s.after}</span>
                  </button>
                </li>
              `;
            })}
          </ul>
          ${query && !busy && results.length === 0
            ? html`<p class="muted" id="search-none">${t("search.none")}</p>`
            : null}
          ${more
            ? html`
              <button type="button" class="ghost-button" disabled=${busy}
                onClick=${onMore}>${t("search.more")}</button>
            `
            : null}
        </section>
    </div>
  `;
}

/** Language, theme and alert switches. */
export function SettingsPanel({ t, lang, theme, alerts, permission, onChange, onAllow, onClose }) {
  const toggle = (key) =>
    html`<label class="switch"><input type="checkbox" id=${`alert-${key}`} checked=${alerts[key]}
      onChange=${(e) => onChange({ alerts: { ...alerts, [key]: e.target.checked } })} />
      ${t(`settings.${key}`)}</label>`;
  return html`
    <div class="dialog-backdrop" onClick=${(e) => e.target === e.currentTarget && onClose()}>
      <section class="dialog" role="dialog" aria-modal="true" aria-labelledby="settings-title"
        id="settings-panel" onKeyDown=${(e) => e.key === "Escape" && onClose()}>
        <header class="dialog-head">
          <h2 id="settings-title">${t("settings.title")}</h2>
          <button type="button" class="ghost-button" onClick=${onClose}>${t("close")}</button>
        </header>
        <label>${t("settings.language")}
            <select id="settings-lang" value=${lang} onChange=${(e) =>
              onChange({ lang: e.target.value })}>
              ${LANGUAGES.map((l) =>
                html`<option value=${l}>${l === "zh-CN" ? "中文（简体）" : "English"}</option>`
              )}
            </select>
          </label>
        <label>${t("settings.theme")}
            <select id="settings-theme" value=${theme} onChange=${(e) =>
              onChange({ theme: e.target.value })}>
              <option value="auto">${t("settings.themeAuto")}</option>
              <option value="light">${t("settings.themeLight")}</option>
              <option value="dark">${t("settings.themeDark")}</option>
            </select>
          </label>
        <fieldset><legend>${t("settings.alerts")}</legend>
            ${toggle("sound")} ${toggle("desktop")} ${toggle("badge")}
            ${permission === "default"
              ? html`<button type="button" class="ghost-button" onClick=${onAllow}>${
                t("settings.allow")
              }</button>`
              : permission === "denied"
              ? html`<p class="hint">${t("settings.denied")}</p>`
              : null}
          </fieldset>
      </section>
    </div>
  `;
}

/** The shortcuts, as the keys are handled in console.js. */
export const SHORTCUTS = [
  ["Alt+↓ / J", "help.next"],
  ["Alt+↑ / K", "help.prev"],
  ["R", "help.focus"],
  ["Enter", "help.send"],
  ["/", "help.quick"],
  ["Alt+T", "help.transfer"],
  ["Alt+E", "help.end"],
  ["Ctrl+K", "help.search"],
  ["?", "help.help"],
];

/** The sheet of keyboard shortcuts. */
export function HelpSheet({ t, onClose }) {
  return html`
    <div class="dialog-backdrop" onClick=${(e) => e.target === e.currentTarget && onClose()}>
      <section class="dialog" role="dialog" aria-modal="true" aria-labelledby="help-title"
        id="help-sheet" onKeyDown=${(e) => e.key === "Escape" && onClose()}>
        <header class="dialog-head">
          <h2 id="help-title">${t("help.title")}</h2>
          <button type="button" class="ghost-button" onClick=${onClose}>${t("close")}</button>
        </header>
        <dl class="shortcuts">
            ${SHORTCUTS.map(([keys, label]) =>
              html`
                <dt><kbd>${keys}</kbd></dt>
                <dd>${t(label)}</dd>
              `
            )}
          </dl>
      </section>
    </div>
  `;
}
