// Sliding-window rates of one reporter's (SDS or SDC) cumulative counters, the math under the
// PowerFlex Bwc triplets, /api/pf/live and the history ring. A reporter keeps a small ring of
// report times; each of its series (one object: a volume, a device, the reporter itself) keeps
// the accumulated deltas at those times. A rate over W ms is the accumulated difference between
// the newest slot and the newest slot at least W ms older (or the oldest one kept), divided by
// their time difference: exact over that span, whatever the heartbeat phase.
//
// Invariants: accumulated values never decrease (deltas are clamped at 0 before they get here);
// slots are at least Limits.ioWindowMinSlotMs apart (a faster reporter, e.g. an SDS heart-
// beating every 250 ms during a rebuild, folds its reports into the newest slot), so
// Limits.ioWindowSlots slots always reach back over the Bwc window; memory per series is fixed
// (slots x channels), never per IO.

import { assert } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";

/** Report times of one reporter, shared by all its series. */
export class ReportClock {
  readonly timesMs = new Float64Array(Limits.ioWindowSlots);
  /** index of the newest slot; -1 before the first report */
  head = -1;
  /** slots in use (<= Limits.ioWindowSlots) */
  filled = 0;

  /**
   * Record a report at nowMs: a new slot, or, while the newest slot is younger than
   * Limits.ioWindowMinSlotMs after the one before it, the newest slot moved forward to nowMs.
   */
  advance(nowMs: number): void {
    if (this.filled >= 2) {
      const before = (this.head - 1 + Limits.ioWindowSlots) % Limits.ioWindowSlots;
      if (nowMs - (this.timesMs[before] ?? 0) < Limits.ioWindowMinSlotMs) {
        this.timesMs[this.head] = nowMs;
        return;
      }
    }
    this.head = (this.head + 1) % Limits.ioWindowSlots;
    this.timesMs[this.head] = nowMs;
    this.filled = Math.min(this.filled + 1, Limits.ioWindowSlots);
  }

  latestMs(): number {
    return this.head < 0 ? 0 : (this.timesMs[this.head] ?? 0);
  }

  /** The slot the window of windowMs starts at: newest with time <= latest - windowMs, else the oldest. -1 when fewer than 2 slots. */
  windowStart(windowMs: number): number {
    if (this.filled < 2) return -1;
    const slots = Limits.ioWindowSlots;
    const edge = this.latestMs() - windowMs;
    let oldest = this.head;
    for (let k = 1; k < this.filled; k++) {
      const i = (this.head - k + slots) % slots;
      oldest = i;
      if ((this.timesMs[i] ?? 0) <= edge) return i;
    }
    return oldest;
  }
}

/** Accumulated deltas of one object under one reporter, at the reporter's slots. */
export class SeriesWindow {
  /** accumulated deltas at each slot, slot-major: [slot * channels + channel] */
  private readonly acc: Float64Array;
  /** accumulated deltas now (equals the newest slot after commit) */
  readonly total: Float64Array;
  /** reports in a row this series was absent from (pruned by its owner) */
  absentReports = 0;

  constructor(
    readonly clock: ReportClock,
    readonly channels: number,
  ) {
    this.acc = new Float64Array(Limits.ioWindowSlots * channels);
    this.total = new Float64Array(channels);
  }

  /** Add a delta (all >= 0) before commit(). */
  add(delta: ArrayLike<number>): void {
    for (let c = 0; c < this.channels; c++) {
      const d = delta[c] ?? 0;
      assert(d >= 0, "IO deltas are never negative");
      this.total[c] = (this.total[c] ?? 0) + d;
    }
  }

  /**
   * Write the running total into the clock's newest slot. Call after clock.advance for every
   * series of the reporter, present in the report or not, so that every slot of the ring is
   * rewritten as it cycles. A series created later keeps zeros in its older slots: "no IO
   * before", which is what a new series (its counters began at zero) has seen.
   */
  commit(): void {
    this.acc.set(this.total, this.clock.head * this.channels);
  }

  /**
   * Add this series' rates per second over the last windowMs (measured back from the reporter's
   * newest report) into out[channel]. Adds nothing while the reporter has fewer than two slots
   * or has been silent for longer than staleMs (its IO is unknown, counted as none).
   */
  addRates(out: Float64Array, nowMs: number, windowMs: number, staleMs: number): void {
    const start = this.clock.windowStart(windowMs);
    if (start < 0) return;
    const latest = this.clock.latestMs();
    if (nowMs - latest > staleMs) return;
    const spanS = (latest - (this.clock.timesMs[start] ?? latest)) / 1000;
    if (spanS <= 0) return;
    const head = this.clock.head * this.channels;
    const from = start * this.channels;
    for (let c = 0; c < this.channels; c++) {
      out[c] = (out[c] ?? 0) + ((this.acc[head + c] ?? 0) - (this.acc[from + c] ?? 0)) / spanS;
    }
  }
}
