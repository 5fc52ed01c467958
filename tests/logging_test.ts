import assert from "node:assert/strict";
import { getLogger, reset } from "@logtape/logtape";
import { configureLogging, type LoggingOptions, withAccount } from "../src/logging.ts";

const JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwiZXhwIjo5OTk5OTk5OTk5fQ.c2lnbmF0dXJlLWJ5dGVz";

/** A console that keeps what it is asked to print, by method. */
function recordingConsole() {
  const lines: { method: string; text: string }[] = [];
  const record = (method: string) => (...args: unknown[]) => {
    lines.push({ method, text: args.map(String).join(" ") });
  };
  const fake = {
    log: record("log"),
    info: record("info"),
    warn: record("warn"),
    error: record("error"),
    debug: record("debug"),
    trace: record("trace"),
  };
  return { lines, console: fake as unknown as NonNullable<LoggingOptions["console"]> };
}

async function withLogging(
  options: Omit<LoggingOptions, "console">,
  fn: (lines: { method: string; text: string }[]) => void,
): Promise<void> {
  const { lines, console } = recordingConsole();
  await configureLogging({ ...options, console });
  try {
    fn(lines);
  } finally {
    await reset();
  }
}

Deno.test("configureLogging() writes JSON Lines without secrets", async (t) => {
  await t.step("one parseable line per record, properties nested, all on stdout", async () => {
    await withLogging({ format: "json" }, (lines) => {
      getLogger(["bridge", "agents"]).info("Agent {userid} connected", { userid: "7", sockets: 2 });
      getLogger(["bridge", "wechat"]).error("WeChat said {errcode}", { errcode: 45015 });
      assert.equal(lines.length, 2);
      const first = JSON.parse(lines[0]!.text);
      assert.equal(first.level, "INFO");
      assert.equal(first.logger, "bridge.agents");
      assert.equal(first.message, 'Agent "7" connected');
      assert.deepEqual(first.properties, { userid: "7", sockets: 2 });
      assert.deepEqual(lines.map((l) => l.method), ["log", "log"]);
    });
  });

  await t.step("a property named token, secret or authorization is redacted", async () => {
    await withLogging({ format: "json" }, (lines) => {
      getLogger(["bridge", "agents"]).info("Token for {userid}: {token}", {
        userid: "7",
        token: JWT,
        agentSecret: "super-secret-value-1234567890",
        access_token: "wechat-access-token-value",
        headers: { Authorization: `Bearer ${JWT}`, "content-type": "application/json" },
      });
      const line = lines[0]!.text;
      assert.ok(!line.includes(JWT.slice(0, 30)), line);
      assert.ok(!line.includes("super-secret-value"), line);
      assert.ok(!line.includes("wechat-access-token-value"), line);
      const parsed = JSON.parse(line);
      assert.equal(parsed.properties.token, "[REDACTED]");
      assert.equal(parsed.properties.agentSecret, "[REDACTED]");
      assert.equal(parsed.properties.headers.Authorization, "[REDACTED]");
      assert.equal(parsed.properties.headers["content-type"], "application/json");
      assert.equal(parsed.message, 'Token for "7": "[REDACTED]"');
    });
  });

  await t.step("credentials inside text (URLs, bearer values, errors) are redacted", async () => {
    await withLogging({ format: "json" }, (lines) => {
      const logger = getLogger(["bridge", "http"]);
      logger.info("Upgrade {url}", {
        url: `https://bridge.example/msg?userid=7&token=${JWT}&since=3`,
      });
      logger.info("Calling {api}", {
        api: "https://api.weixin.qq.com/cgi-bin/token?appid=wx1&secret=abcdef0123456789",
      });
      logger.warning("Auth failed: {error}", {
        error: new Error(`bad header Bearer ${JWT}`),
      });
      const text = lines.map((l) => l.text).join("\n");
      assert.ok(!text.includes(JWT.slice(0, 30)), text);
      assert.ok(!text.includes("abcdef0123456789"), text);
      assert.match(text, /userid=7&token=\[REDACTED\]&since=3/);
      assert.match(text, /appid=wx1&secret=\[REDACTED\]/);
      const error = JSON.parse(lines[2]!.text).properties.error;
      assert.equal(error.name, "Error");
      assert.equal(error.message, "bad header Bearer [REDACTED]");
      assert.match(error.stack, /logging_test\.ts/);
    });
  });
});

Deno.test("configureLogging() redacts WeChat's credentials by field and in text", async (t) => {
  await t.step("AppSecret, AES keys, signatures, Encrypt and cookies, at any depth", async () => {
    await withLogging({ format: "json" }, (lines) => {
      getLogger(["bridge", "wechat"]).info("Webhook from {openid}", {
        openid: "oFollower",
        timestamp: "1700000000",
        nonce: "n1",
        AppSecret: "app-secret-value-0001",
        config: { WECHAT_AES_KEY: "aes-key-value-0002", EncodingAESKey: "aes-key-value-0003" },
        query: { signature: "sig-value-0004", msg_signature: "sig-value-0005" },
        xml: { ToUserName: "gh_account", Encrypt: "cipher-value-0006" },
        headers: [{ "Set-Cookie": "session=cookie-value-0007" }],
        password: "password-value-0008",
      });
      const line = lines[0]!.text;
      for (let i = 1; i <= 8; i++) assert.ok(!line.includes(`-000${i}`), line);
      const { properties } = JSON.parse(line);
      assert.equal(properties.config.EncodingAESKey, "[REDACTED]");
      assert.equal(properties.query.msg_signature, "[REDACTED]");
      assert.equal(properties.xml.Encrypt, "[REDACTED]");
      assert.equal(properties.xml.ToUserName, "gh_account", "what is not a secret stays");
      assert.equal(properties.nonce, "n1");
      assert.equal(properties.openid, "oFollower");
    });
  });

  await t.step("access_token and signature in URLs, and a JWT anywhere in text", async () => {
    await withLogging({ format: "text" }, (lines) => {
      getLogger(["bridge", "wechat"]).error("Send failed: {error}", {
        error: new TypeError(
          "error sending request for url (https://api.weixin.qq.com/cgi-bin/message/custom/send" +
            "?access_token=wechat-token-value-0009)",
        ),
        url: "/wechat?signature=sig-value-0010&timestamp=1&nonce=2&openid=oF",
        note: `agent sent ${JWT} as text`,
      });
      const line = lines[0]!.text;
      assert.ok(!line.includes("-0009") && !line.includes("-0010"), line);
      assert.ok(!line.includes(JWT.slice(0, 30)), line);
      assert.match(line, /access_token=\[REDACTED\]/);
      assert.match(line, /signature=\[REDACTED\]&timestamp=1/);
    });
  });
});

Deno.test("configureLogging() writes readable lines in text mode", async (t) => {
  await t.step("category, level, message, then the properties it did not show", async () => {
    await withLogging({ format: "text" }, (lines) => {
      getLogger(["bridge", "routing"]).info("Delivered to {agent_id}", {
        agent_id: "7",
        contact_id: "oFollower",
        token: JWT,
      });
      getLogger(["bridge", "routing"]).warning("Queue is long");
      assert.equal(lines.length, 2);
      const line = lines[0]!.text;
      assert.match(line, /INF bridge·routing: Delivered to "?7"?/);
      assert.match(line, /contact_id=oFollower/);
      assert.match(line, /token=\[REDACTED\]/);
      assert.ok(!line.includes("agent_id="), "a property shown in the message is not repeated");
      assert.ok(!line.startsWith("{"), "not JSON");
      assert.equal(lines[1]!.method, "warn");
    });
  });
});

Deno.test("configureLogging() keeps a client's control characters from forging lines", async () => {
  await withLogging({ format: "text" }, (lines) => {
    // What a stranger posts: an account id that ends the line and writes a fake one after it,
    // and a terminal escape, in the message and in a property the message does not show.
    const forged = "gh_x\n2026-12-02 00:00:00 INF bridge·http: admin logged in\u001b[2J";
    getLogger(["bridge", "wechat"]).warning("Refused {reason}", { reason: forged, to: forged });
    assert.equal(lines.length, 1);
    const text = lines[0]!.text;
    // deno-lint-ignore no-control-regex -- these are what must not be there
    assert.ok(!/[\u0000-\u001f\u007f-\u009f]/.test(text), JSON.stringify(text));
    assert.match(text, /Refused gh_x\\u000a2026-12-02 .*admin logged in\\u001b\[2J/);
    assert.match(text, /to=gh_x\\u000a2026/);
  });
});

Deno.test("configureLogging() filters by level and category", async (t) => {
  await t.step("info by default: debug is dropped", async () => {
    await withLogging({ format: "json" }, (lines) => {
      getLogger(["bridge", "x"]).debug("hidden");
      getLogger(["bridge", "x"]).info("shown");
      assert.deepEqual(lines.map((l) => JSON.parse(l.text).message), ["shown"]);
    });
  });

  await t.step("LOG_LEVEL=warn keeps warnings and errors only", async () => {
    await withLogging({ format: "json", level: "WARN" }, (lines) => {
      getLogger(["bridge", "x"]).info("hidden");
      getLogger(["bridge", "x"]).warning("shown");
      getLogger(["bridge", "x"]).error("also shown");
      assert.deepEqual(lines.map((l) => JSON.parse(l.text).level), ["WARN", "ERROR"]);
    });
  });

  await t.step("loggers outside the bridge category print nothing", async () => {
    await withLogging({ format: "json", level: "trace" }, (lines) => {
      getLogger(["somebody-else"]).error("not ours");
      assert.equal(lines.length, 0);
    });
  });

  await t.step("an unknown level is refused", async () => {
    await assert.rejects(
      configureLogging({ format: "json", level: "loud" }),
      /Cannot parse LOG_LEVEL: "loud"/,
    );
  });
});

Deno.test("withAccount() names the account on every line logged in it, readable lines too", async () => {
  await withLogging({ format: "text", accounts: true }, (lines) => {
    const log = getLogger(["bridge", "wechat"]);
    withAccount("brand-b", () => log.warn("Bad signature from {ip}", { ip: "203.0.113.9" }));
    log.info("Bridge listening");
    assert.equal(lines.length, 2);
    assert.match(lines[0]!.text, /Bad signature from 203\.0\.113\.9 account=brand-b$/);
    assert.doesNotMatch(lines[1]!.text, /account=/);
  });
});
