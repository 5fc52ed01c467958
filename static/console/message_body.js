// How each kind of message reads in a conversation: text with its links, pictures, voice and
// video players (with a file link where the browser cannot play them), location, link and
// mini-program cards. Built as DOM nodes (never innerHTML), every URL through safeUrl(); the
// console keeps the nodes, so a playing <audio> survives re-renders.

import { h, safeUrl } from "../common.js";

/** The builders, speaking through `t` (console/i18n.js). */
export function createMessageBody(t) {
  function messageBody(msg) {
    const m = msg.msg ?? {};
    const parts = [];
    switch (msg.msg_type) {
      case "text":
        // dir=auto: an Arabic or Hebrew message reads right to left, punctuation and all.
        parts.push(h("div", { class: "text", dir: "auto" }, linkify(String(m.content ?? ""))));
        break;
      case "image": {
        const src = safeUrl(msg.display) ?? safeUrl(m.media_path) ?? safeUrl(m.media_url) ??
          safeUrl(m.pic_url);
        if (src) {
          const img = h("img", { src, alt: t("media.image"), loading: "lazy", decoding: "async" });
          img.addEventListener(
            "error",
            () => img.replaceWith(mediaError(t("media.imageFailed"))),
            { once: true },
          );
          parts.push(
            h("a", { class: "media image", href: src, target: "_blank", rel: "noopener" }, img),
          );
        } else if (!m.error) parts.push(mediaError(t("media.noImage")));
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
        if (!src && !m.error) parts.push(mediaError(t("media.noVoice")));
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
        } else if (!m.error) parts.push(mediaError(t("media.noVideo")));
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
          h("div", { class: "card-kicker" }, t("media.location")),
          h("div", { class: "card-title" }, m.label || t("media.sharedLocation")),
          Number.isFinite(lat) && Number.isFinite(lon)
            ? h("div", { class: "card-sub" }, `${lat.toFixed(5)}, ${lon.toFixed(5)}`)
            : null,
          map
            ? h(
              "a",
              { href: map, target: "_blank", rel: "noopener noreferrer" },
              t("media.openMap"),
            )
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
          h(
            "div",
            { class: "card-kicker" },
            msg.msg_type === "news" ? t("media.article") : t("media.link"),
          ),
          href
            ? h(
              "a",
              { class: "card-title", href, target: "_blank", rel: "noopener noreferrer" },
              m.title || href,
            )
            : h("div", { class: "card-title" }, m.title || t("media.untitled")),
          m.description ? h("div", { class: "card-sub" }, m.description) : null,
          href ? h("div", { class: "card-url" }, new URL(href).host) : null,
        ));
        break;
      }
      case "miniprogrampage":
        parts.push(h(
          "div",
          { class: "card" },
          h("div", { class: "card-kicker" }, t("media.miniprogram")),
          h("div", { class: "card-title" }, m.title || m.pagepath || t("media.miniprogramPage")),
        ));
        break;
      default:
        parts.push(
          h(
            "div",
            { class: "text muted" },
            t("media.unsupported", { type: msg.msg_type ?? "?" }),
          ),
        );
        if (m.content) parts.push(h("div", { class: "text", dir: "auto" }, String(m.content)));
    }
    if (m.error) {
      parts.push(
        mediaError(
          t("media.unavailable", {
            error: typeof m.error === "string" ? m.error : JSON.stringify(m.error),
          }),
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
      h(
        "span",
        { class: "file-icon", "aria-hidden": "true" },
        ext || (kind === "voice" ? "♪" : "▶"),
      ),
      h(
        "span",
        { class: "file-text" },
        h("span", { class: "file-name" }, kind === "voice" ? t("media.voice") : t("media.video")),
        h("span", { class: "file-size" }, t("media.cannotPlay")),
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

  return { messageBody, mediaError, mediaFallback, linkify };
}
