// Agents' credentials: HS256 JWTs signed with AGENT_SECRET (`sub` = userid, `exp` required),
// read from `Authorization: Bearer` (or `?token=` on a socket), and the ALLOWED_ORIGINS check.
// Without a secret the bridge runs open and trusts the userid the agent claims.

import { errors, jwtVerify, SignJWT } from "jose";
import { HttpError } from "../http/http_error.ts";
import { AGENT_ID_RULE, isAgentId } from "./agent_id.ts";

/** Checks who an agent is and where its page comes from; every failure is an `HttpError`. */
export interface AgentAuth {
  /** True when AGENT_SECRET is set and tokens are required. */
  readonly required: boolean;
  /**
   * Resolves to the agent's userid, or throws 400/401 `HttpError`. `socket`: the request is on
   * the socket's route, the only one that takes `?token=` (a header does not make it one).
   */
  authenticate(
    req: Request,
    url: URL,
    claimedUserId: string | null,
    socket?: boolean,
  ): Promise<string>;
  /**
   * Like `authenticate`, and says until when: the token's `exp` (plus the clock tolerance it
   * was checked with) in milliseconds since the epoch; null without credentials.
   */
  identify(
    req: Request,
    url: URL,
    claimedUserId: string | null,
    socket?: boolean,
  ): Promise<AgentIdentity>;
  /**
   * Throws a 403 `HttpError` when ALLOWED_ORIGINS is set and the request has an Origin not in it;
   * a request with no Origin is not from a browser and passes.
   */
  checkOrigin(req: Request): void;
}

/** Who an agent is, and until when its credentials hold. */
export interface AgentIdentity {
  userid: string;
  /** Past this (ms since the epoch) the token is no longer accepted; null: open mode. */
  validUntilMs: number | null;
}

export interface AgentAuthOptions {
  secret: string | undefined;
  allowedOrigins: string[];
  /** Milliseconds since the epoch; tests pass a fake clock. */
  now?: () => number;
}

/** RFC 7518 §3.2: an HS256 key must be at least as long as the hash (256 bits). */
export const AGENT_SECRET_MIN_BYTES = 32;

const ALGORITHMS = ["HS256"];
// Agents' machines and the server disagree by a few seconds at most; more would stretch `exp`.
const CLOCK_TOLERANCE_S = 5;

/** Builds the agent authenticator; throws on a too-short secret or an origin it cannot parse. */
export function createAgentAuth(options: AgentAuthOptions): AgentAuth {
  const allowed = new Set(options.allowedOrigins.map(parseAllowedOrigin));
  const now = options.now ?? Date.now;
  const secret = options.secret === "" ? undefined : options.secret;
  // Importing the key once makes each verification ~40% cheaper than handing jose raw bytes
  // (measured: 72 µs against 118 µs); a cache of verified tokens was not worth its risk.
  const key = secret === undefined ? undefined : importSecret(secretBytes(secret), "verify");

  async function identify(
    req: Request,
    url: URL,
    claimedUserId: string | null,
    socket = false,
  ): Promise<AgentIdentity> {
    const claimed = claimedUserId === null || claimedUserId === "" ? null : claimedUserId;
    if (key === undefined) {
      if (claimed === null) throw new HttpError(400, "Missing userid");
      return { userid: claimed, validUntilMs: null };
    }
    const token = readToken(req, url, socket);
    if (token === null) throw unauthorized("Missing agent token");
    const { sub: userid, exp } = await verifyAgentToken(token, await key, now());
    if (claimed !== null && claimed !== userid) {
      throw unauthorized(`Agent token does not belong to agent ${claimed}`);
    }
    return { userid, validUntilMs: (exp + CLOCK_TOLERANCE_S) * 1000 };
  }

  return {
    required: key !== undefined,

    async authenticate(req, url, claimedUserId, socket) {
      return (await identify(req, url, claimedUserId, socket)).userid;
    },

    identify,

    checkOrigin(req) {
      if (allowed.size === 0) return;
      const origin = req.headers.get("origin");
      // Browsers always send Origin on a WebSocket upgrade: a request without one is a program
      // (a CRM server, a bot), which its token authenticates (as in Centrifugo, gorilla/websocket).
      if (origin === null) return;
      if (!allowed.has(normalizeOrigin(origin) ?? "")) {
        throw new HttpError(403, "Origin not allowed");
      }
    },
  };
}

/** Signs a token that names `userid` and expires `ttlSeconds` from now. */
export async function mintAgentToken(
  secret: string,
  userid: string,
  ttlSeconds: number,
): Promise<string> {
  if (!isAgentId(userid)) {
    throw new RangeError(`Cannot mint agent token: userid must be ${AGENT_ID_RULE}`);
  }
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
    throw new RangeError(
      `Cannot mint agent token: ttl must be positive seconds, got ${ttlSeconds}`,
    );
  }
  const issuedAt = Math.floor(Date.now() / 1000);
  return await new SignJWT({})
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(userid)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + Math.ceil(ttlSeconds))
    .sign(await importSecret(secretBytes(secret), "sign"));
}

// Checked before anything async so that a weak secret stops the server at start.
function secretBytes(secret: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(secret);
  if (bytes.length < AGENT_SECRET_MIN_BYTES) {
    throw new RangeError(
      `Cannot use AGENT_SECRET: it is ${bytes.length} bytes, at least ${AGENT_SECRET_MIN_BYTES} ` +
        "are needed (make one with `openssl rand -base64 32`)",
    );
  }
  return bytes;
}

function importSecret(bytes: Uint8Array<ArrayBuffer>, use: "sign" | "verify"): Promise<CryptoKey> {
  const algorithm = { name: "HMAC", hash: "SHA-256" };
  return crypto.subtle.importKey("raw", bytes, algorithm, false, [use]) as Promise<CryptoKey>;
}

function readToken(req: Request, url: URL, socket: boolean): string | null {
  const header = req.headers.get("authorization");
  if (header !== null) {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (match?.[1] !== undefined) return match[1];
  }
  const query = url.searchParams.get("token");
  if (query === null || query === "") return null;
  // A URL ends up in proxy logs, browser history and Referer headers: only the socket, whose
  // headers a browser cannot set, takes its token there (as Deno.upgradeWebSocket reads it).
  // Its route says so: an Upgrade header alone made any HTTP route take it.
  const upgrading = req.headers.get("upgrade")?.toLowerCase().includes("websocket") ?? false;
  if (!socket || !upgrading) {
    throw unauthorized("Send the agent token as Authorization: Bearer; ?token= is for the socket");
  }
  return query;
}

async function verifyAgentToken(
  token: string,
  key: CryptoKey,
  nowMs: number,
): Promise<{ sub: string; exp: number }> {
  let sub: unknown;
  let exp: number | undefined;
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ALGORITHMS,
      requiredClaims: ["exp", "sub"],
      clockTolerance: CLOCK_TOLERANCE_S,
      currentDate: new Date(nowMs),
    });
    sub = payload.sub;
    exp = payload.exp;
  } catch (error) {
    // The messages name the reason only: a token, or part of one, never goes back out or to logs.
    if (error instanceof errors.JWTExpired) throw unauthorized("Agent token expired");
    if (error instanceof errors.JWTClaimValidationFailed) {
      throw unauthorized(`Invalid agent token: claim ${error.claim} ${error.reason}`);
    }
    if (error instanceof errors.JOSEError) throw unauthorized("Invalid agent token");
    throw error;
  }
  if (sub === undefined || sub === "") throw unauthorized("Invalid agent token: empty sub");
  // jose takes any JSON there: a number (an employee number) became the agent's id as a number,
  // which the SQLite journal could not read back, stopping every read for every agent.
  if (typeof sub !== "string") throw unauthorized("Invalid agent token: sub must be a string");
  // Checked like a `userid`: a 3,000-character sub once made every follower's message a 500.
  if (!isAgentId(sub)) throw unauthorized(`Invalid agent token: sub must be ${AGENT_ID_RULE}`);
  // jose checked that exp is a number (requiredClaims).
  return { sub, exp: exp! };
}

// RFC 6750 §3: a 401 names the scheme the client should use.
function unauthorized(message: string): HttpError {
  return new HttpError(401, message, { "www-authenticate": 'Bearer realm="agents"' });
}

function parseAllowedOrigin(text: string): string {
  const origin = normalizeOrigin(text.trim());
  if (origin === null) {
    throw new SyntaxError(
      `Cannot parse ALLOWED_ORIGINS: "${text}" is not an origin like https://example.com`,
    );
  }
  return origin;
}

// URL lowercases scheme and host and drops a default port; a path, query or credentials mean
// the value is no origin at all, rather than one to shorten silently.
function normalizeOrigin(text: string): string | null {
  if (!URL.canParse(text)) return null;
  const url = new URL(text);
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  if (url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    return null;
  }
  if (url.pathname !== "/") return null;
  return url.origin;
}
