// Helpers shared by the agent console (console.js) and the follower simulator (follower.js):
// building elements, finding them, checking URLs and formatting times. Plain browser JavaScript,
// loaded as an ES module.

/** A byId(id) for a page: the element with that id, or an error naming `page` if it is missing. */
export function byIdOn(page) {
  return (id) => {
    const found = document.getElementById(id);
    if (!found) throw new Error(`Cannot start ${page}: #${id} is missing`);
    return found;
  };
}

/** Builds an element: h("div", {class: "x", onclick: f}, "text", child, null). */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/**
 * A URL that may go into src or href: one with a protocol from `protocols` (http(s) and blob
 * unless told), or relative to this page. Anything else is null.
 */
export function safeUrl(value, protocols = ["http:", "https:", "blob:"]) {
  if (typeof value !== "string" || value.trim() === "") return null;
  try {
    const url = new URL(value, location.href);
    return protocols.includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

/** Hours and minutes, in the browser's locale: "14:05". */
export const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
});
