// The metrics core every role shares (SDS, SDC, later the MDM): counters, gauges and histograms
// kept as plain number fields and preallocated Float64Arrays, grouped into labelled families in
// a registry. metrics_text.ts renders a registry as the Prometheus text exposition (0.0.4).
//
// Invariants:
// - recording (inc, set, observe) never allocates: a series is made once, when the object it
//   measures appears (a volume mapped, a device opened), and the caller keeps the reference;
//   the IO path never looks a series up by its labels;
// - metric names match [a-zA-Z_:][a-zA-Z0-9_:]* and are unique per registry; counter names end
//   in _total, other types' names never do; label names are snake_case, fixed per family, and
//   a histogram has no `le` label of its own;
// - label values come from bounded sets (volume, sdc, sds, pool, device, op, role, state...),
//   never an extent, an offset or a request; a family refuses more than maxSeries series;
// - histogram bucket bounds strictly increase; +Inf is implied (the last count slot).

import { assert } from "./errors.ts";
import { Limits } from "./limits.ts";

export type MetricType = "counter" | "gauge" | "histogram";

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-z_][a-z0-9_]*$/;

/** A monotonic count (ops, bytes, seconds). `value` is public so a collector may copy a source. */
export class CounterSeries {
  value = 0;
  constructor(public labels: string) {}
  inc(n = 1): void {
    this.value += n;
  }
}

/** A value that goes up and down (capacity, connections, state as 0/1). */
export class GaugeSeries {
  value = 0;
  constructor(public labels: string) {}
  set(v: number): void {
    this.value = v;
  }
}

/** Observations in fixed buckets; counts are per bucket (not cumulative), the last is +Inf. */
export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    public labels: string,
    readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]! += 1;
    this.sum += v;
    this.count++;
  }
}

export type Series = CounterSeries | GaugeSeries | HistogramSeries;

export interface FamilySpec {
  name: string;
  help: string;
  labelNames?: readonly string[];
  /** default Limits.metricsMaxSeriesPerFamily */
  maxSeries?: number;
}

/** One metric name: its help, type, label names and its series by label values. */
export class Family<S extends Series> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  readonly maxSeries: number;
  private readonly byLabels = new Map<string, S>();

  constructor(
    readonly type: MetricType,
    spec: FamilySpec,
    private readonly make: (labels: string) => S,
  ) {
    this.labelNames = spec.labelNames ?? [];
    this.maxSeries = spec.maxSeries ?? Limits.metricsMaxSeriesPerFamily;
    this.name = spec.name;
    this.help = spec.help;
  }

  /** The series for these label values (in labelNames order), made on first use. Not for the IO path. */
  with(...values: string[]): S {
    const labels = this.labelText(values);
    const found = this.byLabels.get(labels);
    if (found !== undefined) return found;
    assert(this.byLabels.size < this.maxSeries, `metric family over its series limit (labels must be bounded sets)`);
    const s = this.make(labels);
    this.byLabels.set(labels, s);
    return s;
  }

  /** Give an existing series new label values (a renamed volume keeps its counts). */
  relabel(series: S, ...values: string[]): void {
    const labels = this.labelText(values);
    if (labels === series.labels) return;
    assert(!this.byLabels.has(labels), "relabel onto label values another series holds");
    this.byLabels.delete(series.labels);
    series.labels = labels;
    this.byLabels.set(labels, series);
  }

  remove(...values: string[]): void {
    this.byLabels.delete(this.labelText(values));
  }

  /** Drop every series (collectors that rebuild a gauge's label set at each scrape). */
  clear(): void {
    this.byLabels.clear();
  }

  get size(): number {
    return this.byLabels.size;
  }

  series(): IterableIterator<S> {
    return this.byLabels.values();
  }

  /** `a="x",b="y"` (no braces), values escaped as the text format wants. */
  private labelText(values: readonly string[]): string {
    assert(values.length === this.labelNames.length, "label values do not match the family's label names");
    let out = "";
    for (let i = 0; i < values.length; i++) {
      if (i > 0) out += ",";
      out += `${this.labelNames[i]!}="${escapeLabelValue(values[i]!)}"`;
    }
    return out;
  }
}

export type AnyFamily = Family<CounterSeries> | Family<GaugeSeries> | Family<HistogramSeries>;

export interface HistogramSpec extends FamilySpec {
  /** upper bounds, strictly increasing, without +Inf */
  buckets: readonly number[];
}

/** All families of one process, in registration order, and the collectors run before a scrape. */
export class MetricRegistry {
  readonly families: AnyFamily[] = [];
  private readonly names = new Set<string>();
  private readonly collectors: (() => void)[] = [];

  counter(spec: FamilySpec): Family<CounterSeries> {
    this.check(spec, "counter");
    const f = new Family<CounterSeries>("counter", spec, (l) => new CounterSeries(l));
    this.families.push(f);
    return f;
  }

  gauge(spec: FamilySpec): Family<GaugeSeries> {
    this.check(spec, "gauge");
    const f = new Family<GaugeSeries>("gauge", spec, (l) => new GaugeSeries(l));
    this.families.push(f);
    return f;
  }

  histogram(spec: HistogramSpec): Family<HistogramSeries> {
    this.check(spec, "histogram");
    assert(spec.buckets.length > 0, "a histogram needs buckets");
    for (let i = 1; i < spec.buckets.length; i++) assert(spec.buckets[i]! > spec.buckets[i - 1]!, "histogram buckets must strictly increase");
    assert(!(spec.labelNames ?? []).includes("le"), "a histogram cannot have its own le label");
    const bounds = Float64Array.from(spec.buckets);
    const f = new Family<HistogramSeries>("histogram", spec, (l) => new HistogramSeries(l, bounds));
    this.families.push(f);
    return f;
  }

  /** Run fn before every scrape (gauges read from their source: capacity, lease, state). */
  onCollect(fn: () => void): void {
    this.collectors.push(fn);
  }

  collect(): void {
    for (const fn of this.collectors) fn();
  }

  private check(spec: FamilySpec, type: MetricType): void {
    assert(METRIC_NAME.test(spec.name), `bad metric name ${spec.name}`);
    assert(!this.names.has(spec.name), `metric ${spec.name} registered twice`);
    assert(type === "counter" ? spec.name.endsWith("_total") : !spec.name.endsWith("_total"), `metric ${spec.name}: only counters end in _total`);
    for (const l of spec.labelNames ?? []) assert(LABEL_NAME.test(l) && !l.startsWith("__"), `metric ${spec.name}: bad label name ${l}`);
    assert(new Set(spec.labelNames ?? []).size === (spec.labelNames ?? []).length, `metric ${spec.name}: repeated label name`);
    assert(spec.help.length > 0, `metric ${spec.name} needs help text`);
    this.names.add(spec.name);
  }
}

/** Text-format escaping of a label value: backslash, double quote, line feed. */
export function escapeLabelValue(v: string): string {
  return /[\\"\n]/.test(v) ? v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") : v;
}

/** Text-format escaping of HELP text: backslash and line feed. */
export function escapeHelp(v: string): string {
  return /[\\\n]/.test(v) ? v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n") : v;
}
