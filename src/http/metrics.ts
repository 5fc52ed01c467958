// The bridge's Prometheus metrics, declared in one place on prom-client: one Registry per bridge
// (tests build many in one process) that also carries the process metrics, and a cap on the
// label values a client can make up, so a bad one cannot grow the series without bound.

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** The Content-Type of `render()`'s output (text exposition format 0.0.4). */
export const PROMETHEUS_CONTENT_TYPE: string = Registry.PROMETHEUS_CONTENT_TYPE;

/** Distinct label sets a labelled counter keeps before new ones count under `_other`. */
export const MAX_SERIES = 200;
const OVERFLOW_LABEL_VALUE = "_other";

/** Label values by name, as prom-client takes them: `inc({ msg_type: "text" })`. */
export type Labels<L extends string> = Readonly<Record<L, string | number>>;

/** A counter whose label values are capped at `MAX_SERIES` distinct sets. */
export interface LabelledCounter<L extends string> {
  /** Adds `amount` (default 1) to the series named by `labels`. */
  inc(labels: Labels<L>, amount?: number): void;
  /** The prom-client metric underneath, for reading values in tests. */
  readonly metric: Counter<L>;
}

/** A gauge read from a callback at each scrape, for values owned elsewhere. */
export interface CollectedGauge {
  /** Sets the callback `render()` reads; a callback that throws renders NaN. */
  setCollector(collect: (() => number) | undefined): void;
  /** The prom-client metric underneath. */
  readonly metric: Gauge;
}

/** Seconds, from half a millisecond (a local socket) to five (a slow WeChat round trip). */
export const DELIVERY_LATENCY_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
] as const;

/** Seconds; WeChat gives up on a webhook after 5 s and retries, so the top buckets matter. */
export const WEBHOOK_DURATION_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2,
  3,
  4,
  5,
] as const;

/** The bridge's metrics, created once per bridge and passed to whatever counts. */
export interface BridgeMetrics {
  readonly registry: Registry;
  readonly agentSocketsOpen: Gauge;
  readonly agentsOnline: Gauge;
  /** Label: msg_type. */
  readonly messagesIn: LabelledCounter<"msg_type">;
  /** Label: msg_type. */
  readonly messagesOut: LabelledCounter<"msg_type">;
  /** Labels: api, errcode (`0` for success, `-1` where WeChat could not be reached or read). */
  readonly wechatApiCalls: LabelledCounter<"api" | "errcode">;
  /** Counts one WeChat API attempt: pass as `createWechatClient({ onCall })`. */
  readonly onWechatApiCall: (api: string, errcode: number) => void;
  readonly deliveryLatency: Histogram;
  readonly webhookDuration: Histogram;
  /** Read at render time: `queueDepth.setCollector(() => n)`. */
  readonly queueDepth: CollectedGauge;
  /** Label: reason (`rate`, `frame_size`, `body_size`, `sockets`, `origin`, `auth`, …). */
  readonly rejected: LabelledCounter<"reason">;
  /** Label: event (`TEMPLATESENDJOBFINISH`, `MASSSENDJOBFINISH`, …): reports on the account's
   * own sends and reviews, which never become conversations. */
  readonly accountReports: LabelledCounter<"event">;
  /** The exposition text for `GET /metrics`. */
  render(): Promise<string>;
}

/** Declares the bridge's own metrics, and the process metrics, on a fresh registry. */
export function createBridgeMetrics(options: { queueDepth?: () => number } = {}): BridgeMetrics {
  const registry = new Registry();
  const shared = processMetrics();
  for (const { name } of shared.getMetricsAsArray()) {
    const metric = shared.getSingleMetric(name);
    if (metric !== undefined) registry.registerMetric(metric);
  }
  const registers = [registry];
  const wechatApiCalls = labelledCounter(registry, {
    name: "bridge_wechat_api_calls_total",
    help: "Calls to WeChat's API, by API and the errcode it answered.",
    labelNames: ["api", "errcode"],
  });
  return {
    registry,
    agentSocketsOpen: new Gauge({
      name: "bridge_agent_sockets_open",
      help: "Agent WebSocket connections open now.",
      registers,
    }),
    agentsOnline: new Gauge({
      name: "bridge_agents_online",
      help: "Agents with at least one socket open now.",
      registers,
    }),
    messagesIn: labelledCounter(registry, {
      name: "bridge_messages_in_total",
      help: "Messages received, from followers (WeChat) and from agents, by msg_type.",
      labelNames: ["msg_type"],
    }),
    messagesOut: labelledCounter(registry, {
      name: "bridge_messages_out_total",
      help: "Messages sent, to agents' sockets and to WeChat, by msg_type.",
      labelNames: ["msg_type"],
    }),
    wechatApiCalls,
    onWechatApiCall: (api, errcode) => wechatApiCalls.inc({ api, errcode }),
    deliveryLatency: new Histogram({
      name: "bridge_delivery_latency_seconds",
      help: "Seconds from receiving a message to handing it to its recipient.",
      buckets: [...DELIVERY_LATENCY_BUCKETS],
      registers,
    }),
    webhookDuration: new Histogram({
      name: "bridge_webhook_duration_seconds",
      help: "Seconds taken to answer WeChat's webhook POST (WeChat waits 5 s).",
      buckets: [...WEBHOOK_DURATION_BUCKETS],
      registers,
    }),
    queueDepth: collectedGauge(registry, {
      name: "bridge_queue_depth",
      help: "Messages queued for agents that have no socket open.",
    }, options.queueDepth),
    rejected: labelledCounter(registry, {
      name: "bridge_rejected_total",
      help: "Requests, sockets and messages refused by a limit or a check, by reason.",
      labelNames: ["reason"],
    }),
    accountReports: labelledCounter(registry, {
      name: "bridge_account_reports_total",
      help: "WeChat's reports on the account's own sends and reviews (template, mass send, " +
        "subscribe messages, cards, verification), by event.",
      labelNames: ["event"],
    }),
    render: () => registry.metrics(),
  };
}

function labelledCounter<L extends string>(
  registry: Registry,
  config: { name: string; help: string; labelNames: readonly L[] },
): LabelledCounter<L> {
  const names = config.labelNames;
  const overflow = Object.fromEntries(names.map((n) => [n, OVERFLOW_LABEL_VALUE])) as Labels<L>;
  // Counted here and handed to prom-client when it is read (a scrape): its `inc` builds a label
  // string, checks the names and looks the series up in a dictionary, and two counters a
  // message did that for every message. The cap is ours too, so a bad value cannot grow the
  // series without bound. One label (the per-message case) is keyed by its value alone.
  // `shown`: handed over once, so a series counted 0 still appears, as prom-client shows it.
  type Series = { labels: Labels<L>; pending: number; shown: boolean };
  const series = new Map<string, Series>();
  let overflowSeries: Series | undefined;
  const metric = new Counter<L>({
    ...config,
    registers: [registry],
    collect() {
      for (const s of overflowSeries ? [...series.values(), overflowSeries] : series.values()) {
        if (s.pending === 0 && s.shown) continue;
        this.inc(s.labels, s.pending);
        s.pending = 0;
        s.shown = true;
      }
    },
  });
  const keyOf = names.length === 1
    ? (labels: Labels<L>) => String(labels[names[0]!])
    : (labels: Labels<L>) => names.map((n) => String(labels[n])).join("\u0000");
  return {
    metric,
    inc(labels, amount = 1) {
      // What prom-client would refuse is refused at once, not at the next scrape.
      if (!Number.isFinite(amount) || amount < 0) {
        throw new TypeError(`Cannot count ${amount}: a counter adds finite amounts of 0 or more`);
      }
      const key = keyOf(labels);
      let s = series.get(key);
      if (s === undefined) {
        if (series.size >= MAX_SERIES) {
          s = overflowSeries ??= { labels: overflow, pending: 0, shown: false };
        } else series.set(key, s = { labels, pending: 0, shown: false });
      }
      s.pending += amount;
    },
  };
}

function collectedGauge(
  registry: Registry,
  config: { name: string; help: string },
  initial: (() => number) | undefined,
): CollectedGauge {
  let source = initial;
  const metric = new Gauge({
    ...config,
    registers: [registry],
    collect() {
      if (source === undefined) return;
      // A failing source must not take /metrics down with it; NaN says "unknown".
      let value: number;
      try {
        value = source();
      } catch {
        value = Number.NaN;
      }
      this.set(value);
    },
  });
  return {
    metric,
    setCollector(collect) {
      source = collect;
    },
  };
}

// The process metrics describe the process, not a bridge: they are made once and registered in
// every bridge's registry, so the event-loop monitor they start runs once however many bridges
// a process (a test run) builds.
let processRegistry: Registry | undefined;

// What prom-client reads through Node APIs that Deno only stubs: no GC entries ever arrive, and
// `_getActiveHandles`/`_getActiveRequests` always answer []. A metric that is always 0 would
// read as a fact, so these are left out.
const SILENT_UNDER_DENO = [
  "nodejs_gc_duration_seconds",
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
];

// Deno lets only --allow-all read /proc/self/*, and the bridge runs with narrower permissions:
// prom-client then reports 0 for what it reads there (memory sizes, open fds) and leaves out
// max fds. A 0 would read as a fact, so those go, and resident memory comes from Deno instead.
const FROM_PROCFS = [
  "process_resident_memory_bytes",
  "process_virtual_memory_bytes",
  "process_heap_bytes",
  "process_open_fds",
  "process_max_fds",
];

/** The process metrics prom-client collects (CPU, memory, fds, event loop, heap). */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
    for (const name of SILENT_UNDER_DENO) processRegistry.removeSingleMetric(name);
    if (!canReadProcfs()) {
      for (const name of FROM_PROCFS) processRegistry.removeSingleMetric(name);
      new Gauge({
        name: "process_resident_memory_bytes",
        help: "Resident memory size in bytes.",
        registers: [processRegistry],
        collect() {
          this.set(Deno.memoryUsage().rss);
        },
      });
    }
  }
  return processRegistry;
}

function canReadProcfs(): boolean {
  try {
    Deno.readTextFileSync("/proc/self/status");
    return true;
  } catch {
    return false;
  }
}
