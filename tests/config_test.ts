// loadConfig() is what main.ts reads the environment with: these are README's configuration
// table, default by default, so a changed default cannot leave the table behind.

import assert from "node:assert/strict";
import { loadConfig } from "../src/config.ts";
import { DEFAULT_ALLOWED_HOSTS } from "../src/media/pipeline.ts";

Deno.test("loadConfig() gives README's defaults and reads every variable", async (t) => {
  await t.step("with nothing set, every setting is its documented default", () => {
    assert.deepEqual(loadConfig({}), {
      port: 1234,
      hostname: "0.0.0.0",
      dataDir: "./data",
      companyId: "",
      heartbeatIntervalS: 30,
      wechatToken: undefined,
      wechatAesKey: undefined,
      wechatAesKeyPrevious: undefined,
      wechatAppId: undefined,
      wechatSecret: undefined,
      wechatApiBase: "https://api.weixin.qq.com",
      agentSecret: undefined,
      allowedOrigins: [],
      publicUrl: undefined,
      redisUrl: undefined,
      store: "sqlite",
      storeFsync: false,
      logFormat: "text",
      logLevel: "info",
      windowSweepIntervalS: 60,
      historyRetentionDays: 30,
      // Unset: the pipeline's own list, DEFAULT_ALLOWED_HOSTS.
      mediaAllowedHosts: undefined,
      mediaMaxBytes: 20 * 1024 * 1024,
      mediaTimeoutMs: 15_000,
      // Unset: from the open-file limit (src/http/connections.ts).
      maxConnections: undefined,
      connectionGuard: true,
      sendRatePerS: 10,
      wechatMaxAgeS: undefined,
      wechatRequireEncryption: false,
      agentKfAccounts: {},
      autoReplyText: undefined,
      workingHours: undefined,
      transferCustomerService: false,
      mediaUrlPrivateHosts: [],
      mediaUrlTtlS: 86_400,
      mediaStore: { kind: "disk" },
      accounts: [],
    });
  });

  await t.step("replies and passive answers: kf accounts, auto-reply, working hours", () => {
    const config = loadConfig({
      AGENT_KF_ACCOUNTS: "alice=kf2001@gh_account, bob=kf2002@gh_account",
      AUTO_REPLY_TEXT: "稍后回复您",
      AUTO_REPLY_HOURS: "09:00-18:30",
      PASSIVE_TRANSFER_CUSTOMER_SERVICE: "true",
    });
    assert.deepEqual(config.agentKfAccounts, {
      alice: "kf2001@gh_account",
      bob: "kf2002@gh_account",
    });
    assert.equal(config.autoReplyText, "稍后回复您");
    assert.deepEqual(config.workingHours, { startMin: 540, endMin: 1110 });
    assert.equal(config.transferCustomerService, true);
    assert.throws(() => loadConfig({ AGENT_KF_ACCOUNTS: "alice" }), /AGENT_KF_ACCOUNTS/);
    assert.throws(() => loadConfig({ AGENT_KF_ACCOUNTS: "alice=kf2001" }), /AGENT_KF_ACCOUNTS/);
    assert.throws(() => loadConfig({ AUTO_REPLY_HOURS: "9-18" }), /AUTO_REPLY_HOURS/);
    assert.throws(() => loadConfig({ AUTO_REPLY_HOURS: "09:00-25:00" }), /AUTO_REPLY_HOURS/);
  });

  await t.step("hardening: connections, WeChat signature age, encryption required", () => {
    const config = loadConfig({
      MAX_CONNECTIONS: "500",
      SEND_RATE_PER_S: "50",
      WECHAT_MAX_AGE_S: "300",
      WECHAT_REQUIRE_ENCRYPTION: "true",
      WECHAT_AES_KEY: "a".repeat(43),
      WECHAT_APPID: "wx1",
    });
    assert.equal(config.maxConnections, 500);
    assert.equal(config.sendRatePerS, 50);
    assert.equal(config.wechatMaxAgeS, 300);
    assert.equal(config.wechatRequireEncryption, true);
    assert.throws(() => loadConfig({ MAX_CONNECTIONS: "0" }), /MAX_CONNECTIONS/);
    assert.throws(() => loadConfig({ WECHAT_MAX_AGE_S: "soon" }), /WECHAT_MAX_AGE_S/);
  });

  await t.step("the default media hosts are README's list, WeChat's video CDN included", () => {
    assert.deepEqual(DEFAULT_ALLOWED_HOSTS, [
      "api.weixin.qq.com",
      "*.weixin.qq.com",
      "mmbiz.qpic.cn",
      "mmbiz.qlogo.cn",
      "*.qpic.cn",
      "*.qlogo.cn",
      "*.tc.qq.com",
    ]);
  });

  await t.step("each variable is read; lists split on commas; trailing slashes dropped", () => {
    const config = loadConfig({
      PORT: "8080",
      HOSTNAME: "127.0.0.1",
      DATA_DIR: "/var/lib/bridge",
      COMPANY_ID: "acme",
      HEARTBEAT_INTERVAL_S: "10",
      WECHAT_TOKEN: "t",
      WECHAT_AES_KEY: "k",
      WECHAT_AES_KEY_PREVIOUS: "p",
      WECHAT_APPID: "wx1",
      WECHAT_SECRET: "s",
      WECHAT_API_BASE: "http://127.0.0.1:9000/",
      AGENT_SECRET: "a",
      ALLOWED_ORIGINS: "https://a.example, https://b.example",
      PUBLIC_URL: "https://bridge.example.com/",
      REDIS_URL: "redis://r:6379",
      STORE: "memory",
      STORE_FSYNC: "1",
      LOG_FORMAT: "json",
      LOG_LEVEL: "debug",
      HISTORY_RETENTION_DAYS: "7",
      MEDIA_ALLOWED_HOSTS: "files.example.com, *.cdn.example",
      MEDIA_MAX_BYTES: "1000",
      MEDIA_TIMEOUT_MS: "500",
      MEDIA_URL_PRIVATE_HOSTS: "files.corp.example:8443, 10.0.0.5",
      MEDIA_URL_TTL_S: "3600",
    });
    assert.equal(config.port, 8080);
    assert.equal(config.wechatApiBase, "http://127.0.0.1:9000");
    assert.deepEqual(config.allowedOrigins, ["https://a.example", "https://b.example"]);
    assert.equal(config.publicUrl, "https://bridge.example.com");
    assert.equal(config.store, "memory");
    assert.equal(config.storeFsync, true);
    assert.equal(config.logFormat, "json");
    assert.equal(config.historyRetentionDays, 7);
    assert.deepEqual(config.mediaAllowedHosts, ["files.example.com", "*.cdn.example"]);
    assert.equal(config.mediaMaxBytes, 1000);
    assert.equal(config.mediaTimeoutMs, 500);
    assert.deepEqual(config.mediaUrlPrivateHosts, ["files.corp.example:8443", "10.0.0.5"]);
    assert.equal(config.mediaUrlTtlS, 3600);
  });

  await t.step("an empty value counts as unset", () => {
    assert.equal(loadConfig({ PORT: "", WECHAT_TOKEN: " " }).port, 1234);
    assert.equal(loadConfig({ WECHAT_TOKEN: " " }).wechatToken, undefined);
  });

  await t.step("a bad number or STORE stops start-up, naming the variable", () => {
    assert.throws(() => loadConfig({ PORT: "http" }), /Cannot read PORT/);
    assert.throws(() => loadConfig({ HEARTBEAT_INTERVAL_S: "0" }), /HEARTBEAT_INTERVAL_S/);
    assert.throws(() => loadConfig({ MEDIA_MAX_BYTES: "1.5" }), /MEDIA_MAX_BYTES/);
    assert.throws(() => loadConfig({ MEDIA_URL_TTL_S: "10" }), /MEDIA_URL_TTL_S/);
    assert.throws(() => loadConfig({ STORE: "redis" }), /Cannot read STORE/);
    assert.throws(() => loadConfig({ STORE_FSYNC: "always" }), /Cannot read STORE_FSYNC/);
    assert.equal(loadConfig({ STORE_FSYNC: "TRUE" }).storeFsync, true);
    assert.equal(loadConfig({ STORE: "kv" }).store, "kv");
    assert.throws(() => loadConfig({ MEDIA_STORE: "ftp://x" }), /Cannot read MEDIA_STORE/);
    // Without a scheme every media URL was a relative path no console showed, kept in history.
    for (const bad of ["bridge.example.com", "ftp://bridge", "https://b.example.com/?x=1"]) {
      assert.throws(() => loadConfig({ PUBLIC_URL: bad }), /Cannot read PUBLIC_URL/, bad);
    }
    assert.equal(
      loadConfig({ PUBLIC_URL: "https://b.example.com/bridge/" }).publicUrl,
      "https://b.example.com/bridge",
    );
    assert.throws(() => loadConfig({ LOG_LEVEL: "bogus" }), /Cannot parse LOG_LEVEL: "bogus"/);
    assert.throws(() => loadConfig({ CONNECTION_GUARD: "maybe" }), /CONNECTION_GUARD/);
    assert.equal(loadConfig({ CONNECTION_GUARD: "off" }).connectionGuard, false);
    assert.equal(loadConfig({ LOG_LEVEL: "WARN" }).logLevel, "warning");
    assert.throws(
      () => loadConfig({ WINDOW_SWEEP_INTERVAL_S: "0" }),
      /WINDOW_SWEEP_INTERVAL_S/,
    );
  });

  await t.step("a yes/no variable that is neither stops start-up, not read as off", () => {
    // "yes" meant on: read as off, a hardening switch was silently not applied. Every switch
    // now takes the same words (on/off, true/false, 1/0, yes/no); any other stops start-up.
    const key = { WECHAT_AES_KEY: "a".repeat(43), WECHAT_APPID: "wx1" };
    assert.throws(
      () => loadConfig({ ...key, WECHAT_REQUIRE_ENCRYPTION: "enabled" }),
      /Cannot read WECHAT_REQUIRE_ENCRYPTION/,
    );
    assert.equal(
      loadConfig({ ...key, WECHAT_REQUIRE_ENCRYPTION: "yes" }).wechatRequireEncryption,
      true,
    );
    assert.equal(
      loadConfig({ PASSIVE_TRANSFER_CUSTOMER_SERVICE: "On" }).transferCustomerService,
      true,
    );
    assert.throws(
      () => loadConfig({ PASSIVE_TRANSFER_CUSTOMER_SERVICE: "on please" }),
      /Cannot read PASSIVE_TRANSFER_CUSTOMER_SERVICE/,
    );
    assert.throws(() => loadConfig({ LOG_FORMAT: "jsonl" }), /Cannot read LOG_FORMAT/);
    assert.equal(
      loadConfig({ ...key, WECHAT_REQUIRE_ENCRYPTION: "1" }).wechatRequireEncryption,
      true,
    );
    assert.equal(loadConfig({ WECHAT_REQUIRE_ENCRYPTION: "false" }).wechatRequireEncryption, false);
    assert.equal(loadConfig({ LOG_FORMAT: "text" }).logFormat, "text");
  });

  await t.step(
    "WECHAT_REQUIRE_ENCRYPTION without a key stops start-up: it could refuse nothing",
    () => {
      assert.throws(
        () => loadConfig({ WECHAT_TOKEN: "t", WECHAT_REQUIRE_ENCRYPTION: "true" }),
        /WECHAT_REQUIRE_ENCRYPTION.*WECHAT_AES_KEY/,
      );
    },
  );
});
