import assert from "node:assert/strict";
import {
  createBridgeMetrics,
  DELIVERY_LATENCY_BUCKETS,
  MAX_SERIES,
  PROMETHEUS_CONTENT_TYPE,
  WEBHOOK_DURATION_BUCKETS,
} from "../src/http/metrics.ts";
import { createWechatClient, type WechatClientOptions } from "../src/wechat/api_client.ts";
import { startFakeWechat } from "../tools/fake_wechat.ts";

// ---- A strict reader of text exposition format 0.0.4 -------------------------------------
// https://prometheus.io/docs/instrumenting/exposition_formats/ : every line is a HELP, a TYPE,
// or a sample; label values escape \\ \" \n; HELP escapes \\ \n; a family's lines stay together;
// empty lines are ignored. Values are read as Go's ParseFloat reads them (NaN in any case).

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
const FLOAT = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|[Nn][Aa][Nn])$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

function parseValue(text: string, where: string): number {
  if (!FLOAT.test(text)) throw new SyntaxError(`${where}: bad value "${text}"`);
  if (text.toLowerCase() === "nan") return Number.NaN;
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
    if (line === "") return;
    if (line.trim() === "") throw new SyntaxError(`${where}: a line of spaces`);
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
  await t.step("accepts a well-formed histogram, empty lines and Nan", () => {
    const text = "# HELP h A \\\\ help\\nline.\n# TYPE h histogram\n" +
      'h_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n\n# TYPE g gauge\ng Nan\n';
    const families = parseExposition(text);
    assert.equal(families.get("h")?.help, "A \\ help\nline.");
    assert.equal(families.get("h")?.samples.length, 4);
    assert.ok(Number.isNaN(sampleValue(families, "g", "g")));
  });
});

const BRIDGE_FAMILIES: Record<string, string> = {
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

Deno.test("createBridgeMetrics() declares the bridge's metrics", async (t) => {
  const metrics = createBridgeMetrics({ queueDepth: () => 12 });

  await t.step("says it is format 0.0.4", () => {
    assert.match(PROMETHEUS_CONTENT_TYPE, /^text\/plain; version=0\.0\.4/);
  });

  await t.step("every metric renders with its type and help, even before any traffic", async () => {
    const families = parseExposition(await metrics.render());
    const bridge = [...families.values()].filter((f) => f.name.startsWith("bridge_"));
    assert.deepEqual(Object.fromEntries(bridge.map((f) => [f.name, f.type])), BRIDGE_FAMILIES);
    for (const family of families.values()) assert.ok(family.help, `${family.name} has HELP`);
    assert.equal(sampleValue(families, "bridge_queue_depth", "bridge_queue_depth"), 12);
    assert.equal(sampleValue(families, "bridge_agents_online", "bridge_agents_online"), 0);
  });

  await t.step("histogram buckets are the ones docs/production.md alerts on", async () => {
    const families = parseExposition(await metrics.render());
    const les = (name: string) =>
      families.get(name)!.samples.flatMap((s) => s.labels.get("le") ?? []);
    assert.deepEqual(les("bridge_delivery_latency_seconds"), [
      ...DELIVERY_LATENCY_BUCKETS.map(String),
      "+Inf",
    ]);
    assert.deepEqual(les("bridge_webhook_duration_seconds"), [
      ...WEBHOOK_DURATION_BUCKETS.map(String),
      "+Inf",
    ]);
  });

  await t.step("traffic shows up under the right labels", async () => {
    metrics.agentSocketsOpen.inc();
    metrics.agentSocketsOpen.inc();
    metrics.agentsOnline.set(1);
    for (let i = 0; i < 5; i++) metrics.messagesIn.inc({ msg_type: "text" });
    metrics.messagesIn.inc({ msg_type: "image" });
    metrics.messagesOut.inc({ msg_type: "text" });
    metrics.onWechatApiCall("message/custom/send", 0);
    metrics.onWechatApiCall("message/custom/send", 45015);
    metrics.deliveryLatency.observe(0.003);
    metrics.deliveryLatency.observe(0.005);
    metrics.webhookDuration.observe(0.02);
    metrics.rejected.inc({ reason: "rate" });
    metrics.queueDepth.setCollector(() => 0);

    const f = parseExposition(await metrics.render());
    assert.equal(sampleValue(f, "bridge_agent_sockets_open", "bridge_agent_sockets_open"), 2);
    assert.equal(sampleValue(f, "bridge_agents_online", "bridge_agents_online"), 1);
    const msgIn = "bridge_messages_in_total";
    assert.equal(sampleValue(f, msgIn, msgIn, { msg_type: "text" }), 5);
    assert.equal(sampleValue(f, msgIn, msgIn, { msg_type: "image" }), 1);
    const out = "bridge_messages_out_total";
    assert.equal(sampleValue(f, out, out, { msg_type: "text" }), 1);
    const api = "bridge_wechat_api_calls_total";
    assert.equal(sampleValue(f, api, api, { api: "message/custom/send", errcode: "0" }), 1);
    assert.equal(sampleValue(f, api, api, { api: "message/custom/send", errcode: "45015" }), 1);
    const latency = "bridge_delivery_latency_seconds";
    assert.equal(sampleValue(f, latency, `${latency}_bucket`, { le: "0.0025" }), 0);
    // le is inclusive: 0.005 falls in the 0.005 bucket.
    assert.equal(sampleValue(f, latency, `${latency}_bucket`, { le: "0.005" }), 2);
    assert.equal(sampleValue(f, latency, `${latency}_sum`), 0.008);
    const hook = "bridge_webhook_duration_seconds";
    assert.equal(sampleValue(f, hook, `${hook}_count`), 1);
    const rejected = "bridge_rejected_total";
    assert.equal(sampleValue(f, rejected, rejected, { reason: "rate" }), 1);
    assert.equal(sampleValue(f, "bridge_queue_depth", "bridge_queue_depth"), 0);
  });

  await t.step(
    "label values with quotes, backslashes and newlines read back the same",
    async () => {
      const odd = 'a "quoted" \\ and\nnewline';
      metrics.messagesIn.inc({ msg_type: odd });
      const f = parseExposition(await metrics.render());
      assert.equal(
        sampleValue(f, "bridge_messages_in_total", "bridge_messages_in_total", { msg_type: odd }),
        1,
      );
    },
  );

  await t.step("a queue-depth source that throws renders NaN, not an error", async () => {
    metrics.queueDepth.setCollector(() => {
      throw new Error("store down");
    });
    const f = parseExposition(await metrics.render());
    assert.ok(Number.isNaN(sampleValue(f, "bridge_queue_depth", "bridge_queue_depth")));
    metrics.queueDepth.setCollector(() => 3);
  });

  await t.step("two instances keep separate counts", async () => {
    const other = createBridgeMetrics();
    const f = parseExposition(await other.render());
    assert.equal(f.get("bridge_messages_in_total")!.samples.length, 0);
    assert.equal(sampleValue(f, "bridge_queue_depth", "bridge_queue_depth"), 0);
    assert.equal(sampleValue(f, "bridge_agent_sockets_open", "bridge_agent_sockets_open"), 0);
  });
});

Deno.test("createBridgeMetrics() caps the label values a client makes up", async (t) => {
  await t.step(`past ${MAX_SERIES} msg_types, new ones count under _other`, async () => {
    const metrics = createBridgeMetrics();
    for (let i = 0; i < MAX_SERIES + 7; i++) metrics.messagesIn.inc({ msg_type: `type${i}` });
    metrics.messagesIn.inc({ msg_type: "type0" });
    const f = parseExposition(await metrics.render());
    const name = "bridge_messages_in_total";
    assert.equal(f.get(name)!.samples.length, MAX_SERIES + 1);
    assert.equal(sampleValue(f, name, name, { msg_type: "_other" }), 7);
    assert.equal(
      sampleValue(f, name, name, { msg_type: "type0" }),
      2,
      "a known value still counts",
    );
  });

  await t.step("the cap holds for two labels too", async () => {
    const metrics = createBridgeMetrics();
    for (let i = 0; i < MAX_SERIES + 2; i++) metrics.onWechatApiCall("message/custom/send", i);
    const f = parseExposition(await metrics.render());
    const name = "bridge_wechat_api_calls_total";
    assert.equal(sampleValue(f, name, name, { api: "_other", errcode: "_other" }), 2);
  });
});

Deno.test("createBridgeMetrics() adds prom-client's process metrics", async (t) => {
  const metrics = createBridgeMetrics();
  const families = parseExposition(await metrics.render());

  await t.step("the ones that read true under Deno are there", () => {
    for (
      const name of [
        "process_cpu_seconds_total",
        "process_start_time_seconds",
        "process_resident_memory_bytes",
        "nodejs_eventloop_lag_p99_seconds",
        "nodejs_heap_size_used_bytes",
        "nodejs_heap_space_size_used_bytes",
        "nodejs_version_info",
      ]
    ) assert.ok(families.has(name), name);
    const rss = "process_resident_memory_bytes";
    const bytes = sampleValue(families, rss, rss);
    assert.ok(bytes !== undefined && bytes > 1_000_000, `resident memory ${bytes}`);
  });

  await t.step("what prom-client reads from /proc/self is absent or true, never a 0", () => {
    // deno task test runs without --allow-all, and Deno refuses /proc/self/* to anything less.
    for (const name of ["process_open_fds", "process_max_fds", "process_virtual_memory_bytes"]) {
      const value = sampleValue(families, name, name);
      assert.ok(value === undefined || value > 0, `${name} ${value}`);
    }
  });

  await t.step("the ones Deno only stubs (always 0 or empty) are left out", () => {
    for (const name of ["nodejs_gc_duration_seconds", "nodejs_active_handles_total"]) {
      assert.ok(!families.has(name), name);
    }
  });
});

Deno.test("onWechatApiCall is the API client's onCall", async (t) => {
  await t.step("every attempt is counted by api and errcode", async () => {
    const fake = await startFakeWechat({ appId: "wxtestapp0000001", secret: "s" });
    const metrics = createBridgeMetrics();
    // The type the lead wires: assignable to the client's option as it is.
    const onCall: WechatClientOptions["onCall"] = metrics.onWechatApiCall;
    try {
      const client = createWechatClient({
        apiBase: fake.url,
        appId: "wxtestapp0000001",
        secret: "s",
        onCall,
      });
      const message = { touser: "oA", msgtype: "text", text: { content: "hi" } };
      fake.failNext("cgi-bin/message/custom/send", 45047);
      await assert.rejects(client.sendCustomMessage(message), /45047/);
      await client.sendCustomMessage(message);
      const f = parseExposition(await metrics.render());
      const name = "bridge_wechat_api_calls_total";
      assert.equal(sampleValue(f, name, name, { api: "stable_token", errcode: "0" }), 1);
      const send = "message/custom/send";
      assert.equal(sampleValue(f, name, name, { api: send, errcode: "45047" }), 1);
      assert.equal(sampleValue(f, name, name, { api: send, errcode: "0" }), 1);
    } finally {
      await fake.close();
    }
  });
});
