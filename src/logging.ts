// Where logs go: one console sink under the "bridge" category, JSON Lines for collectors or
// readable lines for people, with secrets redacted by @logtape/redaction: credential fields
// before any formatter sees them, credentials in text after. Only main.ts calls
// configureLogging(); modules call getLogger.

import { AsyncLocalStorage } from "node:async_hooks";
import {
  configure,
  type ConsoleSinkOptions,
  getConsoleSink,
  getJsonLinesFormatter,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  type TextFormatter,
  withContext,
} from "@logtape/logtape";
import { JWT_PATTERN, redactByField, redactByPattern } from "@logtape/redaction";

export interface LoggingOptions {
  format: "json" | "text";
  /** trace, debug, info (default), warning (or warn), error, fatal. */
  level?: string;
  /** Where lines go; tests pass a recording console. Defaults to the global one. */
  console?: ConsoleSinkOptions["console"];
  /** Several accounts: lines carry the account they are about (see withAccount). */
  accounts?: boolean;
}

const LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

/** What a redacted value or credential reads as in a log line. */
export const REDACTED = "[REDACTED]";

/**
 * Property names that carry a credential, wherever they sit in a record: `token`,
 * `access_token`, `WECHAT_TOKEN`, `agentSecret`, `AppSecret`, `Authorization`, `aes_key`,
 * `EncodingAESKey`, `password`, `cookie`, `Set-Cookie`, `signature`, `msg_signature`, and
 * WeChat's `Encrypt` (the ciphertext of a follower's message).
 */
export const SECRET_FIELDS: RegExp[] = [
  /token$/i,
  /secret$/i,
  /authorization$/i,
  /password$/i,
  /aes[_-]?key/i,
  /cookie$/i,
  /signature$/i,
  /^encrypt$/i,
];

// Credentials inside free text (URLs, error messages, stacks), applied to the finished line:
// a bearer value, then `token=`/`access_token=`/`secret=`/`signature=` in a URL (WeChat's API
// takes the first three there, its webhook signs with the last), then any JWT left over. The
// bearer rule runs first so that "Bearer eyJ…" reads "Bearer [REDACTED]".
const SECRET_TEXT = [
  { pattern: /(Bearer\s+)[^\s"',\\]+/gi, replacement: `$1${REDACTED}` },
  {
    pattern: /([?&](?:access_token|token|secret|(?:msg_)?signature)=)[^&#\s"'\\]*/gi,
    replacement: `$1${REDACTED}`,
  },
  JWT_PATTERN,
];

/** Configures logtape for the whole process; call once, from main.ts. */
export async function configureLogging(options: LoggingOptions): Promise<void> {
  const level = parseLevel(options.level);
  const formatter: TextFormatter = options.format === "json" ? jsonLines : getTextFormatter({
    timestamp: "date-time-tz",
    format: readableLine,
    // Strings read as they are ("listening on http://0.0.0.0:1234"), not quoted.
    value: (value, inspect) => typeof value === "string" ? plainText(value) : inspect(value),
  });
  const output = getConsoleSink({
    console: options.console,
    formatter: redactByPattern(formatter, SECRET_TEXT),
    // A collector reads one stream, in order; people want warnings on stderr.
    levelMap: options.format === "json"
      ? { trace: "log", debug: "log", info: "log", warning: "log", error: "log", fatal: "log" }
      : undefined,
  });
  // Fields are redacted before any formatter sees the record; text patterns after it.
  const main = redactByField(output, { fieldPatterns: SECRET_FIELDS, action: () => REDACTED });
  await configure({
    reset: true,
    // With several accounts each line says whose it is (withAccount), timers and sockets too;
    // one account has nothing to tell apart, and pays nothing for it.
    contextLocalStorage: options.accounts ? new AsyncLocalStorage() : undefined,
    sinks: { main },
    loggers: [
      { category: ["bridge"], lowestLevel: level, sinks: ["main"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["main"] },
    ],
  });
}

/**
 * Runs `work` as account `id`'s: every line logged in it, and in the timers, sockets and
 * promises it starts, carries `account`. Without configureLogging's `accounts` it only runs
 * `work`.
 */
export function withAccount<T>(id: string, work: () => T): T {
  return withContext({ account: id }, work);
}

const jsonFormatter = getJsonLinesFormatter();

// JSON.stringify turns an Error into `{}`; a log line that lost its error is no help at 3 a.m.
function jsonLines(record: LogRecord): string {
  const properties: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record.properties)) {
    properties[key] = value instanceof Error ? plainError(value) : value;
  }
  const message = record.message.map((part) =>
    part instanceof Error ? `${part.name}: ${part.message}` : part
  );
  return jsonFormatter({ ...record, properties, message });
}

function plainError(error: Error, depth = 0): Record<string, unknown> {
  const plain: Record<string, unknown> = {
    name: error.name,
    message: error.message,
    stack: error.stack,
  };
  if (error.cause instanceof Error && depth < 3) plain.cause = plainError(error.cause, depth + 1);
  else if (error.cause !== undefined) plain.cause = String(error.cause);
  return plain;
}

/** LOG_LEVEL as LogTape's level (`warn` is `warning`); throws SyntaxError naming the variable. */
export function parseLevel(text: string | undefined): LogLevel {
  const level = (text ?? "info").trim().toLowerCase();
  if (level === "warn") return "warning";
  const found = LEVELS.find((l) => l === level);
  if (found === undefined) {
    throw new SyntaxError(`Cannot parse LOG_LEVEL: "${text}" is not one of ${LEVELS.join(", ")}`);
  }
  return found;
}

// Readable mode: the rendered message, then the properties it did not already show.
// C0 controls, DEL and C1 controls: a line break, a carriage return, a terminal's escape.
// deno-lint-ignore no-control-regex -- these are what it finds
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * A string value as a readable line shows it: control characters escaped (\u000a). Values come
 * from clients too (an id, a parser's detail repeating what was posted): a line break in one
 * wrote a second, forged log line, and an escape sequence drove the operator's terminal.
 */
export function plainText(value: string): string {
  return value.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function readableLine(values: {
  timestamp: string | null;
  level: string;
  category: string;
  message: string;
  record: LogRecord;
}): string {
  const { record } = values;
  const shown = typeof record.rawMessage === "string"
    ? new Set([...record.rawMessage.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1]!.trim()))
    : new Set<string>();
  const extra = Object.entries(record.properties)
    .filter(([key]) => !shown.has(key))
    .map(([key, value]) =>
      `${key}=${typeof value === "string" ? plainText(value) : inspect(value)}`
    );
  const head = `${values.timestamp ?? ""} ${values.level} ${values.category}: ${values.message}`;
  return extra.length === 0 ? head : `${head} ${extra.join(" ")}`;
}

function inspect(value: unknown): string {
  return Deno.inspect(value, { colors: false, compact: true, breakLength: Infinity, depth: 4 });
}
