// A direct writer of the Prometheus text format (0.0.4) for the MDM's large per-object families
// (10,000 volumes x a dozen series): it appends lines to one string instead of building a
// labelled series object per sample, so a scrape costs one pass over the objects. Escaping and
// number formatting are the metrics core's (src/proto/metrics.ts, metrics_text.ts), so both
// writers print alike; the small families (process metrics, build info) still go through the
// core's registry.
//
// Invariants: one HELP and one TYPE line per family, written before its samples and only once
// (a second family() of one name is a broken invariant); counters end in _total and nothing
// else does; label text comes from labels(), which escapes values; every line ends with "\n".

import { assert } from "../../proto/errors.ts";
import { escapeHelp, escapeLabelValue } from "../../proto/metrics.ts";
import { formatSampleValue } from "../../proto/metrics_text.ts";

export type WrittenType = "counter" | "gauge" | "histogram" | "summary";

/** `{a="x",b="y"}` from names and values (values escaped); "" without labels. */
export function labels(names: readonly string[], values: readonly string[]): string {
  assert(names.length === values.length, "label names and values pair up");
  if (names.length === 0) return "";
  let s = "{";
  for (let i = 0; i < names.length; i++) s += `${i > 0 ? "," : ""}${names[i]!}="${escapeLabelValue(values[i]!)}"`;
  return `${s}}`;
}

/** Label text with one more pair appended (e.g. op="read" after a volume's labels). */
export function withLabel(base: string, name: string, value: string): string {
  const pair = `${name}="${escapeLabelValue(value)}"`;
  return base.length === 0 ? `{${pair}}` : `${base.slice(0, -1)},${pair}}`;
}

export class TextWriter {
  private out = "";
  private readonly seen = new Set<string>();

  family(name: string, type: WrittenType, help: string): void {
    assert(!this.seen.has(name), `metric family ${name} written twice`);
    assert(type === "counter" ? name.endsWith("_total") : !name.endsWith("_total"), `metric ${name}: only counters end in _total`);
    this.seen.add(name);
    this.out += `# HELP ${name} ${escapeHelp(help)}\n# TYPE ${name} ${type}\n`;
  }

  /** One sample line; labelText from labels() (or ""). */
  sample(name: string, labelText: string, value: number): void {
    this.out += `${name}${labelText} ${formatSampleValue(value)}\n`;
  }

  /** Text rendered elsewhere (the core registry), appended as is. */
  raw(text: string, familyNames: readonly string[]): void {
    for (const n of familyNames) {
      assert(!this.seen.has(n), `metric family ${n} written twice`);
      this.seen.add(n);
    }
    this.out += text;
  }

  text(): string {
    return this.out;
  }
}
