// The MDM's own short IO history for the dashboard (GET /api/pf/history): one system-wide sample
// a second, in a fixed-size ring preallocated at start (Limits.historySamples = 10 minutes),
// so the charts work without a Prometheus server. Samples come from the same windows as the
// Bwc statistics, over the last report interval (about 1 s), not the 5 s Bwc window.
// Invariants: memory is fixed (no allocation per sample); samples are returned oldest first;
// a sample's time never goes backwards (a clock step back replaces nothing, it is skipped).

import { Limits } from "../../proto/limits.ts";

export const HISTORY_FIELDS = ["readIops", "writeIops", "readBps", "writeBps", "readLatencyUs", "writeLatencyUs", "rebuildBps", "rebalanceBps"] as const;
export type HistoryField = (typeof HISTORY_FIELDS)[number];
export type HistorySample = { t: number } & Record<HistoryField, number>;

const F = HISTORY_FIELDS.length;

export class IoHistory {
  private readonly timesMs: Float64Array;
  private readonly values: Float64Array;
  private head = -1;
  private filled = 0;

  constructor(readonly capacity: number = Limits.historySamples) {
    this.timesMs = new Float64Array(capacity);
    this.values = new Float64Array(capacity * F);
  }

  get size(): number {
    return this.filled;
  }

  push(sample: HistorySample): void {
    if (this.filled > 0 && sample.t <= (this.timesMs[this.head] ?? 0)) return;
    this.head = (this.head + 1) % this.capacity;
    this.timesMs[this.head] = sample.t;
    this.filled = Math.min(this.filled + 1, this.capacity);
    const base = this.head * F;
    for (let i = 0; i < F; i++) this.values[base + i] = sample[HISTORY_FIELDS[i]!];
  }

  /** Samples taken within the last `seconds` before nowMs, oldest first. */
  since(nowMs: number, seconds: number): HistorySample[] {
    const out: HistorySample[] = [];
    const from = nowMs - seconds * 1000;
    for (let k = this.filled - 1; k >= 0; k--) {
      const i = (this.head - k + this.capacity) % this.capacity;
      const t = this.timesMs[i] ?? 0;
      if (t <= from) continue;
      const s = { t } as HistorySample;
      for (let f = 0; f < F; f++) s[HISTORY_FIELDS[f]!] = this.values[i * F + f] ?? 0;
      out.push(s);
    }
    return out;
  }
}
