import assert from "node:assert/strict";
import { jwtVerify, SignJWT, UnsecuredJWT } from "jose";
import { createAgentAuth, mintAgentToken } from "../../src/agents/auth.ts";
import { HttpError } from "../../src/http/http_error.ts";

const SECRET = "test-secret-that-is-long-enough-for-hs256!";
const OTHER_SECRET = "another-secret-also-long-enough-for-hs256";
const key = new TextEncoder().encode(SECRET);
const WS_URL = "http://bridge.test/im_component/wx_official_account/msg";

function nowS(): number {
  return Math.floor(Date.now() / 1000);
}

function sign(claims: { sub?: string; exp?: number }, secret = SECRET, alg = "HS256") {
  const jwt = new SignJWT({}).setProtectedHeader({ alg }).setIssuedAt();
  if (claims.sub !== undefined) jwt.setSubject(claims.sub);
  if (claims.exp !== undefined) jwt.setExpirationTime(claims.exp);
  return jwt.sign(new TextEncoder().encode(secret));
}

function socketRequest(params: Record<string, string>, headers: HeadersInit = {}) {
  const url = new URL(WS_URL);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return { req: new Request(url, { headers: { upgrade: "websocket", ...headers } }), url };
}

function httpRequest(token: string | null) {
  const url = new URL("http://bridge.test/send");
  const headers: HeadersInit = token === null ? {} : { authorization: `Bearer ${token}` };
  return { req: new Request(url, { method: "POST", headers, body: "{}" }), url };
}

async function rejects(
  promise: Promise<unknown>,
  status: number,
  message: RegExp,
  token?: string,
): Promise<void> {
  const error = await promise.then(() => null, (e: unknown) => e);
  assert.ok(error instanceof HttpError, `expected HttpError, got ${String(error)}`);
  assert.equal(error.status, status);
  assert.match(error.message, message);
  if (status === 401) {
    assert.match(new Headers(error.headers).get("www-authenticate") ?? "", /^Bearer /);
  }
  if (token !== undefined) {
    for (const part of token.split(".").filter((p) => p.length > 8)) {
      assert.ok(!error.message.includes(part), "the error message echoes the token");
    }
  }
}

function throwsHttp(fn: () => void, status: number): void {
  assert.throws(fn, (e: unknown) => e instanceof HttpError && e.status === status);
}

Deno.test("createAgentAuth() with a secret accepts only valid tokens", async (t) => {
  const auth = createAgentAuth({ secret: SECRET, allowedOrigins: [] });

  await t.step("reports that tokens are required", () => {
    assert.equal(auth.required, true);
  });

  await t.step("a good token in the query names the agent", async () => {
    const token = await sign({ sub: "agent-7", exp: nowS() + 600 });
    const { req, url } = socketRequest({ userid: "agent-7", token });
    assert.equal(await auth.authenticate(req, url, "agent-7", true), "agent-7");
    // Not on the socket's route, an Upgrade header does not make the query's token taken.
    await rejects(auth.authenticate(req, url, "agent-7"), 401, /Authorization: Bearer/);
  });

  await t.step("a good bearer token on HTTP names the agent", async () => {
    const token = await sign({ sub: "42", exp: nowS() + 600 });
    const { req, url } = httpRequest(token);
    assert.equal(await auth.authenticate(req, url, "42"), "42");
  });

  await t.step("without a claimed userid the token's sub is the agent", async () => {
    const token = await sign({ sub: "carol", exp: nowS() + 600 });
    const { req, url } = httpRequest(token);
    assert.equal(await auth.authenticate(req, url, null), "carol");
  });

  await t.step("a bearer header works on a socket; a query token only there", async () => {
    const token = await sign({ sub: "dan", exp: nowS() + 600 });
    const ws = socketRequest({ userid: "dan" }, { authorization: `bearer ${token}` });
    assert.equal(await auth.authenticate(ws.req, ws.url, "dan", true), "dan");
    // A URL ends up in proxy logs and Referer headers: HTTP takes the header only.
    const url = new URL(`http://bridge.test/contacts?userid=dan&token=${token}`);
    await rejects(auth.authenticate(new Request(url), url, "dan"), 401, /Authorization: Bearer/);
    const bearer = new Request(url, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(await auth.authenticate(bearer, url, "dan"), "dan");
  });

  await t.step("a missing token is 401", async () => {
    const { req, url } = socketRequest({ userid: "1" });
    await rejects(auth.authenticate(req, url, "1", true), 401, /Missing agent token/);
    const http = httpRequest(null);
    await rejects(auth.authenticate(http.req, http.url, "1"), 401, /Missing agent token/);
  });

  await t.step("a token signed with another secret is 401", async () => {
    const token = await sign({ sub: "1", exp: nowS() + 600 }, OTHER_SECRET);
    const { req, url } = socketRequest({ userid: "1", token });
    await rejects(auth.authenticate(req, url, "1", true), 401, /Invalid agent token/, token);
  });

  await t.step("a token whose payload was changed after signing is 401", async () => {
    const token = await sign({ sub: "1", exp: nowS() + 600 });
    const [header, , signature] = token.split(".");
    const payload = btoa(JSON.stringify({ sub: "admin", exp: nowS() + 600 }))
      .replaceAll("=", "").replaceAll("+", "-").replaceAll("/", "_");
    const forged = `${header}.${payload}.${signature}`;
    const { req, url } = httpRequest(forged);
    await rejects(auth.authenticate(req, url, "admin"), 401, /Invalid agent token/, forged);
  });

  await t.step("an expired token is 401", async () => {
    const token = await sign({ sub: "1", exp: nowS() - 60 });
    const { req, url } = socketRequest({ userid: "1", token });
    await rejects(auth.authenticate(req, url, "1", true), 401, /expired/, token);
  });

  await t.step("a token without exp is 401", async () => {
    const token = await sign({ sub: "1" });
    const { req, url } = socketRequest({ userid: "1", token });
    await rejects(auth.authenticate(req, url, "1", true), 401, /exp/, token);
  });

  await t.step("a token without sub is 401", async () => {
    const token = await sign({ exp: nowS() + 600 });
    const { req, url } = socketRequest({ token });
    await rejects(auth.authenticate(req, url, null, true), 401, /sub/, token);
  });

  await t.step("someone else's token is 401", async () => {
    const token = await sign({ sub: "alice", exp: nowS() + 600 });
    const { req, url } = socketRequest({ userid: "bob", token });
    await rejects(
      auth.authenticate(req, url, "bob", true),
      401,
      /does not belong to agent bob/,
      token,
    );
  });

  await t.step("an unsigned token (alg none) is 401", async () => {
    const token = new UnsecuredJWT({}).setSubject("1").setExpirationTime("1h").encode();
    assert.ok(token.endsWith("."), "jose made an unsecured JWT");
    const { req, url } = socketRequest({ userid: "1", token });
    await rejects(auth.authenticate(req, url, "1", true), 401, /Invalid agent token/);
  });

  await t.step("a token with another algorithm, even with the right secret, is 401", async () => {
    const token = await sign({ sub: "1", exp: nowS() + 600 }, SECRET, "HS512");
    const { req, url } = socketRequest({ userid: "1", token });
    await rejects(auth.authenticate(req, url, "1", true), 401, /Invalid agent token/, token);
  });

  await t.step("garbage in the token slot is 401", async () => {
    const { req, url } = socketRequest({ userid: "1", token: "not-a-jwt" });
    await rejects(auth.authenticate(req, url, "1", true), 401, /Invalid agent token/);
  });
});

Deno.test("createAgentAuth() reads time from its clock", async (t) => {
  let nowMs = Date.now();
  const auth = createAgentAuth({ secret: SECRET, allowedOrigins: [], now: () => nowMs });
  const token = await sign({ sub: "1", exp: Math.floor(nowMs / 1000) + 60 });
  const { req, url } = httpRequest(token);

  await t.step("valid before exp", async () => {
    assert.equal(await auth.authenticate(req, url, "1"), "1");
  });

  await t.step("refused once exp has passed", async () => {
    nowMs += 120_000;
    await rejects(auth.authenticate(req, url, "1"), 401, /expired/, token);
  });
});

Deno.test("createAgentAuth() refuses a secret too short for HS256", () => {
  assert.throws(() => createAgentAuth({ secret: "short", allowedOrigins: [] }), /at least 32/);
});

Deno.test("createAgentAuth() without a secret runs open", async (t) => {
  const auth = createAgentAuth({ secret: undefined, allowedOrigins: [] });

  await t.step("reports that tokens are not required", () => {
    assert.equal(auth.required, false);
    assert.equal(createAgentAuth({ secret: "", allowedOrigins: [] }).required, false);
  });

  await t.step("returns the claimed userid, token or not", async () => {
    const { req, url } = socketRequest({ userid: "1" });
    assert.equal(await auth.authenticate(req, url, "1", true), "1");
    const junk = socketRequest({ userid: "2", token: "junk" });
    assert.equal(await auth.authenticate(junk.req, junk.url, "2", true), "2");
  });

  await t.step("a missing userid is 400", async () => {
    const { req, url } = socketRequest({});
    await rejects(auth.authenticate(req, url, null, true), 400, /userid/);
    await rejects(auth.authenticate(req, url, "", true), 400, /userid/);
  });
});

Deno.test("checkOrigin() enforces ALLOWED_ORIGINS", async (t) => {
  const auth = createAgentAuth({
    secret: undefined,
    allowedOrigins: ["https://Console.Example.com/", "http://localhost:8080"],
  });
  const withOrigin = (origin?: string) =>
    new Request(WS_URL, { headers: origin === undefined ? {} : { origin } });

  await t.step("a listed origin passes, compared after normalising case and slash", () => {
    auth.checkOrigin(withOrigin("https://console.example.com"));
    auth.checkOrigin(withOrigin("HTTPS://CONSOLE.EXAMPLE.COM"));
    auth.checkOrigin(withOrigin("http://localhost:8080"));
  });

  await t.step("another origin is 403", () => {
    throwsHttp(() => auth.checkOrigin(withOrigin("https://evil.example.com")), 403);
    throwsHttp(() => auth.checkOrigin(withOrigin("http://console.example.com")), 403);
    throwsHttp(() => auth.checkOrigin(withOrigin("https://console.example.com:8443")), 403);
    throwsHttp(() => auth.checkOrigin(withOrigin("http://localhost:8081")), 403);
    throwsHttp(() => auth.checkOrigin(withOrigin("https://console.example.com.evil.io")), 403);
    throwsHttp(() => auth.checkOrigin(withOrigin("null")), 403);
  });

  await t.step("a missing Origin passes: not a browser, its token is what counts", () => {
    auth.checkOrigin(withOrigin());
  });

  await t.step("with no list any origin passes", () => {
    const open = createAgentAuth({ secret: undefined, allowedOrigins: [] });
    open.checkOrigin(withOrigin("https://anything.example"));
    open.checkOrigin(withOrigin());
  });

  await t.step("a configured value that is no origin is refused at start", () => {
    for (const bad of ["console.example.com", "https://x.example/app", "ftp://x.example", "*"]) {
      assert.throws(
        () => createAgentAuth({ secret: undefined, allowedOrigins: [bad] }),
        /Cannot parse ALLOWED_ORIGINS/,
        bad,
      );
    }
  });
});

Deno.test("mintAgentToken() makes a token the bridge and jose accept", async (t) => {
  await t.step("sub is the userid and exp is now + ttl", async () => {
    const before = nowS();
    const token = await mintAgentToken(SECRET, "agent-9", 3600);
    const { payload, protectedHeader } = await jwtVerify(token, key, { algorithms: ["HS256"] });
    assert.equal(protectedHeader.alg, "HS256");
    assert.equal(payload.sub, "agent-9");
    assert.ok(typeof payload.exp === "number");
    assert.ok(payload.exp >= before + 3600 && payload.exp <= nowS() + 3600);
    const auth = createAgentAuth({ secret: SECRET, allowedOrigins: [] });
    const { req, url } = socketRequest({ userid: "agent-9", token });
    assert.equal(await auth.authenticate(req, url, "agent-9", true), "agent-9");
  });

  await t.step("refuses an empty userid, a bad ttl and a short secret", async () => {
    await assert.rejects(mintAgentToken(SECRET, "", 60), /userid must be/);
    await assert.rejects(mintAgentToken(SECRET, "1", 0), /ttl/);
    await assert.rejects(mintAgentToken(SECRET, "1", Number.NaN), /ttl/);
    await assert.rejects(mintAgentToken("short", "1", 60), /at least 32/);
  });
});
