// A small Prometheus registry (counters, gauges, histograms with labels) rendered in text
// exposition format 0.0.4, and the bridge's own metrics declared in one place. Increments run
// per message, so a labelled series is looked up through maps of label values, never a built key.

/** The Content-Type of `render()`'s output. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

// A label coming from clients (a msg_type, an errcode) could otherwise grow a series per value.
const DEFAULT_MAX_SERIES = 200;
const OVERFLOW_LABEL_VALUE = "_other";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labels?: readonly L[];
  /** Distinct label sets kept before new ones are counted under `_other`. */
  maxSeries?: number;
}

export interface CounterSeries {
  inc(amount?: number): void;
}

export interface GaugeSeries {
  set(value: number): void;
  inc(amount?: number): void;
  dec(amount?: number): void;
}

export interface HistogramSeries {
  /** Records one observation, in the metric's unit (seconds for the bridge's). */
  observe(value: number): void;
}

/** Label values by name, as in prom-client: `inc({ msg_type: "text" })`. */
export type Labels<L extends string> = Readonly<Record<L, string | number>>;

interface Metric {
  readonly name: string;
  render(out: string[]): void;
}

/**
 * One metric's series, found through one map per label: `labels("text")` for one label,
 * `labels("send", "0")` for two. Callers that know the values ahead can keep the series.
 */
class Family<S> {
  readonly #root = new Map<string, unknown>();
  readonly #series: { values: readonly string[]; series: S }[] = [];
  readonly #overflow: readonly string[];
  #unlabelled: S | undefined;

  constructor(
    readonly labelNames: readonly string[],
    readonly maxSeries: number,
    readonly make: () => S,
  ) {
    this.#overflow = labelNames.map(() => OVERFLOW_LABEL_VALUE);
  }

  get(values: readonly string[]): S {
    const names = this.labelNames;
    if (values.length !== names.length) {
      throw new RangeError(`Cannot find series: expected ${names.length} label values`);
    }
    if (names.length === 0) return this.#unlabelled ??= this.#add(values);
    let node: Map<string, unknown> = this.#root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      const next = node.get(values[i]!) as Map<string, unknown> | undefined;
      if (next === undefined) return this.#create(values);
      node = next;
    }
    const found = node.get(values[last]!) as S | undefined;
    return found ?? this.#create(values);
  }

  /** The series for `{label: value}`; the one-label case builds no array. */
  fromObject(labels: Readonly<Record<string, string | number>>): S {
    const names = this.labelNames;
    if (names.length === 1) {
      const value = labels[names[0]!];
      if (value === undefined) {
        throw new RangeError(`Cannot find series: label ${names[0]} missing`);
      }
      const found = this.#root.get(typeof value === "string" ? value : String(value)) as S;
      return found ?? this.get([String(value)]);
    }
    return this.get(names.map((name) => {
      const value = labels[name];
      if (value === undefined) throw new RangeError(`Cannot find series: label ${name} missing`);
      return String(value);
    }));
  }

  entries(): readonly { values: readonly string[]; series: S }[] {
    return this.#series;
  }

  #create(values: readonly string[]): S {
    if (this.#series.length >= this.maxSeries && values !== this.#overflow) {
      return this.get(this.#overflow);
    }
    const series = this.#add(values);
    let node = this.#root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      let next = node.get(values[i]!) as Map<string, unknown> | undefined;
      if (next === undefined) node.set(values[i]!, next = new Map());
      node = next;
    }
    node.set(values[last]!, series);
    return series;
  }

  #add(values: readonly string[]): S {
    const series = this.make();
    this.#series.push({ values: [...values], series });
    return series;
  }
}

abstract class BaseMetric<L extends string, S> implements Metric {
  readonly name: string;
  readonly help: string;
  protected readonly family: Family<S>;

  constructor(options: MetricOptions<L>, make: () => S, reserved: readonly string[] = []) {
    if (!METRIC_NAME.test(options.name)) {
      throw new SyntaxError(`Cannot parse metric name: "${options.name}"`);
    }
    const labels = options.labels ?? [];
    for (const label of labels) {
      if (!LABEL_NAME.test(label) || label.startsWith("__") || reserved.includes(label)) {
        throw new SyntaxError(`Cannot parse label name: "${label}" in ${options.name}`);
      }
    }
    if (new Set(labels).size !== labels.length) {
      throw new SyntaxError(`Cannot parse labels: ${options.name} repeats a label`);
    }
    this.name = options.name;
    this.help = options.help;
    this.family = new Family(labels, options.maxSeries ?? DEFAULT_MAX_SERIES, make);
    // An unlabelled metric shows 0 from the start, so a rate() over it has a first point.
    if (labels.length === 0) this.family.get([]);
  }

  /** The series for these label values, in the order the labels were declared. */
  labels(...values: string[]): S {
    return this.family.get(values);
  }

  abstract render(out: string[]): void;

  protected series(labels: Labels<L> | undefined): S {
    return labels === undefined ? this.family.get([]) : this.family.fromObject(labels);
  }

  protected header(out: string[], type: string): void {
    out.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${type}`);
  }

  protected labelText(values: readonly string[], extra = ""): string {
    const names = this.family.labelNames;
    const parts: string[] = [];
    for (let i = 0; i < names.length; i++) {
      parts.push(`${names[i]}="${escapeLabelValue(values[i]!)}"`);
    }
    if (extra !== "") parts.push(extra);
    return parts.length === 0 ? "" : `{${parts.join(",")}}`;
  }
}

class CounterValue implements CounterSeries {
  value = 0;
  inc(amount = 1): void {
    // A counter that goes down reads as a restart to Prometheus' rate().
    if (!(amount >= 0)) throw new RangeError(`Cannot increase counter by ${amount}`);
    this.value += amount;
  }
}

/** A value that only goes up; its name should end in `_total`. */
export class Counter<L extends string = never> extends BaseMetric<L, CounterSeries> {
  constructor(options: MetricOptions<L>) {
    super(options, () => new CounterValue());
  }

  /** Increments the unlabelled series, or the one named by `labels`. */
  inc(amount?: number): void;
  inc(labels: Labels<L>, amount?: number): void;
  inc(first?: number | Labels<L>, amount = 1): void {
    if (typeof first === "object") this.series(first).inc(amount);
    else this.family.get([]).inc(first ?? 1);
  }

  render(out: string[]): void {
    this.header(out, "counter");
    for (const { values, series } of this.family.entries()) {
      out.push(
        `${this.name}${this.labelText(values)} ${formatNumber((series as CounterValue).value)}`,
      );
    }
  }
}

class GaugeValue implements GaugeSeries {
  value = 0;
  set(value: number): void {
    this.value = value;
  }
  inc(amount = 1): void {
    this.value += amount;
  }
  dec(amount = 1): void {
    this.value -= amount;
  }
}

/** A value that goes up and down, or is read from a callback at render time. */
export class Gauge<L extends string = never> extends BaseMetric<L, GaugeSeries> {
  #collect: (() => number) | undefined;

  constructor(options: MetricOptions<L> & { collect?: () => number }) {
    super(options, () => new GaugeValue());
    if (options.collect !== undefined && this.family.labelNames.length > 0) {
      throw new RangeError(`Cannot collect ${options.name}: a collected gauge has no labels`);
    }
    this.#collect = options.collect;
  }

  /** Reads the unlabelled value from `collect` at each render (for values owned elsewhere). */
  setCollector(collect: (() => number) | undefined): void {
    if (collect !== undefined && this.family.labelNames.length > 0) {
      throw new RangeError(`Cannot collect ${this.name}: a collected gauge has no labels`);
    }
    this.#collect = collect;
  }

  /** Sets the unlabelled series, or the one named by `labels`. */
  set(value: number): void;
  set(labels: Labels<L>, value: number): void;
  set(first: number | Labels<L>, value?: number): void {
    if (typeof first === "object") this.series(first).set(value ?? Number.NaN);
    else this.family.get([]).set(first);
  }

  inc(amount?: number): void;
  inc(labels: Labels<L>, amount?: number): void;
  inc(first?: number | Labels<L>, amount = 1): void {
    if (typeof first === "object") this.series(first).inc(amount);
    else this.family.get([]).inc(first ?? 1);
  }

  dec(amount?: number): void;
  dec(labels: Labels<L>, amount?: number): void;
  dec(first?: number | Labels<L>, amount = 1): void {
    if (typeof first === "object") this.series(first).dec(amount);
    else this.family.get([]).dec(first ?? 1);
  }

  render(out: string[]): void {
    if (this.#collect !== undefined) {
      // A failing source must not take /metrics down with it; NaN says "unknown".
      let value: number;
      try {
        value = this.#collect();
      } catch {
        value = Number.NaN;
      }
      this.family.get([]).set(value);
    }
    this.header(out, "gauge");
    for (const { values, series } of this.family.entries()) {
      out.push(
        `${this.name}${this.labelText(values)} ${formatNumber((series as GaugeValue).value)}`,
      );
    }
  }
}

class HistogramValue implements HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    if (Number.isNaN(value)) return;
    const bounds = this.bounds;
    // Bucket lists are short (about a dozen): a linear scan beats a binary search here.
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    if (i < bounds.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** Observations counted into buckets by upper bound, with their sum and count. */
export class Histogram<L extends string = never> extends BaseMetric<L, HistogramSeries> {
  readonly buckets: readonly number[];
  readonly #bucketLabels: string[];

  constructor(options: MetricOptions<L> & { buckets: readonly number[] }) {
    const bounds = Float64Array.from(options.buckets);
    super(options, () => new HistogramValue(bounds), ["le"]);
    if (bounds.length === 0 || bounds.some((b, i) => !Number.isFinite(b) || b <= bounds[i - 1]!)) {
      throw new RangeError(`Cannot use buckets for ${options.name}: finite and increasing`);
    }
    this.buckets = [...bounds];
    this.#bucketLabels = [...this.buckets.map(formatNumber), "+Inf"].map((b) => `le="${b}"`);
  }

  /** Records one observation in the unlabelled series, or the one named by `labels`. */
  observe(value: number): void;
  observe(labels: Labels<L>, value: number): void;
  observe(first: number | Labels<L>, value?: number): void {
    if (typeof first === "object") this.series(first).observe(value ?? Number.NaN);
    else this.family.get([]).observe(first);
  }

  /** Starts a timer; calling the result records the seconds since, using `now` in ms. */
  startTimer(now: () => number = () => performance.now()): () => number {
    const started = now();
    return () => {
      const seconds = (now() - started) / 1000;
      this.observe(seconds);
      return seconds;
    };
  }

  render(out: string[]): void {
    this.header(out, "histogram");
    for (const { values, series } of this.family.entries()) {
      const h = series as HistogramValue;
      let cumulative = 0;
      for (let i = 0; i <= h.counts.length; i++) {
        cumulative = i < h.counts.length ? cumulative + h.counts[i]! : h.count;
        const labels = this.labelText(values, this.#bucketLabels[i]);
        out.push(`${this.name}_bucket${labels} ${formatNumber(cumulative)}`);
      }
      out.push(`${this.name}_sum${this.labelText(values)} ${formatNumber(h.sum)}`);
      out.push(`${this.name}_count${this.labelText(values)} ${formatNumber(h.count)}`);
    }
  }
}

/** Holds metrics under unique names and renders them all. */
export class Registry {
  readonly #metrics = new Map<string, Metric>();

  /** Adds a metric; a name used twice is a programming error. */
  register<M extends Metric>(metric: M): M {
    if (this.#metrics.has(metric.name)) {
      throw new RangeError(`Cannot register metric: ${metric.name} exists`);
    }
    this.#metrics.set(metric.name, metric);
    return metric;
  }

  counter<L extends string = never>(options: MetricOptions<L>): Counter<L> {
    return this.register(new Counter(options));
  }

  gauge<L extends string = never>(
    options: MetricOptions<L> & { collect?: () => number },
  ): Gauge<L> {
    return this.register(new Gauge(options));
  }

  histogram<L extends string = never>(
    options: MetricOptions<L> & { buckets: readonly number[] },
  ): Histogram<L> {
    return this.register(new Histogram(options));
  }

  /** Every metric in text exposition format 0.0.4, ending with a newline. */
  render(): string {
    const out: string[] = [];
    for (const metric of this.#metrics.values()) metric.render(out);
    return out.length === 0 ? "" : out.join("\n") + "\n";
  }
}

function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

function escapeLabelValue(text: string): string {
  return text.replace(/[\\\n"]/g, (c) => c === "\n" ? "\\n" : `\\${c}`);
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
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

/** The bridge's metrics, created once in main.ts and passed to whatever counts. */
export interface BridgeMetrics {
  readonly registry: Registry;
  readonly agentSocketsOpen: Gauge;
  readonly agentsOnline: Gauge;
  /** Label: msg_type. */
  readonly messagesIn: Counter<"msg_type">;
  /** Label: msg_type. */
  readonly messagesOut: Counter<"msg_type">;
  /** Labels: api, errcode (`0` for success, `http_502`, `network` where WeChat gave none). */
  readonly wechatApiCalls: Counter<"api" | "errcode">;
  readonly deliveryLatency: Histogram;
  readonly webhookDuration: Histogram;
  /** Read at render time: `queueDepth.setCollector(() => n)`. */
  readonly queueDepth: Gauge;
  /** Label: reason (`rate`, `frame_size`, `body_size`, `sockets`, `origin`, `auth`, …). */
  readonly rejected: Counter<"reason">;
  /** Label: event (`TEMPLATESENDJOBFINISH`, `MASSSENDJOBFINISH`, …): reports on the account's
   * own sends and reviews, which never become conversations. */
  readonly accountReports: Counter<"event">;
  /** The exposition text for `GET /metrics`. */
  render(): string;
}

/** Declares the bridge's own metrics on a fresh registry. */
export function createBridgeMetrics(options: { queueDepth?: () => number } = {}): BridgeMetrics {
  const registry = new Registry();
  const metrics: BridgeMetrics = {
    registry,
    agentSocketsOpen: registry.gauge({
      name: "bridge_agent_sockets_open",
      help: "Agent WebSocket connections open now.",
    }),
    agentsOnline: registry.gauge({
      name: "bridge_agents_online",
      help: "Agents with at least one socket open now.",
    }),
    messagesIn: registry.counter({
      name: "bridge_messages_in_total",
      help: "Messages received, from followers (WeChat) and from agents, by msg_type.",
      labels: ["msg_type"],
    }),
    messagesOut: registry.counter({
      name: "bridge_messages_out_total",
      help: "Messages sent, to agents' sockets and to WeChat, by msg_type.",
      labels: ["msg_type"],
    }),
    wechatApiCalls: registry.counter({
      name: "bridge_wechat_api_calls_total",
      help: "Calls to WeChat's API, by API and the errcode it answered.",
      labels: ["api", "errcode"],
    }),
    deliveryLatency: registry.histogram({
      name: "bridge_delivery_latency_seconds",
      help: "Seconds from receiving a message to handing it to its recipient.",
      buckets: DELIVERY_LATENCY_BUCKETS,
    }),
    webhookDuration: registry.histogram({
      name: "bridge_webhook_duration_seconds",
      help: "Seconds taken to answer WeChat's webhook POST (WeChat waits 5 s).",
      buckets: WEBHOOK_DURATION_BUCKETS,
    }),
    queueDepth: registry.gauge({
      name: "bridge_queue_depth",
      help: "Messages queued for agents that have no socket open.",
      collect: options.queueDepth,
    }),
    rejected: registry.counter({
      name: "bridge_rejected_total",
      help: "Requests, sockets and messages refused by a limit or a check, by reason.",
      labels: ["reason"],
    }),
    accountReports: registry.counter({
      name: "bridge_account_reports_total",
      help: "WeChat's reports on the account's own sends and reviews (template, mass send, " +
        "subscribe messages, cards, verification), by event.",
      labels: ["event"],
    }),
    render: () => registry.render(),
  };
  return metrics;
}
