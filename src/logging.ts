// Where logs go: one console sink under the "bridge" category, JSON Lines for collectors or
// readable lines for people, with secrets (tokens, Authorization headers, AES keys) redacted
// before any formatter sees them. Only main.ts calls configureLogging(); modules call getLogger.

import {
  configure,
  type ConsoleSinkOptions,
  getConsoleSink,
  getJsonLinesFormatter,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  type Sink,
} from "@logtape/logtape";

export interface LoggingOptions {
  format: "json" | "text";
  /** trace, debug, info (default), warning (or warn), error, fatal. */
  level?: string;
  /** Where lines go; tests pass a recording console. Defaults to the global one. */
  console?: ConsoleSinkOptions["console"];
}

const LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

export const REDACTED = "[REDACTED]";

/** Configures logtape for the whole process; call once, from main.ts. */
export async function configureLogging(options: LoggingOptions): Promise<void> {
  const level = parseLevel(options.level);
  const output = getConsoleSink({
    console: options.console,
    formatter: options.format === "json" ? jsonLines : getTextFormatter({
      timestamp: "date-time-tz",
      format: readableLine,
      // Strings read as they are ("listening on http://0.0.0.0:1234"), not quoted.
      value: (value, inspect) => typeof value === "string" ? value : inspect(value),
    }),
    // A collector reads one stream, in order; people want warnings on stderr.
    levelMap: options.format === "json"
      ? { trace: "log", debug: "log", info: "log", warning: "log", error: "log", fatal: "log" }
      : undefined,
  });
  await configure({
    reset: true,
    sinks: { main: redactingSink(output) },
    loggers: [
      { category: ["bridge"], lowestLevel: level, sinks: ["main"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["main"] },
    ],
  });
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
    message: redactText(error.message),
    stack: error.stack === undefined ? undefined : redactText(error.stack),
  };
  // A cause was not walked by redactRecord, so its text is redacted here.
  if (error.cause instanceof Error && depth < 3) plain.cause = plainError(error.cause, depth + 1);
  else if (error.cause !== undefined) plain.cause = redactText(String(error.cause));
  return plain;
}

function parseLevel(text: string | undefined): LogLevel {
  const level = (text ?? "info").trim().toLowerCase();
  if (level === "warn") return "warning";
  const found = LEVELS.find((l) => l === level);
  if (found === undefined) {
    throw new SyntaxError(`Cannot parse LOG_LEVEL: "${text}" is not one of ${LEVELS.join(", ")}`);
  }
  return found;
}

/** Wraps a sink so that no secret reaches it (see `redactRecord`). */
export function redactingSink(sink: Sink): Sink {
  return (record) => sink(redactRecord(record));
}

// A property whose name ends in one of these carries a credential: `token`, `access_token`,
// `agentSecret`, `Authorization`, `aes_key`, `password`, `cookie`.
const SECRET_KEY = /(token|secret|authorization|password|aeskey|cookie)$/i;
// Credentials inside free text: a JWT, `token=`/`access_token=`/`secret=` in a URL (WeChat's
// API takes both there), and a bearer header value.
const SECRET_TEXT =
  /eyJ[\w-]*\.[\w-]+\.[\w-]*|([?&](?:access_token|token|secret)=)[^&#\s"']*|(Bearer\s+)[^\s"',]+/gi;

/** A copy of `record` in which credentials are replaced by `[REDACTED]`. */
export function redactRecord(record: LogRecord): LogRecord {
  const secrets = new Set<unknown>();
  const properties = redactObject(record.properties, secrets, 0);
  const message = record.message.map((part, i) => {
    // Odd positions hold the values interpolated into the template, even ones its text.
    if (i % 2 === 1 && secrets.has(part)) return REDACTED;
    return redactValue(part, secrets, 0);
  });
  return { ...record, properties, message };
}

const MAX_DEPTH = 6;

function redactValue(value: unknown, secrets: Set<unknown>, depth: number): unknown {
  if (typeof value === "string") return redactText(value);
  if (value === null || typeof value !== "object" || depth > MAX_DEPTH) return value;
  if (value instanceof Error) {
    const text = redactText(value.message);
    if (text === value.message) return value;
    const copy = new Error(text, { cause: value.cause });
    copy.name = value.name;
    if (value.stack !== undefined) copy.stack = redactText(value.stack);
    return copy;
  }
  if (value instanceof URL) return redactText(value.href);
  if (value instanceof Headers) {
    const copy: Record<string, unknown> = {};
    for (const [name, text] of value) copy[name] = text;
    return redactObject(copy, secrets, depth + 1);
  }
  if (Array.isArray(value)) return value.map((v) => redactValue(v, secrets, depth + 1));
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) {
    return value;
  }
  return redactObject(value as Record<string, unknown>, secrets, depth + 1);
}

function redactObject(
  object: Record<string, unknown>,
  secrets: Set<unknown>,
  depth: number,
): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(object)) {
    if (SECRET_KEY.test(key.replace(/[_-]/g, "")) && value !== undefined && value !== null) {
      secrets.add(value);
      copy[key] = REDACTED;
    } else {
      copy[key] = redactValue(value, secrets, depth);
    }
  }
  return copy;
}

function redactText(text: string): string {
  if (!/eyJ|token=|secret=|bearer/i.test(text)) return text;
  return text.replace(
    SECRET_TEXT,
    (_match, param?: string, bearer?: string) => `${param ?? bearer ?? ""}${REDACTED}`,
  );
}

// Readable mode: the rendered message, then the properties it did not already show.
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
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : inspect(value)}`);
  const head = `${values.timestamp ?? ""} ${values.level} ${values.category}: ${values.message}`;
  return extra.length === 0 ? head : `${head} ${extra.join(" ")}`;
}

function inspect(value: unknown): string {
  return Deno.inspect(value, { colors: false, compact: true, breakLength: Infinity, depth: 4 });
}
