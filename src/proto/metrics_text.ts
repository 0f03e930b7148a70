// The Prometheus text exposition format, version 0.0.4, of a MetricRegistry: one `# HELP` and
// one `# TYPE` line per family before its samples, histograms as cumulative `_bucket{le=...}`
// lines ending with `le="+Inf"`, then `_sum` and `_count`. Runs the registry's collectors first.
//
// Invariants: UTF-8 text, `\n` line ends, the last line ends with `\n`; label values and help
// are escaped (metrics.ts escapes label values when a series is made); a family with no series
// still prints its HELP and TYPE (promtool accepts that, and scrapers see the metric exists);
// values print as Go's ParseFloat reads them (NaN, +Inf, -Inf, decimal or exponent form).

import { escapeHelp, type AnyFamily, type CounterSeries, type Family, type GaugeSeries, type HistogramSeries, type MetricRegistry } from "./metrics.ts";

export const TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

export function formatSampleValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Render every family of the registry (after running its collectors). */
export function renderText(reg: MetricRegistry): string {
  reg.collect();
  const out: string[] = [];
  for (const f of reg.families) renderFamily(out, f);
  return out.join("");
}

function renderFamily(out: string[], f: AnyFamily): void {
  out.push(`# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`);
  switch (f.type) {
    case "counter":
    case "gauge":
      return renderScalars(out, f as Family<CounterSeries> | Family<GaugeSeries>);
    case "histogram":
      return renderHistograms(out, f as Family<HistogramSeries>);
    default: {
      const never: never = f.type;
      return never;
    }
  }
}

function renderScalars(out: string[], f: Family<CounterSeries> | Family<GaugeSeries>): void {
  for (const s of f.series()) out.push(`${f.name}${braces(s.labels)} ${formatSampleValue(s.value)}\n`);
}

function renderHistograms(out: string[], f: Family<HistogramSeries>): void {
  for (const s of f.series()) {
    const sep = s.labels.length > 0 ? `${s.labels},` : "";
    let cumulative = 0;
    for (let i = 0; i < s.bounds.length; i++) {
      cumulative += s.counts[i]!;
      out.push(`${f.name}_bucket{${sep}le="${formatSampleValue(s.bounds[i]!)}"} ${formatSampleValue(cumulative)}\n`);
    }
    cumulative += s.counts[s.bounds.length]!;
    out.push(`${f.name}_bucket{${sep}le="+Inf"} ${formatSampleValue(cumulative)}\n`);
    out.push(`${f.name}_sum${braces(s.labels)} ${formatSampleValue(s.sum)}\n`);
    out.push(`${f.name}_count${braces(s.labels)} ${formatSampleValue(s.count)}\n`);
  }
}

function braces(labels: string): string {
  return labels.length > 0 ? `{${labels}}` : "";
}
