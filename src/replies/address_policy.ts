// Which network addresses an agent's `media_url` may reach: public unicast only, unless the
// operator names the host in MEDIA_URL_PRIVATE_HOSTS. The classification is ipaddr.js's
// (the one Express's proxy-addr uses), so IPv4-mapped IPv6 and other embeddings are unwrapped.

import ipaddr from "ipaddr.js";

/** IANA's global unicast space: the only IPv6 addresses on the internet. */
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR("2000::/3");

/**
 * NAT64's well-known prefix (RFC 6052), what DNS64 answers for an IPv4-only host on an IPv6-only
 * server. Not RFC 8215's local-use 64:ff9b:1::/48, whose translator the network sets up at will.
 */
const NAT64_WELL_KNOWN = ipaddr.parseCIDR("64:ff9b::/96");

/**
 * True for an address on the public internet. Everything ipaddr.js files under a special range
 * is refused: loopback, RFC 1918, CGNAT 100.64/10, link-local (cloud metadata 169.254.169.254,
 * fe80::/10), ULA fc00::/7, unspecified, multicast, broadcast, reserved, and the IPv6 forms that
 * embed an IPv4 address (6to4, Teredo, local NAT64), whose IPv4 part could be any of these. The
 * mapped form and the well-known NAT64 prefix are judged by the IPv4 address inside them.
 */
export function isPublicAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (!ipaddr.isValid(bare)) return false;
  // process() turns ::ffff:127.0.0.1 into 127.0.0.1, so the mapped form is judged as IPv4.
  const parsed = ipaddr.process(bare);
  if (parsed.kind() === "ipv6" && parsed.match(NAT64_WELL_KNOWN)) {
    // Refused whole, it left an IPv6-only server unable to fetch from any IPv4-only host;
    // RFC 6052 keeps non-global IPv4 out of this prefix, and the check below keeps it out too.
    const bytes = parsed.toByteArray();
    return ipaddr.fromByteArray(bytes.slice(12)).range() === "unicast";
  }
  if (parsed.range() !== "unicast") return false;
  // IPv6 on the internet is 2000::/3 (IANA's global unicast); ipaddr.js calls the rest of the
  // space "unicast" too, the IPv4-compatible ::127.0.0.1 and the local NAT64 64:ff9b:1::/48
  // among it, which a host with a tunnel or a translator routes to the IPv4 address inside.
  return parsed.kind() === "ipv4" || parsed.match(GLOBAL_UNICAST_V6);
}

/** True when `host` (a URL's hostname, brackets allowed) is an IP address, not a name. */
export function isIpLiteral(host: string): boolean {
  return ipaddr.isValid(host.replace(/^\[|\]$/g, ""));
}

/** One MEDIA_URL_PRIVATE_HOSTS entry: a host, and the one port it is allowed on (or any). */
interface HostEntry {
  host: string;
  port: string | null;
}

/** Operator-allowed hosts: `host` (any port) or `host:port`; IPv6 as `[::1]:8080`. */
export interface HostList {
  /** True when the URL's host (and port, where the entry names one) is listed. */
  allows(url: URL): boolean;
}

/** Reads MEDIA_URL_PRIVATE_HOSTS entries; throws SyntaxError on one that names no host. */
export function createHostList(entries: readonly string[]): HostList {
  const parsed: HostEntry[] = entries.map((raw) => {
    const entry = raw.trim().toLowerCase();
    const match = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(entry);
    if (!match || !match[1]) {
      throw new SyntaxError(
        `Cannot read MEDIA_URL_PRIVATE_HOSTS entry "${raw}": expected host[:port]`,
      );
    }
    return { host: normalizeHost(match[1]), port: match[2] ?? null };
  });
  return {
    allows(url) {
      const host = normalizeHost(url.hostname);
      const port = url.port || (url.protocol === "https:" ? "443" : "80");
      return parsed.some((e) => e.host === host && (e.port === null || e.port === port));
    },
  };
}

/** Lower case, no trailing dot, no IPv6 brackets, IP addresses in their canonical spelling. */
function normalizeHost(host: string): string {
  const bare = host.toLowerCase().replace(/\.$/, "").replace(/^\[|\]$/g, "");
  return ipaddr.isValid(bare) ? ipaddr.parse(bare).toString() : bare;
}
