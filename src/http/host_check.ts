// Deno builds a request's URL from the client's Host header and the request target, and the
// router reads the path from that URL. A Host the URL parser reads as more than a host (a
// backslash is a path separator to it: `Host: h\metrics?` made `GET /healthz` route /metrics,
// past a proxy's rule on the path) chose what was served; one it refuses threw, a 500 and a
// stack trace a request. A Host is a host name or address and a port (RFC 9110 §7.2), nothing
// else: every other one is the client's bad request.

import { errorResponse } from "./router.ts";
import type { GuardedHandler } from "./connections.ts";

/** A DNS name (letters, digits, `-`, `_`, `.`), an IPv4 address, or a bracketed IPv6 one
 * (with a zone), and an optional port. */
const HOST = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\])(?::(\d{1,5}))?$/;

/** The last Host found plain: nearly every request names the same one. */
let lastPlain = "";

/** Whether `host` (a Host header's value) names a host and port only. */
export function isPlainHost(host: string): boolean {
  // A comparison instead of a match (and its array) on every request.
  if (host === lastPlain && host !== "") return true;
  const found = HOST.exec(host);
  const plain = found !== null && (found[1] === undefined || Number(found[1]) <= 65535);
  if (plain) lastPlain = host;
  return plain;
}

/** `handler`, with requests whose Host is more than a host and port answered 400 before it. */
export function checkingHost(handler: GuardedHandler): GuardedHandler {
  return (req, info) => {
    const host = req.headers.get("host");
    // HTTP/1.0 may leave it out: Deno then builds the URL without it.
    if (host !== null && !isPlainHost(host)) {
      return errorResponse(400, "Bad Host header: a host name and port only");
    }
    return handler(req, info);
  };
}
