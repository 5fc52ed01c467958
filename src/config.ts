// Configuration: every setting the bridge reads from the environment, with SPEC's defaults.
// main.ts is the only caller; everything else receives the parsed Config.

import { type AccountConfig, parseAccounts } from "./accounts.ts";
import { parseLevel } from "./logging.ts";
import { MAX_SIGNED_AGE_S } from "./wechat/request_policy.ts";
import { type MediaStoreConfig, parseMediaStore } from "./media/media_store_url.ts";

/** The bridge's settings, parsed and defaulted. */
export interface Config {
  port: number;
  hostname: string;
  dataDir: string;
  companyId: string;
  heartbeatIntervalS: number;
  wechatToken?: string;
  wechatAesKey?: string;
  wechatAesKeyPrevious?: string;
  wechatAppId?: string;
  wechatSecret?: string;
  wechatApiBase: string;
  agentSecret?: string;
  allowedOrigins: string[];
  publicUrl?: string;
  redisUrl?: string;
  /** The embedded store when REDIS_URL is unset: SQLite (default), Deno KV, or memory. */
  store: "sqlite" | "kv" | "memory";
  /** SQLite with `synchronous=FULL`: every commit is on disk before WeChat is answered. */
  storeFsync: boolean;
  logFormat: "json" | "text";
  logLevel: string;
  /** Seconds between looks for 48-hour windows closing or closed (their notices). */
  windowSweepIntervalS: number;
  historyRetentionDays: number;
  /** Hosts follower media may be fetched from; unset: WeChat's own (media/pipeline.ts). */
  mediaAllowedHosts?: string[];
  mediaMaxBytes: number;
  mediaTimeoutMs: number;
  /** Open client connections; default from the descriptor limit (src/http/connections.ts). */
  maxConnections?: number;
  /** CONNECTION_GUARD: our accept loop with timeouts and a cap in front of Deno.serve (on), or
   * Deno.serve alone behind a proxy that does that (off). */
  connectionGuard: boolean;
  /** SEND_RATE_PER_S: `POST send` JSON messages per second per agent (bursts of twice that). */
  sendRatePerS: number;
  /** WECHAT_MAX_AGE_S: refuse WeChat requests signed longer ago than this (unset: no check). */
  wechatMaxAgeS?: number;
  /** WECHAT_REQUIRE_ENCRYPTION: with WECHAT_AES_KEY, refuse plaintext bodies. */
  wechatRequireEncryption: boolean;
  /** AGENT_KF_ACCOUNTS: agent userid -> WeChat customer-service account its replies show. */
  agentKfAccounts: Record<string, string>;
  /** AUTO_REPLY_TEXT: a passive reply to a follower no agent can answer now (unset: none). */
  autoReplyText?: string;
  /** AUTO_REPLY_HOURS: working hours in China time, `HH:MM-HH:MM`; outside them the
   * auto-reply is sent even with agents online. Unset: always working hours. */
  workingHours?: { startMin: number; endMin: number };
  /** PASSIVE_TRANSFER_CUSTOMER_SERVICE: answer messages with transfer_customer_service, so
   * WeChat's own customer-service tool gets them too. */
  transferCustomerService: boolean;
  /** `host[:port]` entries an agent's `media_url` may name although they are private. */
  mediaUrlPrivateHosts: string[];
  /** Seconds a signed media URL stays valid. */
  mediaUrlTtlS: number;
  /** MEDIA_STORE: media files on disk (DATA_DIR/media) or in an S3-compatible bucket. */
  mediaStore: MediaStoreConfig;
  /** ACCOUNTS_FILE's accounts; empty: one account, from the WECHAT_* variables. */
  accounts: AccountConfig[];
  /** The agents who serve this account (an account of the file with `agents`); unset: any. */
  accountAgents?: string[];
  /** The account of ACCOUNTS_FILE this bridge serves (messages name its fields); unset: one. */
  accountId?: string;
  /** That account's `original_id` (`gh_…`), when the file gives it. */
  accountOriginalId?: string;
}

/** The accounts of ACCOUNTS_FILE (none when unset); the WECHAT_* variables must then be unset. */
function readAccounts(env: Record<string, string | undefined>, path: string | undefined) {
  if (path === undefined) return [];
  const single = [
    "WECHAT_TOKEN",
    "WECHAT_AES_KEY",
    "WECHAT_AES_KEY_PREVIOUS",
    "WECHAT_APPID",
    "WECHAT_SECRET",
    "AGENT_KF_ACCOUNTS",
  ]
    .filter((name) => env[name]?.trim());
  if (single.length > 0) {
    throw new Error(
      `Cannot read ACCOUNTS_FILE: ${single.join(", ")} set as well; put every account in the file`,
    );
  }
  let text: string;
  try {
    refuseOpenToEveryone(path);
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new Error(`Cannot read ACCOUNTS_FILE ${path}: ${(error as Error).message}`);
  }
  try {
    return parseAccounts(text);
  } catch (error) {
    throw new Error(`Cannot read ACCOUNTS_FILE ${path}: ${(error as Error).message}`);
  }
}

/**
 * Throws when every user of the machine may read or write the file: it holds every account's
 * token, AES key and AppSecret. Group bits are left to the operator (a secret store's group).
 */
function refuseOpenToEveryone(path: string): void {
  const mode = Deno.statSync(path).mode;
  // null where the system has no such bits (Windows).
  if (mode === null || (mode & 0o006) === 0) return;
  const octal = (mode & 0o777).toString(8).padStart(4, "0");
  throw new Error(
    `it is open to every user (mode ${octal}) and holds the accounts' secrets: chmod 600 it`,
  );
}

/** MEDIA_STORE parsed; its errors name the variable and never repeat the secret. */
function readMediaStore(raw: string | undefined): MediaStoreConfig {
  try {
    return parseMediaStore(raw);
  } catch (error) {
    throw new Error(`Cannot read MEDIA_STORE: ${(error as Error).message}`);
  }
}

/**
 * PUBLIC_URL without its trailing `/`; throws unless it is an http(s) base. Without a scheme
 * (`bridge.example.com`) every media URL was a relative path no console showed, and history
 * kept it.
 */
function readPublicUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const url = URL.canParse(raw) ? new URL(raw) : null;
  if (
    url === null || (url.protocol !== "https:" && url.protocol !== "http:") ||
    url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== ""
  ) {
    throw new Error(
      `Cannot read PUBLIC_URL: expected the public base of the bridge, like https://bridge.example.com, got "${raw}"`,
    );
  }
  return raw.replace(/\/+$/, "");
}

/** `agent=kf@gh_account,agent2=kf2@gh_account` as a map; throws on a pair without `=`. */
function parseKfAccounts(raw: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of (raw ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    const agent = pair.slice(0, at).trim();
    const kf = pair.slice(at + 1).trim();
    if (at <= 0 || agent === "" || !/^[^@\s]+@\S+$/.test(kf)) {
      throw new Error(
        `Cannot read AGENT_KF_ACCOUNTS: expected agent=kf_account@account, got "${pair}"`,
      );
    }
    out[agent] = kf;
  }
  return out;
}

/** `09:00-18:00` as minutes of the day; an end before the start spans midnight. */
function parseHours(raw: string | undefined): { startMin: number; endMin: number } | undefined {
  if (raw === undefined) return undefined;
  const m = /^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$/.exec(raw);
  const minutes = m ? [Number(m[1]) * 60 + Number(m[2]), Number(m[3]) * 60 + Number(m[4])] : [];
  if (!m || minutes.some((n) => n > 24 * 60) || Number(m[2]) > 59 || Number(m[4]) > 59) {
    throw new Error(`Cannot read AUTO_REPLY_HOURS: expected HH:MM-HH:MM, got "${raw}"`);
  }
  return { startMin: minutes[0]!, endMin: minutes[1]! };
}

/** Reads SPEC's environment variables; throws an Error naming a variable with a bad value. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const str = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value ? value : undefined;
  };
  const int = (name: string, fallback: number, min = 0, max = Infinity): number => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      const range = max === Infinity ? `>= ${min}` : `from ${min} to ${max}`;
      throw new Error(`Cannot read ${name}: expected a whole number ${range}, got "${raw}"`);
    }
    return value;
  };
  // Every switch reads the same words, so one written as another is (CONNECTION_GUARD's "on" for
  // WECHAT_REQUIRE_ENCRYPTION) works; any other value stops start-up: read as off, "enabled"
  // would silently leave a hardening switch unapplied.
  const onOff = (name: string, fallback: boolean): boolean => {
    const raw = str(name)?.toLowerCase();
    if (raw === undefined) return fallback;
    if (["on", "true", "1", "yes"].includes(raw)) return true;
    if (["off", "false", "0", "no"].includes(raw)) return false;
    throw new Error(
      `Cannot read ${name}: expected on/off, true/false, 1/0 or yes/no, got "${raw}"`,
    );
  };
  const list = (name: string): string[] =>
    (str(name) ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  const store = str("STORE") ?? "sqlite";
  if (store !== "sqlite" && store !== "kv" && store !== "memory") {
    throw new Error(`Cannot read STORE: expected "sqlite", "kv" or "memory", got "${store}"`);
  }
  const logFormat = str("LOG_FORMAT") ?? "text";
  if (logFormat !== "text" && logFormat !== "json") {
    throw new Error(`Cannot read LOG_FORMAT: expected "text" or "json", got "${logFormat}"`);
  }
  const requireEncryption = onOff("WECHAT_REQUIRE_ENCRYPTION", false);
  if (
    requireEncryption && str("WECHAT_AES_KEY") === undefined && str("ACCOUNTS_FILE") === undefined
  ) {
    throw new Error(
      "Cannot read WECHAT_REQUIRE_ENCRYPTION: it refuses plaintext only with WECHAT_AES_KEY set, and none is",
    );
  }
  const accounts = readAccounts(env, str("ACCOUNTS_FILE"));
  // An account of the file without a key would take plaintext although the switch is on.
  const keyless = accounts.filter((account) => account.aesKey === undefined);
  if (requireEncryption && keyless.length > 0) {
    throw new Error(
      `Cannot read WECHAT_REQUIRE_ENCRYPTION: it refuses plaintext only with a key, and account ${
        keyless.map((account) => account.id).join(", ")
      } of ACCOUNTS_FILE ${str("ACCOUNTS_FILE")} has no aes_key`,
    );
  }
  return {
    port: int("PORT", 1234),
    hostname: str("HOSTNAME") ?? "0.0.0.0",
    dataDir: str("DATA_DIR") ?? "./data",
    companyId: env["COMPANY_ID"] ?? "",
    heartbeatIntervalS: int("HEARTBEAT_INTERVAL_S", 30, 1),
    wechatToken: str("WECHAT_TOKEN"),
    wechatAesKey: str("WECHAT_AES_KEY"),
    wechatAesKeyPrevious: str("WECHAT_AES_KEY_PREVIOUS"),
    wechatAppId: str("WECHAT_APPID"),
    wechatSecret: str("WECHAT_SECRET"),
    wechatApiBase: (str("WECHAT_API_BASE") ?? "https://api.weixin.qq.com").replace(/\/+$/, ""),
    agentSecret: str("AGENT_SECRET"),
    allowedOrigins: list("ALLOWED_ORIGINS"),
    publicUrl: readPublicUrl(str("PUBLIC_URL")),
    redisUrl: str("REDIS_URL"),
    store,
    storeFsync: onOff("STORE_FSYNC", false),
    logFormat,
    // Checked here, so a bad level stops start-up with one line like every other variable.
    logLevel: parseLevel(str("LOG_LEVEL")),
    windowSweepIntervalS: int("WINDOW_SWEEP_INTERVAL_S", 60, 1),
    historyRetentionDays: int("HISTORY_RETENTION_DAYS", 30, 1),
    mediaAllowedHosts: str("MEDIA_ALLOWED_HOSTS") !== undefined
      ? list("MEDIA_ALLOWED_HOSTS")
      : undefined,
    mediaMaxBytes: int("MEDIA_MAX_BYTES", 20 * 1024 * 1024, 1),
    mediaTimeoutMs: int("MEDIA_TIMEOUT_MS", 15_000, 1),
    maxConnections: str("MAX_CONNECTIONS") === undefined ? undefined : int("MAX_CONNECTIONS", 0, 1),
    connectionGuard: onOff("CONNECTION_GUARD", true),
    sendRatePerS: int("SEND_RATE_PER_S", 10, 1),
    wechatMaxAgeS: str("WECHAT_MAX_AGE_S") === undefined
      ? undefined
      : int("WECHAT_MAX_AGE_S", 0, 1, MAX_SIGNED_AGE_S),
    wechatRequireEncryption: requireEncryption,
    agentKfAccounts: parseKfAccounts(str("AGENT_KF_ACCOUNTS")),
    autoReplyText: str("AUTO_REPLY_TEXT"),
    workingHours: parseHours(str("AUTO_REPLY_HOURS")),
    transferCustomerService: onOff("PASSIVE_TRANSFER_CUSTOMER_SERVICE", false),
    mediaUrlPrivateHosts: list("MEDIA_URL_PRIVATE_HOSTS"),
    mediaUrlTtlS: int("MEDIA_URL_TTL_S", 24 * 3600, 60),
    mediaStore: readMediaStore(str("MEDIA_STORE")),
    accounts,
  };
}
