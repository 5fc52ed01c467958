// The Content-Security-Policy of the bridge's HTML pages: scripts only from the bridge itself,
// or inline ones whose SHA-256 the policy names (the seed's test page keeps its inline script
// and handlers as written), no plugins, no framing, no other origins but for media.

const encoder = new TextEncoder();
const cache = new Map<string, string>();

/** Sources every page may use, besides its own inline scripts. */
export interface CspSources {
  /** Origins media URLs may point at besides the page's own (PUBLIC_URL's, when it is set). */
  mediaOrigins?: string[];
  /** The Host the page was requested with: its ws:/wss: origin (Safari does not read 'self' so). */
  host?: string | null;
}

/** The policy for `html`, with hashes of its inline scripts and event-handler attributes. */
export async function contentSecurityPolicy(
  html: string,
  sources: CspSources = {},
): Promise<string> {
  let scripts = cache.get(html);
  if (scripts === undefined) {
    scripts = await scriptSources(html);
    // The pages are few and change only when edited: keep a handful of versions.
    if (cache.size > 32) cache.clear();
    cache.set(html, scripts);
  }
  const media = ["'self'", "data:", "blob:", "https:", ...(sources.mediaOrigins ?? [])].join(" ");
  const host =
    sources.host && /^[a-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-f:.]+\](:\d{1,5})?$/i.test(sources.host)
      ? ` ws://${sources.host} wss://${sources.host}`
      : "";
  return [
    "default-src 'none'",
    `script-src ${scripts}`,
    "style-src 'self'",
    `img-src ${media}`,
    `media-src ${media}`,
    `connect-src 'self'${host}`,
    "font-src 'self'",
    "manifest-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    "object-src 'none'",
  ].join("; ");
}

/** `'self'` plus a hash for each inline script and (with 'unsafe-hashes') each on* handler. */
async function scriptSources(html: string): Promise<string> {
  const inline: string[] = [];
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
    if (!/\bsrc\s*=/i.test(m[1] ?? "") && (m[2] ?? "").length > 0) inline.push(m[2] ?? "");
  }
  const handlers: string[] = [];
  for (const m of html.matchAll(/\son[a-z]+\s*=\s*(?:"([^"]*)"|'([^']*)')/gi)) {
    handlers.push(decodeEntities(m[1] ?? m[2] ?? ""));
  }
  const parts = ["'self'"];
  for (const text of inline) parts.push(await hashSource(text));
  if (handlers.length > 0) {
    parts.push("'unsafe-hashes'");
    for (const text of new Set(handlers)) parts.push(await hashSource(text));
  }
  return parts.join(" ");
}

async function hashSource(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return `'sha256-${btoa(String.fromCharCode(...new Uint8Array(digest)))}'`;
}

// Browsers hash an attribute's value as parsed: entities decoded.
function decodeEntities(text: string): string {
  return text.replace(
    /&(quot|amp|lt|gt|#39|apos);/g,
    (_, name: string) =>
      ({ quot: '"', amp: "&", lt: "<", gt: ">", "#39": "'", apos: "'" })[name] ?? "",
  );
}
