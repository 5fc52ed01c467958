// GET of a URL an agent gave, so it cannot reach inside the bridge's network: every hop (redirects
// are followed by hand) is resolved once, every address checked, and the connection made to the
// address that was checked; the body is counted while it streams and cut at the size limit.
//
// Why node:http(s) and not fetch: fetch resolves the name again when it connects, so a DNS answer
// that changes between our check and its connect (rebinding) would reach a private address, and
// Deno's fetch cannot be handed an address for https (its `tcp` proxy transport speaks plain
// HTTP). node:http's `lookup` option is the resolver of that one connection: what we checked is
// what it connects to, while TLS still verifies the certificate against the URL's host name.

import http from "node:http";
import https from "node:https";
import type { LookupAddress } from "node:dns";
import { type HostList, isIpLiteral, isPublicAddress } from "./address_policy.ts";

/** A refused or failed `media_url`, with the HTTP status the agent is answered with. */
export class MediaUrlError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = "MediaUrlError";
    this.status = status;
  }
}

/** Resolves a host name to its addresses (A and AAAA). */
export type ResolveHost = (hostname: string) => Promise<string[]>;

/** What a public GET needs. */
export interface PublicGetOptions {
  resolve: ResolveHost;
  /** Hosts allowed although their addresses are private (MEDIA_URL_PRIVATE_HOSTS). */
  privateHosts: HostList;
  maxBytes: number;
  /** Redirects followed at most. */
  maxRedirects: number;
  signal: AbortSignal;
}

/** The final answer: its URL (after redirects), Content-Type and body. */
export interface PublicFile {
  url: string;
  contentType: string;
  bytes: Uint8Array;
}

/** The system resolver (getaddrinfo: /etc/hosts, then DNS), as the OS would connect. */
export async function resolveWithSystem(hostname: string): Promise<string[]> {
  const dns = await import("node:dns/promises");
  const found = await dns.lookup(hostname, { all: true, verbatim: true });
  return found.map((a) => a.address);
}

/** GETs `url` from public addresses only; throws MediaUrlError with a sentence for the agent. */
export async function getPublic(url: string, options: PublicGetOptions): Promise<PublicFile> {
  let current = url;
  for (let hop = 0; hop <= options.maxRedirects; hop++) {
    const answer = await getOnce(current, options);
    if ("redirect" in answer) {
      current = answer.redirect;
      continue;
    }
    return answer;
  }
  throw new MediaUrlError(
    502,
    `media_url redirected more than ${options.maxRedirects} times`,
  );
}

/** The host part of a URL for messages: no path or query, which may carry secrets. */
function describe(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

function checkUrl(raw: string, privateHosts: HostList): { url: URL; listed: boolean } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new MediaUrlError(400, "media_url is not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new MediaUrlError(400, `media_url must be http(s), not ${url.protocol}`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new MediaUrlError(400, "media_url must not carry a user name or password");
  }
  const listed = privateHosts.allows(url);
  // An address literal is connected to as it is: node calls no lookup for it.
  if (!listed && isIpLiteral(url.hostname) && !isPublicAddress(url.hostname)) {
    throw refusedAddress(url, url.hostname.replace(/^\[|\]$/g, ""));
  }
  return { url, listed };
}

function refusedAddress(url: URL, address: string): MediaUrlError {
  return new MediaUrlError(
    403,
    `media_url ${describe(url)} reaches a private address (${address}); ` +
      "only public addresses are fetched unless MEDIA_URL_PRIVATE_HOSTS names the host",
  );
}

function getOnce(
  raw: string,
  options: PublicGetOptions,
): Promise<PublicFile | { redirect: string }> {
  const { url, listed } = checkUrl(raw, options.privateHosts);
  options.signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    // Set by the lookup when it refuses, so the request's error reads as the refusal.
    let refusal: MediaUrlError | null = null;
    const lookup = (
      hostname: string,
      opts: { all?: boolean },
      callback: (...args: unknown[]) => void,
    ) => {
      options.resolve(hostname).then((addresses) => {
        if (addresses.length === 0) throw new MediaUrlError(502, `Cannot resolve ${hostname}`);
        const bad = listed ? undefined : addresses.find((a) => !isPublicAddress(a));
        // One private answer refuses the name: a resolver that mixes them is not to be trusted.
        if (bad !== undefined) throw refusal = refusedAddress(url, bad);
        const found: LookupAddress[] = addresses.map((address) => ({
          address,
          family: address.includes(":") ? 6 : 4,
        }));
        if (opts.all) callback(null, found);
        else callback(null, found[0]!.address, found[0]!.family);
      }).catch((error: unknown) => callback(error));
    };
    const client = url.protocol === "https:" ? https : http;
    const req = client.request(url, {
      method: "GET",
      // No pooled sockets: each hop gets its own connection, made through the lookup above.
      agent: false,
      lookup: lookup as never,
      headers: { "user-agent": "wx-bridge media_url", accept: "*/*" },
    });
    const onAbort = () =>
      req.destroy(new MediaUrlError(504, `media_url ${describe(url)} took too long`));
    options.signal.addEventListener("abort", onAbort, { once: true });
    const settle = () => options.signal.removeEventListener("abort", onAbort);
    req.on("error", (error: Error) => {
      settle();
      if (error instanceof MediaUrlError) return reject(error);
      if (refusal) return reject(refusal);
      reject(new MediaUrlError(502, `Cannot fetch media_url ${describe(url)}: ${error.message}`));
    });
    req.on("response", (res: http.IncomingMessage) => {
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (status >= 300 && status < 400 && typeof location === "string") {
        res.resume();
        req.destroy();
        settle();
        try {
          resolve({ redirect: new URL(location, url).href });
        } catch {
          reject(new MediaUrlError(502, `media_url ${describe(url)} redirected to a bad URL`));
        }
        return;
      }
      if (status < 200 || status >= 300) {
        req.destroy();
        settle();
        return reject(new MediaUrlError(502, `media_url ${describe(url)} answered HTTP ${status}`));
      }
      const declared = Number(res.headers["content-length"] ?? NaN);
      if (declared > options.maxBytes) {
        req.destroy();
        settle();
        return reject(tooLarge(declared, options.maxBytes));
      }
      const chunks: Uint8Array[] = [];
      let total = 0;
      res.on("data", (chunk: Uint8Array) => {
        total += chunk.byteLength;
        if (total > options.maxBytes) {
          // Stop reading at the limit: the rest is never received, let alone kept.
          req.destroy(tooLarge(total, options.maxBytes));
          return;
        }
        chunks.push(chunk);
      });
      res.on("error", (error: Error) => req.destroy(error));
      res.on("end", () => {
        settle();
        if (total > options.maxBytes) return;
        const bytes = new Uint8Array(total);
        let offset = 0;
        for (const chunk of chunks) {
          bytes.set(chunk, offset);
          offset += chunk.byteLength;
        }
        const type = res.headers["content-type"];
        resolve({ url: url.href, contentType: typeof type === "string" ? type : "", bytes });
      });
    });
    req.end();
  });
}

function tooLarge(size: number, maxBytes: number): MediaUrlError {
  return new MediaUrlError(
    413,
    `media_url is larger than ${maxBytes} bytes (stopped reading at ${size})`,
  );
}
