// Issue #7, production hardening, end to end: every refusal (credentials, origin, userid,
// limits), a flooded socket, a stalled reader that must not delay another agent, SIGTERM with
// agents connected, /metrics as strict Prometheus text, and no token in the logs.

import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { mintAgentToken } from "../src/agents/auth.ts";
import { DEFAULT_LIMITS } from "../src/http/limits.ts";
import { createWechatCrypto } from "../src/wechat/crypto.ts";
import { computeSignature } from "../src/wechat/signature.ts";
import { connectAgent, post, type Received, type TestAgent, textXml } from "./helpers/agent.ts";
import { startBridge } from "./helpers/server.ts";
import { spawnBridge, type SpawnedBridge, waitReady } from "./helpers/spawn.ts";

const B = "/im_component/wx_official_account";
const SECRET = "production-test-agent-secret-0123456789abcdef";
const OTHER_SECRET = "someone-else-entirely-different-secret-0123456789";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// ---- Helpers ----------------------------------------------------------------------------------

const UPGRADE_HEADERS = {
  connection: "Upgrade",
  upgrade: "websocket",
  "sec-websocket-key": btoa("production-test!"),
  "sec-websocket-version": "13",
};

/** A WebSocket handshake sent with fetch, for the answers that refuse it (never a 101). */
async function upgradeAttempt(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, { headers: { ...UPGRADE_HEADERS, ...headers } });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** Resolves with the outcome of `new WebSocket`: "open", or the error's message. */
async function tryWebSocket(url: string, headers?: Record<string, string>): Promise<string> {
  const ws = headers === undefined ? new WebSocket(url) : new WebSocket(url, { headers });
  const outcome = await new Promise<string>((resolve) => {
    ws.onopen = () => resolve("open");
    ws.onerror = (e) => resolve((e as ErrorEvent).message);
  });
  if (ws.readyState !== WebSocket.CLOSED) {
    const closed = new Promise((r) => ws.addEventListener("close", r));
    ws.close();
    await closed;
  }
  return outcome;
}

async function getJson(url: string, headers: HeadersInit = {}) {
  const res = await fetch(url, { headers });
  const text = await res.text();
  return { status: res.status, text, headers: res.headers };
}

/** An agent-to-agent message posted to `send`, as another program would. */
function agentMessage(to: string, content: string, clientId?: string): string {
  return JSON.stringify({
    data: {
      msg_type: "text",
      contact_id: to,
      msg: { content },
      ...(clientId === undefined ? {} : { client_id: clientId }),
    },
    result: { code: 1001, message: "common" },
  });
}

const isError = (e: Received) => e.result.code === -1;
const contentOf = (e: Received) => e.data.msg?.["content"];

/** Polls `check` until it returns true, failing after `timeoutMs`. */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000) {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function closeAll(agents: TestAgent[]): Promise<void> {
  await Promise.all(agents.map((a) => a.close()));
}

/** A raw TCP WebSocket client: the handshake by hand, then frames read only when asked. */
interface RawSocket {
  conn: Deno.TcpConn;
  status: number;
  /** Reads frames until a close frame (returns its code) or the end of the stream (null). */
  readFrames(onText: (text: string) => void, maxMs: number): Promise<number | null>;
  close(): void;
}

async function rawUpgrade(port: number, path: string): Promise<RawSocket> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const request = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Connection: Upgrade",
    "Upgrade: websocket",
    `Sec-WebSocket-Key: ${UPGRADE_HEADERS["sec-websocket-key"]}`,
    "Sec-WebSocket-Version: 13",
    "",
    "",
  ].join("\r\n");
  await conn.write(encoder.encode(request));
  // Read the answer's head only: what follows it is frames, left in the kernel until asked for.
  let buffer: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  let headEnd = -1;
  while (headEnd < 0) {
    const chunk = new Uint8Array(1);
    const n = await conn.read(chunk);
    if (n === null) throw new Error("Connection closed during the handshake");
    buffer = concat(buffer, chunk.subarray(0, n));
    const text = decoder.decode(buffer);
    headEnd = text.indexOf("\r\n\r\n");
  }
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(decoder.decode(buffer))?.[1]);
  let closed = false;
  return {
    conn,
    status,
    async readFrames(onText, maxMs) {
      const deadline = performance.now() + maxMs;
      let pending: Uint8Array<ArrayBuffer> = new Uint8Array(0);
      let fragments: Uint8Array[] = [];
      const chunk = new Uint8Array(1 << 20);
      for (;;) {
        // Parse every whole frame in `pending`.
        for (;;) {
          if (pending.length < 2) break;
          const opcode = pending[0]! & 0x0f;
          const fin = (pending[0]! & 0x80) !== 0;
          let length = pending[1]! & 0x7f;
          let offset = 2;
          if (length === 126) {
            if (pending.length < 4) break;
            length = (pending[2]! << 8) | pending[3]!;
            offset = 4;
          } else if (length === 127) {
            if (pending.length < 10) break;
            length = Number(
              new DataView(pending.buffer, pending.byteOffset + 2, 8).getBigUint64(0),
            );
            offset = 10;
          }
          if (pending.length < offset + length) break;
          const payload = pending.slice(offset, offset + length);
          pending = pending.slice(offset + length);
          if (opcode === 8) {
            return payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005;
          }
          if (opcode === 1 || opcode === 0) {
            fragments.push(payload);
            if (fin) {
              onText(decoder.decode(fragments.reduce(concat, new Uint8Array(0))));
              fragments = [];
            }
          }
        }
        if (performance.now() > deadline) throw new Error("Timed out reading frames");
        const n = await conn.read(chunk);
        if (n === null) return null;
        pending = concat(pending, chunk.subarray(0, n));
      }
    },
    close() {
      if (closed) return;
      closed = true;
      conn.close();
    },
  };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

// ---- Metrics: a compact strict reader of text exposition format 0.0.4 ------------------------

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE_LINE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? ([^ ]+)(?: (-?\d+))?$/;
// Prometheus reads values with Go's ParseFloat, which takes NaN in any case (prom-client: "Nan").
const FLOAT = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|[Nn][Aa][Nn])$/;

/** Parses Prometheus text, throwing on the first thing the format forbids. */
function parsePrometheus(text: string): { types: Map<string, string>; samples: Sample[] } {
  if (!text.endsWith("\n")) throw new SyntaxError("does not end with a newline");
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const finished = new Set<string>();
  let current: string | undefined;
  const familyOf = (name: string) => {
    for (const suffix of ["_bucket", "_sum", "_count"]) {
      const base = name.slice(0, -suffix.length);
      if (name.endsWith(suffix) && types.get(base) === "histogram") return base;
    }
    return name;
  };
  const enter = (family: string, where: string) => {
    if (family === current) return;
    if (finished.has(family)) throw new SyntaxError(`${where}: ${family} split up`);
    if (current !== undefined) finished.add(current);
    current = family;
  };
  const seen = new Set<string>();
  text.slice(0, -1).split("\n").forEach((line, i) => {
    const where = `line ${i + 1} "${line}"`;
    const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
    if (meta) {
      const [, kind, name, rest = ""] = meta;
      if (!METRIC_NAME.test(name!)) throw new SyntaxError(`${where}: bad name`);
      enter(name!, where);
      if (kind === "TYPE") {
        if (types.has(name!)) throw new SyntaxError(`${where}: second TYPE`);
        if (samples.some((s) => familyOf(s.name) === name)) {
          throw new SyntaxError(`${where}: TYPE after samples`);
        }
        if (!["counter", "gauge", "histogram", "summary", "untyped"].includes(rest)) {
          throw new SyntaxError(`${where}: unknown type`);
        }
        types.set(name!, rest);
      } else if (/\\[^\\n]|\\$/.test(rest)) throw new SyntaxError(`${where}: bad HELP escape`);
      return;
    }
    // The format ignores empty lines; prom-client puts one between families.
    if (line.startsWith("#") || line === "") return;
    const m = SAMPLE_LINE.exec(line);
    if (!m) throw new SyntaxError(`${where}: not a sample`);
    const [, name, labelText = "", value] = m;
    if (!FLOAT.test(value!)) throw new SyntaxError(`${where}: bad value`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      if (k! in labels) throw new SyntaxError(`${where}: label ${k} twice`);
      labels[k!] = v!.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const family = familyOf(name!);
    if (!types.has(family)) throw new SyntaxError(`${where}: sample without TYPE`);
    enter(family, where);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new SyntaxError(`${where}: series twice`);
    seen.add(key);
    samples.push({ name: name!, labels, value: Number(value!.replace("Inf", "Infinity")) });
  });
  // Histograms: le ascending, cumulative, ending at +Inf = _count, with a _sum.
  for (const [family, type] of types) {
    if (type !== "histogram") continue;
    const groups = new Map<string, Sample[]>();
    for (const s of samples.filter((s) => s.name === `${family}_bucket`)) {
      const { le, ...rest } = s.labels;
      if (le === undefined || !FLOAT.test(le)) throw new SyntaxError(`${family}: bad le`);
      const key = JSON.stringify(Object.entries(rest).sort());
      groups.set(key, [...(groups.get(key) ?? []), s]);
    }
    for (const [key, buckets] of groups) {
      const les = buckets.map((b) => Number(b.labels["le"]!.replace("Inf", "Infinity")));
      for (let i = 1; i < buckets.length; i++) {
        if (!(les[i]! > les[i - 1]!)) throw new SyntaxError(`${family}${key}: le unsorted`);
        if (buckets[i]!.value < buckets[i - 1]!.value) {
          throw new SyntaxError(`${family}${key}: not cumulative`);
        }
      }
      const match = (s: Sample) => JSON.stringify(Object.entries(s.labels).sort()) === key;
      const count = samples.find((s) => s.name === `${family}_count` && match(s));
      const sum = samples.find((s) => s.name === `${family}_sum` && match(s));
      if (!count || !sum) throw new SyntaxError(`${family}${key}: no _sum or _count`);
      if (les.at(-1) !== Infinity || buckets.at(-1)!.value !== count.value) {
        throw new SyntaxError(`${family}${key}: +Inf bucket missing or != _count`);
      }
    }
  }
  return { types, samples };
}

function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}) {
  const want = JSON.stringify(Object.entries(labels).sort());
  return samples.find((s) =>
    s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want
  )?.value;
}

Deno.test("the test's Prometheus reader refuses what the format forbids", () => {
  const good = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="q\\""} 1\n' +
    '\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3\nh_count 2\n' +
    "\n# TYPE g gauge\ng Nan\n";
  assert.equal(parsePrometheus(good).samples.length, 6);
  const bad = [
    "# TYPE a counter\na 1",
    "a 1\n",
    '# TYPE a counter\na{x="q"q"} 1\n',
    "# TYPE a counter\na one\n",
    "# TYPE a counter\na 1\na 2\n",
    "# TYPE a counter\n# TYPE b counter\nb 1\na 1\n",
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
  ];
  for (const text of bad) assert.throws(() => parsePrometheus(text), SyntaxError, text);
});

// ---- Refusals before any upgrade --------------------------------------------------------------

function b64url(text: string): string {
  return btoa(text).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function signToken(claims: { sub?: string; exp?: number; iat?: number }, secret = SECRET) {
  const jwt = new SignJWT({}).setProtectedHeader({ alg: "HS256", typ: "JWT" });
  if (claims.iat !== undefined) jwt.setIssuedAt(claims.iat);
  if (claims.sub !== undefined) jwt.setSubject(claims.sub);
  if (claims.exp !== undefined) jwt.setExpirationTime(claims.exp);
  return jwt.sign(encoder.encode(secret));
}

Deno.test("agent credentials: missing, forged, expired or someone else's token is 401", async (t) => {
  const server = await startBridge({ env: { AGENT_SECRET: SECRET } });
  const hub = server.bridge.hub;
  const nowS = Math.floor(Date.now() / 1000);
  const exp = nowS + 3600;
  const alice = await mintAgentToken(SECRET, "alice", 3600);
  const bob = await mintAgentToken(SECRET, "bob", 3600);
  const bad: [string, string | null][] = [
    ["missing", null],
    ["forged (another secret)", await mintAgentToken(OTHER_SECRET, "alice", 3600)],
    ["expired", await signToken({ sub: "alice", iat: nowS - 7200, exp: nowS - 60 })],
    ["someone else's", bob],
    ["without exp", await signToken({ sub: "alice", iat: nowS })],
    [
      "unsigned (alg none)",
      `${b64url('{"alg":"none"}')}.${b64url(`{"sub":"alice","exp":${exp}}`)}.`,
    ],
    // bob's signature on a payload that names alice.
    ["tampered", bob.replace(/\.[^.]+\./, `.${b64url(`{"sub":"alice","exp":${exp}}`)}.`)],
    ["garbage", "not-a-jwt"],
  ];
  const sockets: TestAgent[] = [];
  try {
    for (const path of [`${B}/msg`, "/"]) {
      await t.step(`socket at ${path}: each bad token is 401 before the upgrade`, async () => {
        for (const [what, token] of bad) {
          const query = `?userid=alice${token === null ? "" : `&token=${token}`}`;
          const res = await upgradeAttempt(`${server.base}${path}${query}`);
          assert.equal(res.status, 401, `${what}: ${res.body}`);
          assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/, what);
          assert.equal(JSON.parse(res.body).result.code, -1, what);
          if (token !== null) assert.ok(!res.body.includes(token), `${what}: token echoed`);
        }
        assert.equal(hub.socketsOf("alice"), 0);
        assert.equal(hub.socketCount, 0);
      });
    }

    await t.step(
      "new WebSocket fails with 401 on a bad token and opens with a good one",
      async () => {
        assert.match(
          await tryWebSocket(`${server.wsBase}${B}/msg?userid=alice&token=${bob}`),
          /401/,
        );
        assert.match(await tryWebSocket(`${server.wsBase}${B}/msg?userid=alice`), /401/);
        const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=alice&token=${alice}`);
        sockets.push(agent);
        await until(() => hub.socketsOf("alice") === 1, "alice registered");
        // The token alone names the agent.
        const byToken = await connectAgent(`${server.wsBase}${B}/msg?token=${bob}`);
        sockets.push(byToken);
        await until(() => hub.socketsOf("bob") === 1, "bob registered by his token");
      },
    );

    await t.step("HTTP contacts: bearer required, checked, and must name the userid", async () => {
      const url = `${server.base}${B}/contacts?userid=alice`;
      for (const [what, token] of bad) {
        const headers: HeadersInit = token === null ? {} : { authorization: `Bearer ${token}` };
        const res = await getJson(url, headers);
        assert.equal(res.status, 401, `${what}: ${res.text}`);
        assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/, what);
      }
      const ok = await getJson(url, { authorization: `Bearer ${alice}` });
      assert.equal(ok.status, 200, ok.text);
      assert.ok(Array.isArray(JSON.parse(ok.text).contacts));
      // Without userid the bearer names the agent.
      const own = await getJson(`${server.base}${B}/contacts`, { authorization: `Bearer ${bob}` });
      assert.equal(own.status, 200, own.text);
      const history = await getJson(`${server.base}${B}/history?userid=alice&contact_id=x`, {
        authorization: `Bearer ${bob}`,
      });
      assert.equal(history.status, 401, history.text);
    });

    await t.step("HTTP send: a JSON push needs a token; a valid one delivers", async () => {
      const body = agentMessage("bob", "from alice over HTTP");
      const anonymous = await post(`${server.base}${B}/send`, body);
      assert.equal(anonymous.status, 401, anonymous.text);
      const forged = await post(`${server.base}${B}/send`, body, {
        authorization: `Bearer ${bad[1]![1]}`,
      });
      assert.equal(forged.status, 401, forged.text);
      const sent = await post(`${server.base}${B}/send`, body, {
        authorization: `Bearer ${alice}`,
      });
      assert.equal(sent.status, 200, sent.text);
      const got = await sockets[1]!.waitFor((e) => contentOf(e) === "from alice over HTTP");
      assert.equal(got.data["from"], "alice");
    });
  } finally {
    await closeAll(sockets);
    await server.close();
  }
});

Deno.test("ALLOWED_ORIGINS: a socket from another Origin is 403 before the upgrade", async (t) => {
  const allowed = "https://console.example.com";
  const server = await startBridge({
    env: { ALLOWED_ORIGINS: `${allowed},http://localhost:8080` },
  });
  try {
    await t.step("another origin and a look-alike are 403", async () => {
      for (
        const origin of [
          "https://evil.example.com",
          "https://console.example.com.evil.net",
          "http://console.example.com",
          "http://localhost:8081",
          "null",
        ]
      ) {
        const res = await upgradeAttempt(`${server.base}${B}/msg?userid=a`, { origin });
        assert.equal(res.status, 403, `${origin}: ${res.body}`);
      }
      assert.match(
        await tryWebSocket(`${server.wsBase}${B}/msg?userid=a`, {
          origin: "https://evil.example.com",
        }),
        /403/,
      );
      assert.equal(server.bridge.hub.socketCount, 0);
    });

    await t.step("an allowed origin (any case, default port) opens", async () => {
      for (const origin of [allowed, "HTTPS://Console.Example.com:443", "http://localhost:8080"]) {
        assert.equal(
          await tryWebSocket(`${server.wsBase}${B}/msg?userid=a`, { origin }),
          "open",
          origin,
        );
      }
    });
  } finally {
    await server.close();
  }
});

Deno.test("a socket without a valid userid is 400 and not upgraded", async (t) => {
  const server = await startBridge();
  try {
    await t.step("no userid, an empty one, a malformed one, a bad since", async () => {
      for (
        const query of [
          "",
          "?userid=",
          "?userId=",
          "?userid=a%20b",
          `?userid=${"x".repeat(65)}`,
          "?userid=a&since=-1",
          "?userid=a&since=abc",
        ]
      ) {
        for (const path of [`${B}/msg`, "/"]) {
          const res = await upgradeAttempt(`${server.base}${path}${query}`);
          assert.equal(res.status, 400, `${path}${query}: ${res.body}`);
          assert.equal(JSON.parse(res.body).result.code, -1);
        }
      }
      assert.match(await tryWebSocket(`${server.wsBase}${B}/msg`), /400/);
      assert.equal(server.bridge.hub.socketCount, 0);
    });

    await t.step("a plain GET of the socket route is 426, not a 500", async () => {
      const res = await getJson(`${server.base}${B}/msg?userid=a`);
      assert.equal(res.status, 426, res.text);
      assert.equal(res.headers.get("upgrade"), "websocket");
    });
  } finally {
    await server.close();
  }
});

// ---- Limits -----------------------------------------------------------------------------------

Deno.test("limits: body size, messages per second, frame size, sockets per agent", async (t) => {
  const server = await startBridge();
  const hub = server.bridge.hub;
  const agents: TestAgent[] = [];
  const connect = async (userid: string) => {
    const agent = await connectAgent(`${server.wsBase}${B}/msg?userid=${userid}`);
    agents.push(agent);
    await until(() => hub.socketsOf(userid) >= 1, `${userid} registered`);
    return agent;
  };
  try {
    await t.step("bodies over the route's limit are 413 (declared or streamed)", async () => {
      // XML posted to /send (the seed's test does) is held to WeChat's cap, JSON to its own.
      const routes: [string, number][] = [
        [`${B}/send`, DEFAULT_LIMITS.xmlBodyBytes],
        ["/send", DEFAULT_LIMITS.xmlBodyBytes],
        [`${B}/send_xml`, DEFAULT_LIMITS.xmlBodyBytes],
      ];
      for (const [path, limit] of routes) {
        const big = "<xml>" + "x".repeat(limit) + "</xml>";
        const declared = await post(`${server.base}${path}`, big);
        assert.equal(declared.status, 413, `${path}: ${declared.text}`);
        // No Content-Length: the server counts as it reads.
        const chunks = [
          encoder.encode("<xml>"),
          ...Array(Math.ceil(limit / 4096) + 1).fill(
            encoder.encode("y".repeat(4096)),
          ),
        ];
        const streamed = await fetch(`${server.base}${path}`, {
          method: "POST",
          body: ReadableStream.from(chunks),
        });
        assert.equal(streamed.status, 413, `${path} streamed: ${await streamed.text()}`);
      }
      // Just under the limit is read (and answered on its merits); JSON past its own is 413.
      const body = agentMessage("nobody", "z".repeat(DEFAULT_LIMITS.sendBodyBytes - 200));
      const under = await post(`${server.base}${B}/send`, body);
      assert.equal(under.status, 404, under.text);
      const over = agentMessage("nobody", "z".repeat(DEFAULT_LIMITS.sendBodyBytes));
      assert.equal((await post(`${server.base}${B}/send`, over)).status, 413);
    });

    const flooder = await connect("flooder");
    const target = await connect("target");
    const other = await connect("other");

    /** Sends until the rate limiter lets a message through (it refills 10 a second). */
    const sendThroughLimiter = async (from: TestAgent, to: TestAgent, content: string) => {
      for (let attempt = 0; attempt < 30; attempt++) {
        const tagged = `${content}#${attempt}`;
        from.send(agentMessage(to === target ? "target" : "other", tagged));
        const ok = await to.waitFor((e) => contentOf(e) === tagged, 200).then(
          () => true,
          () => false,
        );
        if (ok) return;
      }
      throw new Error(`No message got through: ${content.slice(0, 20)}`);
    };

    await t.step("a flood of 100 frames: -1 'Too many messages', the rest delivered", async () => {
      const N = 100;
      const ticker = (async () => {
        // Meanwhile another agent is served as usual.
        for (let i = 0; i < 5; i++) {
          const res = await post(`${server.base}${B}/send`, agentMessage("other", `during ${i}`));
          assert.equal(res.status, 200, res.text);
        }
      })();
      for (let i = 0; i < N; i++) flooder.send(agentMessage("target", `flood ${i}`, `f${i}`));
      await ticker;
      await other.waitFor((e) => contentOf(e) === "during 4", 3000);
      await until(
        () =>
          flooder.received.filter(isError).length +
              target.messages().filter((e) => String(contentOf(e)).startsWith("flood")).length ===
            N,
        "every flood frame answered or delivered",
      );
      const refused = flooder.received.filter(isError);
      const delivered = target.messages().filter((e) => String(contentOf(e)).startsWith("flood"));
      for (const e of refused) assert.match(e.result.message, /^Too many messages/);
      assert.ok(delivered.length >= DEFAULT_LIMITS.messageBurst, `${delivered.length} delivered`);
      assert.ok(refused.length >= N - DEFAULT_LIMITS.messageBurst - 10, `${refused.length}`);
      // The ones let through are the first, in order.
      assert.deepEqual(
        delivered.map(contentOf),
        delivered.map((_, i) => `flood ${i}`),
      );
    });

    await t.step("the flooded socket stays open and is usable once the rate allows", async () => {
      assert.equal(flooder.socket.readyState, WebSocket.OPEN);
      await sendThroughLimiter(flooder, target, "after flood");
      assert.equal(flooder.socket.readyState, WebSocket.OPEN);
    });

    await t.step("a 100 KB frame gets a -1 envelope; the socket stays usable", async () => {
      const before = flooder.received.filter(isError).length;
      flooder.send(agentMessage("target", "B".repeat(100 * 1024), "huge"));
      const refusal = await flooder.waitFor((e) =>
        isError(e) && /larger than/.test(e.result.message)
      );
      assert.match(refusal.result.message, new RegExp(`${DEFAULT_LIMITS.frameBytes} bytes`));
      assert.equal(flooder.received.filter(isError).length, before + 1);
      // A frame just under the limit goes through.
      await sendThroughLimiter(flooder, target, "s".repeat(DEFAULT_LIMITS.frameBytes - 300));
      assert.ok(!target.messages().some((e) => String(contentOf(e)).startsWith("BBB")));
      assert.equal(flooder.socket.readyState, WebSocket.OPEN);
    });

    await t.step("the 9th socket for one agent is 429 before the upgrade", async () => {
      const limit = DEFAULT_LIMITS.socketsPerAgent;
      const tabs: TestAgent[] = [];
      for (let i = 0; i < limit; i++) tabs.push(await connect("tabs"));
      await until(() => hub.socketsOf("tabs") === limit, `${limit} sockets registered`);
      const ninth = await upgradeAttempt(`${server.base}${B}/msg?userid=tabs`);
      assert.equal(ninth.status, 429, ninth.body);
      assert.match(await tryWebSocket(`${server.wsBase}${B}/msg?userid=tabs`), /429/);
      assert.equal(hub.socketsOf("tabs"), limit);
      // Another agent is not affected; one tab closing frees a place.
      assert.equal(await tryWebSocket(`${server.wsBase}${B}/msg?userid=tabs2`), "open");
      await tabs[0]!.close();
      await until(() => hub.socketsOf("tabs") === limit - 1, "a tab closed");
      await connect("tabs");
    });

    await t.step("12 sockets opened at once for one agent: exactly 8 open", async () => {
      const limit = DEFAULT_LIMITS.socketsPerAgent;
      const results = await Promise.all(
        Array.from(
          { length: limit + 4 },
          () =>
            connectAgent(`${server.wsBase}${B}/msg?userid=burst`).then(
              (a) => (agents.push(a), "open"),
              () => "refused",
            ),
        ),
      );
      assert.equal(results.filter((r) => r === "open").length, limit, results.join(" "));
      await until(() => hub.socketsOf("burst") === limit, `${limit} registered`);
    });
  } finally {
    await closeAll(agents);
    await server.close();
  }
});

// ---- Slow agents ------------------------------------------------------------------------------

Deno.test("a stalled reader is closed with 4001 and does not delay another agent", async (t) => {
  // This test floods the stalled agent through `POST send`: lift that route's rate limit.
  const server = await startBridge({ env: { SEND_RATE_PER_S: "1000000" } });
  const hub = server.bridge.hub;
  const agents: TestAgent[] = [];
  let stalled: RawSocket | undefined;
  // 20 KB a message (under the 24 KiB body limit), 20 MB in all: enough to pass the hub's
  // 8 MiB bound plus what the kernel buffers.
  const BIG = 20_000;
  const COUNT = 1_000;
  try {
    stalled = await rawUpgrade(server.port, `${B}/msg?userid=slow`);
    assert.equal(stalled.status, 101);
    await until(() => hub.socketsOf("slow") === 1, "the stalled socket registered");
    const prompt = await connectAgent(`${server.wsBase}${B}/msg?userid=prompt`);
    agents.push(prompt);
    await until(() => hub.socketsOf("prompt") === 1, "prompt registered");
    const arrived = new Map<string, number>();
    prompt.socket.addEventListener("message", (e) => {
      const content = JSON.parse(e.data).data?.msg?.content;
      if (typeof content === "string") arrived.set(content, performance.now());
    });
    const sentAt = new Map<string, number>();

    await t.step("the other agent gets every message promptly while one is stuck", async () => {
      for (let i = 0; i < COUNT; i++) {
        const big = await post(
          `${server.base}${B}/send`,
          agentMessage("slow", `${i}:`.padEnd(BIG, "x")),
        );
        assert.equal(big.status, 200, big.text);
        if (i % 10 === 0) {
          const content = `prompt ${i}`;
          sentAt.set(content, performance.now());
          const res = await post(`${server.base}${B}/send`, agentMessage("prompt", content));
          assert.equal(res.status, 200, res.text);
        }
      }
      await prompt.waitForCount(COUNT / 10, 5000);
      const latencies = [...sentAt].map(([c, t0]) => (arrived.get(c) ?? Infinity) - t0);
      const worst = Math.max(...latencies);
      assert.ok(worst < 1500, `a message to the prompt agent took ${worst.toFixed(0)} ms`);
    });

    const seen: number[] = [];
    const indexOf = (content: unknown) => Number(String(content).split(":")[0]);
    await t.step("the stalled socket, once read, ends with close code 4001", async () => {
      const indexes: number[] = [];
      const code = await stalled!.readFrames((text) => {
        const env = JSON.parse(text);
        if (typeof env.data?.seq !== "number") return;
        seen.push(env.data.seq);
        indexes.push(indexOf(env.data.msg?.content));
      }, 20_000);
      assert.equal(code, 4001, `closed with ${code} after ${seen.length} messages`);
      assert.ok(seen.length < COUNT, "the stalled socket was sent everything");
      assert.ok(seen.length > 0);
      // What it was sent before the close is the start of the sequence, whole.
      assert.deepEqual(indexes, indexes.map((_, i) => i));
      stalled!.close();
      await until(() => hub.socketsOf("slow") === 0, "the slow socket unregistered");
    });

    const cuts: number[] = [];
    await t.step("reconnecting with since= gets the rest, in order, without gaps", async () => {
      const indexes: number[] = [];
      let since = seen.at(-1)!;
      const missing = COUNT - seen.length;
      // A reader cut again with 4001 reconnects again from what it has (see the next step).
      for (let attempt = 0; attempt < 10 && indexes.length < missing; attempt++) {
        const again = await connectAgent(`${server.wsBase}${B}/msg?userid=slow&since=${since}`);
        agents.push(again);
        const outcome = await Promise.race([
          again.waitForCount(missing - indexes.length, 20_000).then(() => "all" as const),
          again.closed.then((e) => e.code),
        ]);
        for (const e of again.messages()) {
          indexes.push(indexOf(contentOf(e)));
          since = e.data.seq!;
        }
        if (outcome !== "all") {
          assert.equal(outcome, 4001, "a replay ended with another close code");
          cuts.push(again.messages().length);
        }
      }
      assert.deepEqual(indexes, Array.from({ length: missing }, (_, i) => seen.length + i));
    });

    // The replay waits for the reader between writes, so a fast reader is never cut.
    await t.step({
      name: "a fast reader's replay is not cut with 4001",
      fn: () => assert.deepEqual(cuts, [], `cut after ${cuts.join(", ")} messages`),
    });
  } finally {
    stalled?.close();
    await closeAll(agents);
    await server.close();
  }
});

// ---- /metrics, /healthz, /readyz --------------------------------------------------------------

Deno.test("/metrics parses as Prometheus text and counts the traffic", async (t) => {
  const server = await startBridge();
  const agents: TestAgent[] = [];
  try {
    await t.step("/healthz and /readyz answer 200", async () => {
      for (const path of ["/healthz", "/readyz"]) {
        const res = await getJson(`${server.base}${path}`);
        assert.equal(res.status, 200, `${path}: ${res.text}`);
      }
    });

    const N = 7;
    await t.step("after traffic, the text is valid and the counts match", async () => {
      const a = await connectAgent(`${server.wsBase}${B}/msg?userid=m1`);
      const b = await connectAgent(`${server.wsBase}${B}/msg?userid=m2`);
      agents.push(a, b);
      await until(() => server.bridge.hub.socketCount === 2, "two sockets registered");
      for (let i = 0; i < N; i++) {
        const res = await post(
          `${server.base}${B}/send_xml`,
          textXml(`oFollower${i}`, "gh_account", `hello ${i}`, `${9000 + i}`),
        );
        assert.equal(res.text, "success");
      }
      await until(() => a.messages().length + b.messages().length >= N, "follower messages");
      a.send(agentMessage("m2", "x".repeat(DEFAULT_LIMITS.frameBytes + 1)));
      await a.waitFor(isError);

      const res = await fetch(`${server.base}/metrics`);
      const text = await res.text();
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const { types, samples } = parsePrometheus(text);
      for (
        const [name, type] of [
          ["bridge_agent_sockets_open", "gauge"],
          ["bridge_agents_online", "gauge"],
          ["bridge_messages_in_total", "counter"],
          ["bridge_messages_out_total", "counter"],
          ["bridge_webhook_duration_seconds", "histogram"],
          ["bridge_delivery_latency_seconds", "histogram"],
          ["bridge_rejected_total", "counter"],
        ]
      ) assert.equal(types.get(name!), type, name);
      assert.ok(samples.some((s) => s.name === "bridge_webhook_duration_seconds_bucket"));
      assert.equal(valueOf(samples, "bridge_messages_in_total", { msg_type: "text" }), N);
      assert.equal(valueOf(samples, "bridge_messages_out_total", { msg_type: "text" }), N);
      assert.equal(valueOf(samples, "bridge_webhook_duration_seconds_count"), N);
      assert.equal(valueOf(samples, "bridge_agent_sockets_open"), 2);
      assert.equal(valueOf(samples, "bridge_agents_online"), 2);
      assert.equal(valueOf(samples, "bridge_rejected_total", { reason: "frame_size" }), 1);
    });

    await t.step("the socket gauge follows closes", async () => {
      await closeAll(agents);
      await until(async () => {
        const { samples } = parsePrometheus(await (await fetch(`${server.base}/metrics`)).text());
        return valueOf(samples, "bridge_agent_sockets_open") === 0 &&
          valueOf(samples, "bridge_agents_online") === 0;
      }, "gauges back to 0");
    });
  } finally {
    await closeAll(agents);
    await server.close();
  }
});

// ---- The real process: SIGTERM, logs ----------------------------------------------------------

Deno.test("SIGTERM with agents connected: clean close codes, exit 0, nothing accepted lost", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-sigterm-" });
  const server = spawnBridge({ DATA_DIR: dataDir, AGENT_SECRET: SECRET, LOG_FORMAT: "json" });
  const agents: TestAgent[] = [];
  const tokens = [
    await mintAgentToken(SECRET, "alice", 600),
    await mintAgentToken(SECRET, "bob", 600),
    await mintAgentToken(OTHER_SECRET, "mallory", 600),
  ];
  try {
    await waitReady(server);
    const alice = await connectAgent(`${server.wsBase}${B}/msg?userid=alice&token=${tokens[0]}`);
    const bob = await connectAgent(`${server.wsBase}${B}/msg?token=${tokens[1]}`);
    agents.push(alice, bob);
    // Refusals and errors leave log lines too; none may carry the token.
    assert.equal(
      (await upgradeAttempt(`${server.base}${B}/msg?userid=mallory&token=${tokens[2]}`)).status,
      401,
    );
    const contacts = await getJson(`${server.base}${B}/contacts?userid=alice`, {
      authorization: `Bearer ${tokens[0]}`,
    });
    assert.equal(contacts.status, 200, contacts.text);
    await getJson(`${server.base}${B}/msg?userid=alice&token=${tokens[0]}`);

    const accepted: string[] = [];
    let slowOutcome = "";
    let msgId = 70_000;
    const postOne = async (follower: string) => {
      const id = String(++msgId);
      try {
        const res = await post(
          `${server.base}${B}/send_xml`,
          textXml(follower, "gh_account", `message ${id}`, id),
        );
        if (res.status === 200 && res.text === "success") accepted.push(id);
        return res.status === 200;
      } catch {
        return false; // the server is gone: not accepted
      }
    };

    await t.step("messages posted before the signal are delivered", async () => {
      for (let i = 0; i < 20; i++) assert.ok(await postOne(`oF${i % 6}`));
      await until(
        () => alice.messages().length + bob.messages().length >= 20,
        "20 deliveries",
      );
    });

    await t.step("SIGTERM while posting: sockets close 1012, exit 0 within 10 s", async () => {
      // Four followers keep posting across the signal.
      let stop = false;
      const posters = Array.from({ length: 4 }, async (_, k) => {
        while (!stop && await postOne(`oF${k}`)) { /* keep going */ }
      });
      await until(() => accepted.length >= 40, "posting under way");
      // One more is half sent when the signal comes, and finished once the server is stopping.
      const slowId = String(++msgId);
      const xml = encoder.encode(textXml("oSlow", "gh_account", `message ${slowId}`, slowId));
      let finishBody = () => {};
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(xml.slice(0, 40));
          finishBody = () => {
            controller.enqueue(xml.slice(40));
            controller.close();
          };
        },
      });
      const slow = fetch(`${server.base}${B}/send_xml`, { method: "POST", body }).then(
        async (res) => {
          const text = await res.text();
          if (res.status === 200 && text === "success") accepted.push(slowId);
          return `${res.status} ${text}`;
        },
        (error: Error) => error.message,
      );
      // Nothing outside shows the request has reached the handler: give it a moment.
      await new Promise((r) => setTimeout(r, 100));
      const signalled = performance.now();
      server.child.kill("SIGTERM");
      await until(async () => {
        try {
          const res = await fetch(`${server.base}/healthz`);
          await res.body?.cancel();
          return res.status !== 200;
        } catch {
          return true;
        }
      }, "the server to stop taking requests");
      finishBody();
      slowOutcome = await slow;
      // A request in flight at the signal is finished, not dropped.
      assert.equal(slowOutcome, "200 success");
      const status = await withTimeout(server.status, 10_000, "exit after SIGTERM");
      stop = true;
      await Promise.all(posters);
      assert.ok(performance.now() - signalled < 10_000);
      assert.equal(status.code, 0, JSON.stringify(await server.output));
      for (const agent of [alice, bob]) {
        const closed = await withTimeout(agent.closed, 2000, "socket close");
        assert.equal(closed.code, 1012, `close code ${closed.code}`);
      }
    });

    await t.step("every message answered 'success' reached an agent", () => {
      const got = new Set(
        [...alice.messages(), ...bob.messages()].map((e) => String(e.data["id"])),
      );
      const lost = accepted.filter((id) => !got.has(id));
      assert.deepEqual(lost, [], `${lost.length} of ${accepted.length} accepted were lost`);
    });

    await t.step("the JSON logs never contain a token", async () => {
      const { stdout, stderr } = await server.output;
      const lines = stdout.trim().split("\n");
      assert.ok(lines.length >= 2, stdout);
      for (const line of lines) JSON.parse(line); // JSON Lines
      assert.match(stdout, /SIGTERM/);
      for (const token of tokens) {
        for (const part of [token, token.split(".")[1]!, token.split(".")[2]!]) {
          assert.ok(!stdout.includes(part) && !stderr.includes(part), "a token reached the logs");
        }
      }
    });
  } finally {
    await closeAll(agents);
    try {
      server.child.kill("SIGKILL");
    } catch { /* exited */ }
    await server.status;
    await server.output;
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("the real process refuses to start with an AGENT_SECRET under 32 bytes", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-weak-" });
  try {
    const server = spawnBridge({
      DATA_DIR: dataDir,
      AGENT_SECRET: "short-secret-31-bytes-long-xxxx",
    });
    const status = await withTimeout(server.status, 30_000, "exit with a weak secret");
    const { stdout, stderr } = await server.output;
    assert.equal(status.code, 2, stdout + stderr);
    assert.match(stdout + stderr, /AGENT_SECRET.*31 bytes.*32/);
    assert.ok(!(stdout + stderr).includes("short-secret-31"), "the secret reached the logs");
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("the real process says in its log that it runs open and which AES key opened a message", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-logs-" });
  const token = "log-test-token";
  const appId = "wx2c2769f8efd9abc2";
  const oldKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
  // No AGENT_SECRET: the open-mode warning is expected.
  const server = spawnBridge({
    DATA_DIR: dataDir,
    LOG_FORMAT: "json",
    AGENT_SECRET: "",
    WECHAT_TOKEN: token,
    WECHAT_APPID: appId,
    WECHAT_AES_KEY: "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    WECHAT_AES_KEY_PREVIOUS: oldKey,
  });
  try {
    await waitReady(server);
    await t.step("a message under WECHAT_AES_KEY_PREVIOUS is accepted", async () => {
      const encrypt = createWechatCrypto({ aesKey: oldKey, appId })
        .encrypt(textXml("oLog", "gh_account", "old key", "77001"));
      const timestamp = String(Math.floor(Date.now() / 1000));
      const query = new URLSearchParams({
        signature: computeSignature(token, timestamp, "n1"),
        timestamp,
        nonce: "n1",
        encrypt_type: "aes",
        msg_signature: computeSignature(token, timestamp, "n1", encrypt),
      });
      const res = await post(
        `${server.base}${B}/send_xml?${query}`,
        `<xml><ToUserName><![CDATA[gh_account]]></ToUserName><Encrypt><![CDATA[${encrypt}]]></Encrypt></xml>`,
      );
      assert.deepEqual(res, { status: 200, text: "success" });
    });
    server.child.kill("SIGTERM");
    await withTimeout(server.status, 15_000, "exit after SIGTERM");
    const { stdout } = await server.output;
    const messages = stdout.split("\n").filter((l) => l.trim() !== "").map((l) =>
      String((JSON.parse(l) as { message: unknown }).message)
    );
    await t.step("the log warns that AGENT_SECRET is not set", () => {
      assert.ok(messages.some((m) => m.startsWith("AGENT_SECRET is not set")), stdout);
    });
    await t.step("the log says the previous key opened the message", () => {
      assert.ok(messages.some((m) => m.includes("WECHAT_AES_KEY_PREVIOUS")), stdout);
    });
  } finally {
    try {
      server.child.kill("SIGKILL");
    } catch { /* exited already */ }
    await server.status;
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("SIGTERM with the default store: what was accepted is there after a restart", async (t) => {
  const dataDir = await Deno.makeTempDir({ prefix: "bridge-kv-restart-" });
  const agents: TestAgent[] = [];
  const spawned: SpawnedBridge[] = [];
  const start = async () => {
    const server = spawnBridge({ DATA_DIR: dataDir, STORE: "" }); // unset: SQLite
    spawned.push(server);
    await waitReady(server);
    return server;
  };
  const postFollower = async (server: SpawnedBridge, follower: string, id: string) => {
    const res = await post(
      `${server.base}${B}/send_xml`,
      textXml(follower, "gh_account", `kv ${id}`, id),
    );
    assert.equal(`${res.status} ${res.text}`, "200 success");
  };
  const metric = async (server: SpawnedBridge, name: string) =>
    valueOf(parsePrometheus(await (await fetch(`${server.base}/metrics`)).text()).samples, name);
  try {
    const ids = Array.from({ length: 10 }, (_, i) => String(80_000 + i));
    await t.step("first run: 5 delivered, then 5 queued with no agent online", async () => {
      const first = await start();
      const alice = await connectAgent(`${first.wsBase}${B}/msg?userid=alice`);
      agents.push(alice);
      for (let i = 0; i < 5; i++) await postFollower(first, `oK${i}`, ids[i]!);
      await until(
        () => alice.messages().filter((e) => e.data["msg_type"] === "text").length === 5,
        "5 follower messages",
      );
      await alice.close();
      await until(async () => await metric(first, "bridge_agents_online") === 0, "alice offline");
      for (let i = 5; i < 10; i++) await postFollower(first, `oK${i}`, ids[i]!);
      first.child.kill("SIGTERM");
      const status = await withTimeout(first.status, 10_000, "exit after SIGTERM");
      assert.equal(status.code, 0, JSON.stringify(await first.output));
    });

    await t.step("second run on the same DATA_DIR: alice gets all 10, once each", async () => {
      const second = await start();
      const alice = await connectAgent(`${second.wsBase}${B}/msg?userid=alice&since=0`);
      agents.push(alice);
      // System messages (assigned, …) come too: count the followers' texts.
      const texts = () => alice.messages().filter((e) => e.data["msg_type"] === "text");
      await until(() => texts().length >= 10, "10 follower messages");
      const got = texts();
      assert.deepEqual(got.map((e) => String(e.data["id"])).sort(), ids);
      const seqs = got.map((e) => e.data.seq!);
      assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b), "seq repeated or unordered");
    });
  } finally {
    await closeAll(agents);
    for (const server of spawned) {
      try {
        server.child.kill("SIGTERM");
      } catch { /* exited */ }
      await server.status;
      await server.output;
    }
    await Deno.remove(dataDir, { recursive: true });
  }
});
