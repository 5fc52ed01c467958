// The per-message cost of the bridge's metric updates (one labelled counter increment and one
// histogram observation), prom-client against the hand-written registry it replaced. The old
// code is read from git history, so the comparison can be rerun without keeping it in src/.
// Run: deno bench -A bench/metrics_bench.ts

import { Counter, Histogram, Registry } from "prom-client";
import { createBridgeMetrics } from "../src/http/metrics.ts";

/** The last commit with the hand-written src/metrics.ts. */
const HANDWRITTEN_COMMIT = "e664ce0";

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const MSG_TYPES = ["text", "image", "voice", "video", "location", "link", "event", "agent"];

interface PerMessage {
  inc(msgType: string): void;
  observe(seconds: number): void;
}

function promClient(): PerMessage {
  const registry = new Registry();
  const counter = new Counter({
    name: "bench_messages_in_total",
    help: "x",
    labelNames: ["msg_type"],
    registers: [registry],
  });
  const histogram = new Histogram({
    name: "bench_latency_seconds",
    help: "x",
    buckets: BUCKETS,
    registers: [registry],
  });
  return {
    inc: (msgType) => counter.inc({ msg_type: msgType }),
    observe: (seconds) => histogram.observe(seconds),
  };
}

// What the bridge runs per message: prom-client behind the label cap of src/http/metrics.ts.
function bridge(): PerMessage {
  const metrics = createBridgeMetrics();
  return {
    inc: (msgType) => metrics.messagesIn.inc({ msg_type: msgType }),
    observe: (seconds) => metrics.deliveryLatency.observe(seconds),
  };
}

interface HandwrittenModule {
  Registry: new () => {
    counter(o: { name: string; help: string; labels: string[] }): {
      inc(labels: Record<string, string>): void;
    };
    histogram(o: { name: string; help: string; buckets: number[] }): {
      observe(value: number): void;
    };
  };
}

// Undefined outside a git checkout that has the commit: the bench then measures prom-client only.
async function handwritten(): Promise<PerMessage | undefined> {
  const git = await new Deno.Command("git", {
    args: ["show", `${HANDWRITTEN_COMMIT}:src/metrics.ts`],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  if (git === undefined || !git.success) return undefined;
  const file = await Deno.makeTempFile({ prefix: "handwritten-metrics-", suffix: ".ts" });
  await Deno.writeFile(file, git.stdout);
  const mod = await import(`file://${file}`) as HandwrittenModule;
  await Deno.remove(file);
  const registry = new mod.Registry();
  const counter = registry.counter({
    name: "bench_messages_in_total",
    help: "x",
    labels: ["msg_type"],
  });
  const histogram = registry.histogram({
    name: "bench_latency_seconds",
    help: "x",
    buckets: BUCKETS,
  });
  return {
    inc: (msgType) => counter.inc({ msg_type: msgType }),
    observe: (seconds) => histogram.observe(seconds),
  };
}

function perMessage(impl: PerMessage): (b: Deno.BenchContext) => void {
  let i = 0;
  return () => {
    // Cycling through types and latencies keeps every series and bucket in play, as traffic does.
    impl.inc(MSG_TYPES[i & 7]!);
    impl.observe(((i * 7919) % 5000) / 1000);
    i++;
  };
}

const old = await handwritten();
if (old !== undefined) {
  Deno.bench("hand-written: counter inc {msg_type} + histogram observe", {
    group: "per message",
    baseline: true,
  }, perMessage(old));
}
Deno.bench("prom-client: counter inc {msg_type} + histogram observe", {
  group: "per message",
  baseline: old === undefined,
}, perMessage(promClient()));
Deno.bench("createBridgeMetrics(): the same, with the label cap", {
  group: "per message",
}, perMessage(bridge()));
