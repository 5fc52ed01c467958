import assert from "node:assert/strict";
import {
  Counter,
  createBridgeMetrics,
  DELIVERY_LATENCY_BUCKETS,
  Gauge,
  Histogram,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
} from "../src/http/metrics.ts";

// ---- A strict reader of text exposition format 0.0.4 -------------------------------------
// https://prometheus.io/docs/instrumenting/exposition_formats/ : every line is a HELP, a TYPE,
// or a sample; label values escape \\ \" \n; HELP escapes \\ \n; a family's lines stay together.

interface Sample {
  name: string;
  labels: Map<string, string>;
  value: number;
}

interface Family {
  name: string;
  type: string;
  help: string | undefined;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const FLOAT = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, where: string): number {
  if (!FLOAT.test(text)) throw new SyntaxError(`${where}: bad value "${text}"`);
  if (text === "NaN") return Number.NaN;
  if (text.endsWith("Inf")) return text.startsWith("-") ? -Infinity : Infinity;
  return Number(text);
}

function unescape(text: string, allowed: string, where: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const next = text[++i];
    if (next === undefined || !allowed.includes(next)) {
      throw new SyntaxError(`${where}: bad escape \\${next ?? ""}`);
    }
    out += next === "n" ? "\n" : next;
  }
  return out;
}

function parseSampleLine(line: string, where: string): Sample {
  const name = NAME.exec(line)?.[0];
  if (name === undefined) throw new SyntaxError(`${where}: no metric name`);
  let rest = line.slice(name.length);
  const labels = new Map<string, string>();
  if (rest.startsWith("{")) {
    rest = rest.slice(1);
    while (!rest.startsWith("}")) {
      const label = LABEL.exec(rest)?.[0];
      if (label === undefined) throw new SyntaxError(`${where}: bad label name`);
      if (labels.has(label)) throw new SyntaxError(`${where}: label ${label} twice`);
      rest = rest.slice(label.length);
      if (!rest.startsWith('="')) throw new SyntaxError(`${where}: expected =" after ${label}`);
      rest = rest.slice(2);
      let end = 0;
      while (end < rest.length && rest[end] !== '"') end += rest[end] === "\\" ? 2 : 1;
      if (end >= rest.length) throw new SyntaxError(`${where}: unterminated label value`);
      labels.set(label, unescape(rest.slice(0, end), '\\"n', where));
      rest = rest.slice(end + 1);
      if (rest.startsWith(",")) rest = rest.slice(1);
      else if (!rest.startsWith("}")) throw new SyntaxError(`${where}: expected , or }`);
    }
    rest = rest.slice(1);
  }
  const fields = rest.split(" ");
  if (fields[0] !== "" || fields.length < 2 || fields.length > 3) {
    throw new SyntaxError(`${where}: expected " value [timestamp]"`);
  }
  const value = parseValue(fields[1]!, where);
  if (fields[2] !== undefined && !/^-?\d+$/.test(fields[2])) {
    throw new SyntaxError(`${where}: bad timestamp`);
  }
  return { name, labels, value };
}

function belongs(sample: string, family: Family): boolean {
  if (sample === family.name) return family.type !== "histogram";
  if (family.type !== "histogram") return false;
  return [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`].includes(sample);
}

function seriesKey(labels: Map<string, string>, without = ""): string {
  return JSON.stringify([...labels].filter(([k]) => k !== without).sort());
}

function checkHistogram(family: Family): void {
  const series = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of family.samples) {
    const key = seriesKey(s.labels, "le");
    const entry = series.get(key) ?? { buckets: [] };
    series.set(key, entry);
    if (s.name.endsWith("_bucket")) {
      const le = s.labels.get("le");
      if (le === undefined) throw new SyntaxError(`${family.name}: bucket without le`);
      entry.buckets.push([parseValue(le, family.name), s.value]);
    } else if (s.name.endsWith("_sum")) entry.sum = s.value;
    else entry.count = s.value;
  }
  for (const [key, { buckets, sum, count }] of series) {
    const where = `${family.name}${key}`;
    if (sum === undefined || count === undefined) throw new SyntaxError(`${where}: no sum/count`);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]![0] > buckets[i - 1]![0])) throw new SyntaxError(`${where}: le unsorted`);
      if (buckets[i]![1] < buckets[i - 1]![1]) throw new SyntaxError(`${where}: not cumulative`);
    }
    const last = buckets.at(-1);
    if (last?.[0] !== Infinity) throw new SyntaxError(`${where}: no +Inf bucket`);
    if (last[1] !== count) throw new SyntaxError(`${where}: +Inf ${last[1]} != count ${count}`);
  }
}

/** Parses exposition text, throwing on the first line the format does not allow. */
function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  if (text === "") return families;
  if (!text.endsWith("\n")) throw new SyntaxError("output does not end with a newline");
  let current: Family | undefined;
  const seen = new Set<string>();
  const lines = text.slice(0, -1).split("\n");
  lines.forEach((line, index) => {
    const where = `line ${index + 1} "${line}"`;
    const meta = /^# (HELP|TYPE) ([^ ]+) ?(.*)$/.exec(line);
    if (meta !== null) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (!NAME.test(name) || NAME.exec(name)![0] !== name) throw new SyntaxError(`${where}`);
      let family = families.get(name);
      if (family === undefined) {
        family = { name, type: "untyped", help: undefined, samples: [] };
        families.set(name, family);
      } else if (family !== current) throw new SyntaxError(`${where}: ${name} split up`);
      current = family;
      if (kind === "HELP") {
        if (family.help !== undefined) throw new SyntaxError(`${where}: second HELP`);
        family.help = unescape(rest, "\\n", where);
      } else {
        if (seen.has(name)) throw new SyntaxError(`${where}: second TYPE`);
        if (family.samples.length > 0) throw new SyntaxError(`${where}: TYPE after samples`);
        if (!TYPES.has(rest)) throw new SyntaxError(`${where}: unknown type`);
        seen.add(name);
        family.type = rest;
      }
      return;
    }
    if (line.startsWith("#")) return;
    if (line.trim() === "") throw new SyntaxError(`${where}: blank line`);
    const sample = parseSampleLine(line, where);
    if (current === undefined || !belongs(sample.name, current)) {
      throw new SyntaxError(`${where}: sample outside its family's block`);
    }
    const duplicate = current.samples.some((s) =>
      s.name === sample.name && seriesKey(s.labels) === seriesKey(sample.labels)
    );
    if (duplicate) throw new SyntaxError(`${where}: series twice`);
    current.samples.push(sample);
  });
  for (const family of families.values()) {
    if (family.type === "histogram") checkHistogram(family);
  }
  return families;
}

function sampleValue(
  families: Map<string, Family>,
  family: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const want = seriesKey(new Map(Object.entries(labels)));
  return families.get(family)?.samples.find((s) => s.name === name && seriesKey(s.labels) === want)
    ?.value;
}

// ---- Tests ------------------------------------------------------------------------------------

Deno.test("parseExposition() (the test's own checker) refuses what the format forbids", async (t) => {
  const bad: [string, string][] = [
    ["no trailing newline", "# TYPE a counter\na 1"],
    ["sample before TYPE", "a 1\n"],
    ["unescaped quote", '# TYPE a counter\na{x="q"q"} 1\n'],
    ["bad escape", '# TYPE a counter\na{x="\\t"} 1\n'],
    ["bad value", "# TYPE a counter\na one\n"],
    ["blank line", "# TYPE a counter\n\na 1\n"],
    ["unknown type", "# TYPE a thing\na 1\n"],
    ["family split", "# TYPE a counter\na 1\n# TYPE b gauge\nb 1\n# HELP a again\n"],
    ["series twice", '# TYPE a counter\na{x="1"} 1\na{x="1"} 2\n'],
    [
      "buckets not cumulative",
      '# TYPE h histogram\nh_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n',
    ],
    ["no +Inf", '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    [
      "+Inf differs from count",
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n',
    ],
  ];
  for (const [what, text] of bad) {
    await t.step(what, () => {
      assert.throws(() => parseExposition(text), SyntaxError);
    });
  }
  await t.step("accepts a well-formed histogram", () => {
    const text = "# HELP h A \\\\ help\\nline.\n# TYPE h histogram\n" +
      'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n';
    const families = parseExposition(text);
    assert.equal(families.get("h")?.help, "A \\ help\nline.");
    assert.equal(families.get("h")?.samples.length, 4);
  });
});

Deno.test("Registry.render() writes exposition format 0.0.4", async (t) => {
  await t.step("an empty registry renders nothing", () => {
    assert.equal(new Registry().render(), "");
  });

  await t.step("says it is format 0.0.4", () => {
    assert.match(PROMETHEUS_CONTENT_TYPE, /^text\/plain; version=0\.0\.4/);
  });

  await t.step("counters by label, with escaped values that read back the same", () => {
    const registry = new Registry();
    const counter = registry.counter({
      name: "test_events_total",
      help: 'Events with a "quote", a \\ and\na newline.',
      labels: ["kind", "where"],
    });
    const odd = 'say "hi"\\ \n 你好';
    counter.labels("a", "x").inc();
    counter.labels("a", "x").inc(2);
    counter.labels("b", "x").inc();
    counter.labels(odd, "y").inc(0.5);
    const families = parseExposition(registry.render());
    const family = families.get("test_events_total");
    assert.equal(family?.type, "counter");
    assert.equal(family?.help, 'Events with a "quote", a \\ and\na newline.');
    assert.equal(sampleValue(families, family.name, family.name, { kind: "a", where: "x" }), 3);
    assert.equal(sampleValue(families, family.name, family.name, { kind: "b", where: "x" }), 1);
    assert.equal(sampleValue(families, family.name, family.name, { kind: odd, where: "y" }), 0.5);
  });

  await t.step("an unlabelled counter shows 0 before its first increment", () => {
    const registry = new Registry();
    registry.counter({ name: "test_starts_total", help: "Starts." });
    const families = parseExposition(registry.render());
    assert.equal(sampleValue(families, "test_starts_total", "test_starts_total"), 0);
  });

  await t.step("gauges go up, down, and read a callback at each render", () => {
    const registry = new Registry();
    const open = registry.gauge({ name: "test_open", help: "Open things." });
    let depth = 4;
    registry.gauge({ name: "test_depth", help: "Depth.", collect: () => depth });
    open.inc();
    open.inc(3);
    open.dec();
    let families = parseExposition(registry.render());
    assert.equal(sampleValue(families, "test_open", "test_open"), 3);
    assert.equal(sampleValue(families, "test_depth", "test_depth"), 4);
    depth = 9;
    open.set(0);
    families = parseExposition(registry.render());
    assert.equal(sampleValue(families, "test_depth", "test_depth"), 9);
    assert.equal(sampleValue(families, "test_open", "test_open"), 0);
  });

  await t.step("a callback that throws renders NaN, not an error", () => {
    const registry = new Registry();
    registry.gauge({
      name: "test_broken",
      help: "Broken.",
      collect: () => {
        throw new Error("store down");
      },
    });
    const families = parseExposition(registry.render());
    assert.ok(Number.isNaN(sampleValue(families, "test_broken", "test_broken")));
  });

  await t.step("histograms: cumulative buckets, le inclusive, +Inf = count", () => {
    const registry = new Registry();
    const h = registry.histogram({
      name: "test_latency_seconds",
      help: "Latency.",
      buckets: [0.01, 0.1, 1],
    });
    for (const v of [0.005, 0.01, 0.05, 0.5, 1, 7]) h.observe(v);
    const families = parseExposition(registry.render());
    const name = "test_latency_seconds";
    const bucket = (le: string) => sampleValue(families, name, `${name}_bucket`, { le });
    assert.deepEqual([bucket("0.01"), bucket("0.1"), bucket("1"), bucket("+Inf")], [2, 3, 5, 6]);
    assert.equal(sampleValue(families, name, `${name}_count`), 6);
    assert.ok(Math.abs(sampleValue(families, name, `${name}_sum`)! - 8.565) < 1e-9);
  });

  await t.step("labels given by name (prom-client style) reach the same series", () => {
    const registry = new Registry();
    const counter = registry.counter({
      name: "test_calls_total",
      help: "Calls.",
      labels: ["api", "errcode"],
    });
    counter.inc({ api: "send", errcode: 0 });
    counter.inc({ errcode: "0", api: "send" }, 2);
    counter.labels("send", "0").inc();
    const gauge = registry.gauge({ name: "test_level", help: "Level.", labels: ["pool"] });
    gauge.set({ pool: "a" }, 5);
    gauge.inc({ pool: "a" });
    gauge.dec({ pool: "a" }, 3);
    const h = registry.histogram({
      name: "test_wait_seconds",
      help: "Wait.",
      labels: ["queue"],
      buckets: [1],
    });
    h.observe({ queue: "q1" }, 0.5);
    const f = parseExposition(registry.render());
    assert.equal(
      sampleValue(f, "test_calls_total", "test_calls_total", {
        api: "send",
        errcode: "0",
      }),
      4,
    );
    assert.equal(f.get("test_calls_total")!.samples.length, 1);
    assert.equal(sampleValue(f, "test_level", "test_level", { pool: "a" }), 3);
    assert.equal(
      sampleValue(f, "test_wait_seconds", "test_wait_seconds_bucket", { queue: "q1", le: "1" }),
      1,
    );
    assert.throws(() => counter.inc({ api: "send" } as never), /label errcode missing/);
  });

  await t.step("labelled histograms keep one set of buckets per series", () => {
    const registry = new Registry();
    const h = registry.histogram({
      name: "test_call_seconds",
      help: "Calls.",
      labels: ["api"],
      buckets: [0.5, 2],
    });
    h.labels("send").observe(0.1);
    h.labels("send").observe(3);
    h.labels("token").observe(1);
    const families = parseExposition(registry.render());
    const name = "test_call_seconds";
    assert.equal(sampleValue(families, name, `${name}_bucket`, { api: "send", le: "0.5" }), 1);
    assert.equal(sampleValue(families, name, `${name}_bucket`, { api: "send", le: "+Inf" }), 2);
    assert.equal(sampleValue(families, name, `${name}_bucket`, { api: "token", le: "2" }), 1);
    assert.equal(sampleValue(families, name, `${name}_count`, { api: "token" }), 1);
  });

  await t.step("startTimer() observes the seconds elapsed on the given clock", () => {
    const h = new Histogram({ name: "test_timer_seconds", help: "Timer.", buckets: [0.1, 1] });
    const registry = new Registry();
    registry.register(h);
    let now = 5_000;
    const stop = h.startTimer(() => now);
    now += 250;
    assert.equal(stop(), 0.25);
    const families = parseExposition(registry.render());
    const name = "test_timer_seconds";
    assert.equal(sampleValue(families, name, `${name}_bucket`, { le: "0.1" }), 0);
    assert.equal(sampleValue(families, name, `${name}_bucket`, { le: "1" }), 1);
    assert.equal(sampleValue(families, name, `${name}_sum`), 0.25);
  });

  await t.step("label sets beyond maxSeries are counted under _other", () => {
    const registry = new Registry();
    const counter = registry.counter({
      name: "test_types_total",
      help: "Types.",
      labels: ["msg_type"],
      maxSeries: 3,
    });
    for (let i = 0; i < 10; i++) counter.labels(`type${i}`).inc();
    const families = parseExposition(registry.render());
    const samples = families.get("test_types_total")!.samples;
    assert.equal(samples.length, 4);
    assert.equal(
      sampleValue(families, "test_types_total", "test_types_total", {
        msg_type: "_other",
      }),
      7,
    );
  });
});

Deno.test("Registry refuses metrics it could not render correctly", async (t) => {
  await t.step("bad metric and label names", () => {
    assert.throws(() => new Counter({ name: "1bad", help: "x" }), SyntaxError);
    assert.throws(() => new Counter({ name: "a-b", help: "x" }), SyntaxError);
    assert.throws(() => new Counter({ name: "ok", help: "x", labels: ["bad-label"] }), SyntaxError);
    assert.throws(() => new Counter({ name: "ok", help: "x", labels: ["__x"] }), SyntaxError);
    assert.throws(() => new Counter({ name: "ok", help: "x", labels: ["a", "a"] }), SyntaxError);
    assert.throws(
      () => new Histogram({ name: "h", help: "x", labels: ["le"], buckets: [1] }),
      SyntaxError,
    );
  });

  await t.step("buckets that are empty, unsorted or infinite", () => {
    for (const buckets of [[], [1, 1], [2, 1], [1, Infinity]]) {
      assert.throws(() => new Histogram({ name: "h", help: "x", buckets }), RangeError);
    }
  });

  await t.step("a name registered twice", () => {
    const registry = new Registry();
    registry.gauge({ name: "g", help: "x" });
    assert.throws(() => registry.counter({ name: "g", help: "x" }), RangeError);
  });

  await t.step("a counter decreased, or called with the wrong number of labels", () => {
    const counter = new Counter({ name: "c_total", help: "x", labels: ["a"] });
    assert.throws(() => counter.labels("x").inc(-1), RangeError);
    assert.throws(() => counter.labels("x", "y"), RangeError);
    assert.throws(() => counter.inc(), RangeError);
  });

  await t.step("a collected gauge with labels", () => {
    assert.throws(
      () => new Gauge({ name: "g", help: "x", labels: ["a"], collect: () => 1 }),
      RangeError,
    );
  });
});

Deno.test("createBridgeMetrics() declares the bridge's metrics", async (t) => {
  const metrics = createBridgeMetrics({ queueDepth: () => 12 });

  await t.step("every metric renders with its type, even before any traffic", () => {
    const families = parseExposition(metrics.render());
    const want: Record<string, string> = {
      bridge_agent_sockets_open: "gauge",
      bridge_agents_online: "gauge",
      bridge_messages_in_total: "counter",
      bridge_messages_out_total: "counter",
      bridge_wechat_api_calls_total: "counter",
      bridge_delivery_latency_seconds: "histogram",
      bridge_webhook_duration_seconds: "histogram",
      bridge_queue_depth: "gauge",
      bridge_rejected_total: "counter",
      bridge_account_reports_total: "counter",
    };
    assert.deepEqual(
      Object.fromEntries([...families.values()].map((f) => [f.name, f.type])),
      want,
    );
    for (const family of families.values()) assert.ok(family.help, `${family.name} has HELP`);
    assert.equal(sampleValue(families, "bridge_queue_depth", "bridge_queue_depth"), 12);
  });

  await t.step("delivery latency buckets run from 0.0005 s to 5 s", () => {
    assert.equal(DELIVERY_LATENCY_BUCKETS[0], 0.0005);
    assert.equal(DELIVERY_LATENCY_BUCKETS.at(-1), 5);
    const families = parseExposition(metrics.render());
    const les = families.get("bridge_delivery_latency_seconds")!.samples
      .flatMap((s) => s.labels.get("le") ?? []);
    assert.deepEqual(les, [...DELIVERY_LATENCY_BUCKETS.map(String), "+Inf"]);
  });

  await t.step("traffic shows up under the right labels", () => {
    metrics.agentSocketsOpen.inc();
    metrics.agentSocketsOpen.inc();
    metrics.agentsOnline.set(1);
    const text = metrics.messagesIn.labels("text");
    for (let i = 0; i < 5; i++) text.inc();
    metrics.messagesIn.inc({ msg_type: "image" });
    metrics.messagesOut.inc({ msg_type: "text" });
    metrics.wechatApiCalls.labels("message/custom/send", "0").inc();
    metrics.wechatApiCalls.inc({ api: "message/custom/send", errcode: 45015 });
    metrics.deliveryLatency.observe(0.003);
    metrics.webhookDuration.observe(0.02);
    metrics.rejected.inc({ reason: "rate" });
    metrics.queueDepth.setCollector(() => 0);

    const f = parseExposition(metrics.render());
    assert.equal(sampleValue(f, "bridge_agent_sockets_open", "bridge_agent_sockets_open"), 2);
    assert.equal(sampleValue(f, "bridge_agents_online", "bridge_agents_online"), 1);
    const msgIn = "bridge_messages_in_total";
    assert.equal(sampleValue(f, msgIn, msgIn, { msg_type: "text" }), 5);
    assert.equal(sampleValue(f, msgIn, msgIn, { msg_type: "image" }), 1);
    const out = "bridge_messages_out_total";
    assert.equal(sampleValue(f, out, out, { msg_type: "text" }), 1);
    const api = "bridge_wechat_api_calls_total";
    assert.equal(sampleValue(f, api, api, { api: "message/custom/send", errcode: "45015" }), 1);
    const latency = "bridge_delivery_latency_seconds";
    assert.equal(sampleValue(f, latency, `${latency}_bucket`, { le: "0.0025" }), 0);
    assert.equal(sampleValue(f, latency, `${latency}_bucket`, { le: "0.005" }), 1);
    const hook = "bridge_webhook_duration_seconds";
    assert.equal(sampleValue(f, hook, `${hook}_count`), 1);
    assert.equal(
      sampleValue(f, "bridge_rejected_total", "bridge_rejected_total", {
        reason: "rate",
      }),
      1,
    );
    assert.equal(sampleValue(f, "bridge_queue_depth", "bridge_queue_depth"), 0);
  });

  await t.step("two instances keep separate counts", () => {
    const other = createBridgeMetrics();
    const f = parseExposition(other.render());
    assert.equal(f.get("bridge_messages_in_total")!.samples.length, 0);
    assert.equal(sampleValue(f, "bridge_queue_depth", "bridge_queue_depth"), 0);
  });
});
