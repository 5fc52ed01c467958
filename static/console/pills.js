// What a contact's window and quota pills say, in the list row and the conversation header,
// from the one rule replyState() keeps (the filters and alerts read the same state): an
// unfollowed follower or a closed window promises no replies. Plain module, no DOM.

import { replyState } from "./limits.js";
import { formatDuration } from "./i18n.js";

/** The window pill of `contact` at `nowS`: {state, left, label}; state is agent, unsubscribed,
 * unknown, closed, soon or open (the pill's class). */
export function windowPill(contact, nowS, t, lang) {
  if (contact?.kind === "agent") return { state: "agent", left: 0, label: t("window.agent") };
  const limits = replyState(contact, nowS);
  switch (limits.state) {
    case "unsubscribed":
      return { state: "unsubscribed", left: 0, label: t("window.unsubscribed") };
    case "unknown":
      return { state: "unknown", left: 0, label: t("window.none") };
    case "closed":
      return { state: "closed", left: 0, label: t("window.closed") };
    default:
      return {
        state: limits.state,
        left: limits.left,
        label: t("window.left", { d: formatDuration(limits.left, lang) }),
      };
  }
}

/** The quota pill of `contact` at `nowS`: {text, titleKey, left}, or null when WeChat takes no
 * reply whatever the count (window closed or unknown, follower unfollowed, an agent). */
export function quotaPill(contact, nowS, t) {
  if (contact?.kind === "agent") return null;
  const limits = replyState(contact, nowS);
  if (limits.state !== "open" && limits.state !== "soon") return null;
  return {
    text: t("quota.left", { n: limits.repliesLeft, total: limits.quota }),
    left: limits.repliesLeft,
    limits,
  };
}
