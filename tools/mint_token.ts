// `deno task token <userid> [--ttl 12h]`: prints an agent token signed with AGENT_SECRET, for
// an agent's console or a script. Runs with --allow-env only; the token goes to stdout alone so
// that `TOKEN=$(deno task token 7)` works, and everything else to stderr.

import { mintAgentToken } from "../src/agents/auth.ts";

const USAGE = "Usage: deno task token <userid> [--ttl 12h]   (AGENT_SECRET must be set)\n" +
  "  --ttl  how long the token is valid: 90s, 30m, 12h, 7d, or plain seconds (default 12h)\n";

const DEFAULT_TTL_S = 12 * 3600;
// A token cannot be revoked short of changing AGENT_SECRET, so it should not outlive a year.
const MAX_TTL_S = 366 * 86400;
const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Reads a duration such as `90s`, `30m`, `12h`, `7d` or `3600` into seconds. */
export function parseTtl(text: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(text.trim());
  if (match === null) {
    throw new SyntaxError(`Cannot parse --ttl: "${text}" is not like 90s, 30m, 12h or 7d`);
  }
  const seconds = Number(match[1]) * UNITS[match[2] || "s"]!;
  if (seconds <= 0 || seconds > MAX_TTL_S) {
    throw new RangeError(`Cannot use --ttl ${text}: it must be between 1s and 366d`);
  }
  return seconds;
}

/** Splits the command line into the userid and the TTL in seconds. */
export function parseArgs(args: readonly string[]): { userid: string; ttlSeconds: number } {
  let userid: string | undefined;
  let ttlSeconds = DEFAULT_TTL_S;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--ttl" || arg.startsWith("--ttl=")) {
      const value = arg === "--ttl" ? args[++i] : arg.slice("--ttl=".length);
      if (value === undefined) throw new SyntaxError("Cannot parse --ttl: a value is missing");
      ttlSeconds = parseTtl(value);
    } else if (arg.startsWith("-") && arg !== "-") {
      throw new SyntaxError(`Cannot parse arguments: unknown option ${arg}`);
    } else if (userid === undefined) {
      userid = arg;
    } else {
      throw new SyntaxError(
        `Cannot parse arguments: one userid only, got "${userid}" and "${arg}"`,
      );
    }
  }
  if (userid === undefined || userid.trim() === "") {
    throw new SyntaxError("Cannot parse arguments: the userid is missing");
  }
  return { userid, ttlSeconds };
}

async function main(args: string[]): Promise<number> {
  const encoder = new TextEncoder();
  const fail = (message: string, code: number) => {
    Deno.stderr.writeSync(encoder.encode(`${message}\n`));
    return code;
  };
  if (args.includes("--help") || args.includes("-h")) {
    Deno.stderr.writeSync(encoder.encode(USAGE));
    return 0;
  }
  let parsed: { userid: string; ttlSeconds: number };
  try {
    parsed = parseArgs(args);
  } catch (error) {
    return fail(`${(error as Error).message}\n${USAGE}`, 2);
  }
  const secret = Deno.env.get("AGENT_SECRET");
  if (secret === undefined || secret === "") {
    return fail("AGENT_SECRET is not set: set it to the bridge's secret first.", 1);
  }
  try {
    const token = await mintAgentToken(secret, parsed.userid, parsed.ttlSeconds);
    Deno.stdout.writeSync(encoder.encode(`${token}\n`));
    return 0;
  } catch (error) {
    return fail((error as Error).message, 1);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
