// Configuration: every setting the bridge reads from the environment, with SPEC's defaults.
// main.ts is the only caller; everything else receives the parsed Config.

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
  store: "kv" | "memory";
  logFormat: "json" | "text";
  logLevel: string;
  historyRetentionDays: number;
  mediaAllowedHosts: string[];
  mediaMaxBytes: number;
  mediaTimeoutMs: number;
  /** Open client connections; default from the descriptor limit (src/http/connections.ts). */
  maxConnections?: number;
}

/** Reads SPEC's environment variables; throws an Error naming a variable with a bad value. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const str = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value ? value : undefined;
  };
  const int = (name: string, fallback: number, min = 0): number => {
    const raw = str(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min) {
      throw new Error(`Cannot read ${name}: expected a whole number >= ${min}, got "${raw}"`);
    }
    return value;
  };
  const list = (name: string): string[] =>
    (str(name) ?? "").split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  const store = str("STORE") ?? "kv";
  if (store !== "kv" && store !== "memory") {
    throw new Error(`Cannot read STORE: expected "kv" or "memory", got "${store}"`);
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
    publicUrl: str("PUBLIC_URL")?.replace(/\/+$/, ""),
    redisUrl: str("REDIS_URL"),
    store,
    logFormat: str("LOG_FORMAT") === "json" ? "json" : "text",
    logLevel: str("LOG_LEVEL") ?? "info",
    historyRetentionDays: int("HISTORY_RETENTION_DAYS", 30, 1),
    mediaAllowedHosts: str("MEDIA_ALLOWED_HOSTS") !== undefined
      ? list("MEDIA_ALLOWED_HOSTS")
      : ["api.weixin.qq.com", "*.qpic.cn", "*.qlogo.cn", "*.weixin.qq.com", "*.wx.qq.com"],
    mediaMaxBytes: int("MEDIA_MAX_BYTES", 20 * 1024 * 1024, 1),
    mediaTimeoutMs: int("MEDIA_TIMEOUT_MS", 15_000, 1),
    maxConnections: str("MAX_CONNECTIONS") === undefined ? undefined : int("MAX_CONNECTIONS", 0, 1),
  };
}
