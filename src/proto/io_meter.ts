// IO meters: the (ops, bytes, latency histogram, errors) group that every kind of block IO is
// counted with — an SDC's volume reads, an SDS's primary writes, a device's fdatasyncs — built on
// the metrics core (metrics.ts), plus the clock the IO paths read and the conversion to the
// heartbeat's OpTotals (io_report.ts).
//
// Invariants: record() and fail() allocate nothing and call no clock (the caller reads ioNowMs()
// once when the request starts and once when it completes); latency is in seconds in the
// histogram and in whole microseconds in OpTotals; a meter's counts only grow.
//
// PF_METRICS=off (for the cost A/B bench only, bench/metrics_cost.ts): ioNowMs returns 0 and
// the meters handed out are no-ops, so the IO paths run without any metrics work; /metrics still
// answers, with the IO counters at zero.

import type { OpTotals } from "./io_report.ts";
import { CounterSeries, HistogramSeries, type Family, type MetricRegistry } from "./metrics.ts";

/** Block-IO latency buckets in seconds (docs/observability.md, spec sketch B): 100 µs .. 1 s. */
export const LATENCY_BUCKETS_SECONDS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1] as const;

/** False only under PF_METRICS=off (the bench's "without counters" side). */
export const ioMetricsEnabled: boolean = process.env.PF_METRICS !== "off";

const realNowMs = (): number => performance.now();
const zeroNowMs = (): number => 0;
/** Monotonic milliseconds for IO latency: read once at request start, once at completion. */
export const ioNowMs: () => number = ioMetricsEnabled ? realNowMs : zeroNowMs;

export interface IoMeter {
  /** one operation completed: its payload bytes and its latency in seconds */
  record(bytes: number, seconds: number): void;
  /** one operation failed (not counted in ops, bytes or latency) */
  fail(): void;
  totals(): OpTotals;
}

export class IoSeries implements IoMeter {
  constructor(
    readonly ops: CounterSeries,
    /** null for operations without a payload (flush, sync) */
    readonly bytes: CounterSeries | null,
    readonly latency: HistogramSeries,
    readonly errors: CounterSeries | null,
  ) {}

  record(bytes: number, seconds: number): void {
    this.ops.value++;
    if (this.bytes !== null) this.bytes.value += bytes;
    this.latency.observe(seconds);
  }

  fail(): void {
    if (this.errors !== null) this.errors.value++;
  }

  totals(): OpTotals {
    return { ops: this.ops.value, bytes: this.bytes?.value ?? 0, latencyUs: Math.round(this.latency.sum * 1e6) };
  }
}

class NoopIoMeter implements IoMeter {
  record(): void {}
  fail(): void {}
  totals(): OpTotals {
    return { ops: 0, bytes: 0, latencyUs: 0 };
  }
}
const noopMeter: IoMeter = new NoopIoMeter();

export interface IoFamiliesSpec {
  /** e.g. pf_volume_read_ops_total */
  opsName: string;
  /** e.g. pf_volume_read_bytes_total; omitted for operations without a payload */
  bytesName?: string;
  /** e.g. pf_volume_read_latency_seconds */
  latencyName: string;
  /** e.g. pf_volume_read_errors_total */
  errorsName?: string;
  /** what is counted, e.g. "NBD reads of the volume completed by this SDC" */
  what: string;
  labelNames: readonly string[];
}

/** The families of one kind of IO; meter(...labelValues) gives the group for one label set. */
export class IoFamilies {
  readonly ops: Family<CounterSeries>;
  readonly bytes: Family<CounterSeries> | null;
  readonly latency: Family<HistogramSeries>;
  readonly errors: Family<CounterSeries> | null;

  constructor(reg: MetricRegistry, spec: IoFamiliesSpec) {
    const labelNames = spec.labelNames;
    this.ops = reg.counter({ name: spec.opsName, help: `${spec.what}: operations completed.`, labelNames });
    this.bytes = spec.bytesName === undefined ? null : reg.counter({ name: spec.bytesName, help: `${spec.what}: bytes of the completed operations.`, labelNames });
    this.latency = reg.histogram({ name: spec.latencyName, help: `${spec.what}: latency from request to completion, in seconds.`, labelNames, buckets: LATENCY_BUCKETS_SECONDS });
    this.errors = spec.errorsName === undefined ? null : reg.counter({ name: spec.errorsName, help: `${spec.what}: operations that failed.`, labelNames });
  }

  /** The meter for one label set (a no-op under PF_METRICS=off). Not for the IO path: keep it. */
  meter(...values: string[]): IoMeter {
    if (!ioMetricsEnabled) return noopMeter;
    return this.series(...values);
  }

  /** Always the real series (renames, tests). */
  series(...values: string[]): IoSeries {
    return new IoSeries(this.ops.with(...values), this.bytes?.with(...values) ?? null, this.latency.with(...values), this.errors?.with(...values) ?? null);
  }

  relabel(m: IoMeter, ...values: string[]): void {
    if (!(m instanceof IoSeries)) return;
    this.ops.relabel(m.ops, ...values);
    if (m.bytes !== null) this.bytes?.relabel(m.bytes, ...values);
    this.latency.relabel(m.latency, ...values);
    if (m.errors !== null) this.errors?.relabel(m.errors, ...values);
  }
}

/** Sum of several meters' totals (a report field that covers more than one series). */
export function sumTotals(...all: OpTotals[]): OpTotals {
  const out: OpTotals = { ops: 0, bytes: 0, latencyUs: 0 };
  for (const t of all) {
    out.ops += t.ops;
    out.bytes += t.bytes;
    out.latencyUs += t.latencyUs;
  }
  return out;
}

/** A new process incarnation id for SdsIoReport/SdcIoReport (16 hex digits, random). */
export function newIncarnation(): string {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return Buffer.from(b).toString("hex");
}
