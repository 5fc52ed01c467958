import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { jwtVerify } from "jose";
import { createAgentAuth } from "../../src/agents/auth.ts";
import { parseArgs, parseTtl } from "../../tools/mint_token.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const SECRET = "mint-token-test-secret-0123456789abcdef";

/** Runs `deno task token ARGS` as a user would, with only the environment given. */
async function runTask(args: string[], secret?: string) {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  if (secret !== undefined) env.AGENT_SECRET = secret;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "token", ...args],
    cwd: REPO,
    env,
    clearEnv: true,
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("deno task token mints a token the bridge accepts", async (t) => {
  const key = new TextEncoder().encode(SECRET);

  await t.step("prints only the token, signed HS256 with sub and exp", async () => {
    const before = Math.floor(Date.now() / 1000);
    const run = await runTask(["agent-7", "--ttl", "2h"], SECRET);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const token = run.stdout.trim();
    const { payload, protectedHeader } = await jwtVerify(token, key, { algorithms: ["HS256"] });
    assert.equal(protectedHeader.alg, "HS256");
    assert.equal(payload.sub, "agent-7");
    assert.ok(typeof payload.exp === "number");
    assert.ok(payload.exp >= before + 7200 && payload.exp <= before + 7200 + 30, `${payload.exp}`);
    assert.ok(!run.stderr.includes(SECRET) && !run.stdout.includes(SECRET));

    const auth = createAgentAuth({ secret: SECRET, allowedOrigins: [] });
    const url = new URL(`http://bridge.test/msg?userid=agent-7&token=${token}`);
    // As the socket sends it: a token in the URL is taken on the socket's route only.
    const req = new Request(url, { headers: { upgrade: "websocket" } });
    assert.equal(await auth.authenticate(req, url, "agent-7", true), "agent-7");
  });

  await t.step("defaults to 12 hours", async () => {
    const before = Math.floor(Date.now() / 1000);
    const run = await runTask(["9"], SECRET);
    assert.equal(run.code, 0, run.stderr);
    const { payload } = await jwtVerify(run.stdout.trim(), key, { algorithms: ["HS256"] });
    assert.equal(payload.sub, "9");
    assert.ok(payload.exp! >= before + 43200 && payload.exp! <= before + 43200 + 30);
  });

  await t.step("without AGENT_SECRET it fails and prints no token", async () => {
    const run = await runTask(["agent-7"]);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /AGENT_SECRET is not set/);
  });

  await t.step("a missing userid or a bad --ttl is a usage error", async () => {
    const noUser = await runTask([], SECRET);
    assert.equal(noUser.code, 2);
    assert.equal(noUser.stdout, "");
    assert.match(noUser.stderr, /userid is missing[\s\S]*Usage:/);
    const badTtl = await runTask(["7", "--ttl", "soon"], SECRET);
    assert.equal(badTtl.code, 2);
    assert.equal(badTtl.stdout, "");
    assert.match(badTtl.stderr, /Cannot parse --ttl: "soon"/);
  });
});

Deno.test("parseTtl() reads durations", async (t) => {
  await t.step("units and plain seconds", () => {
    assert.equal(parseTtl("90s"), 90);
    assert.equal(parseTtl("30m"), 1800);
    assert.equal(parseTtl("12h"), 43200);
    assert.equal(parseTtl("7d"), 604800);
    assert.equal(parseTtl("3600"), 3600);
  });

  await t.step("refuses nonsense, zero and more than a year", () => {
    assert.throws(() => parseTtl("1.5h"), SyntaxError);
    assert.throws(() => parseTtl("-5m"), SyntaxError);
    assert.throws(() => parseTtl("h"), SyntaxError);
    assert.throws(() => parseTtl("0s"), RangeError);
    assert.throws(() => parseTtl("367d"), RangeError);
  });
});

Deno.test("parseArgs() reads the userid and --ttl in either order", async (t) => {
  await t.step("both spellings of --ttl", () => {
    assert.deepEqual(parseArgs(["7", "--ttl", "1h"]), { userid: "7", ttlSeconds: 3600 });
    assert.deepEqual(parseArgs(["--ttl=15m", "alice"]), { userid: "alice", ttlSeconds: 900 });
  });

  await t.step("refuses a second userid, an unknown option or a dangling --ttl", () => {
    assert.throws(() => parseArgs(["a", "b"]), /one userid only/);
    assert.throws(() => parseArgs(["a", "--exp", "1h"]), /unknown option --exp/);
    assert.throws(() => parseArgs(["a", "--ttl"]), /value is missing/);
  });
});
