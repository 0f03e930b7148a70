// The recovery step's worklist: which extents that need attention the next step loads and plans.
// A step used to load and plan every extent of every down SDS, then persist a capped prefix of the
// plan: at 1,000 SDSs x 100,000 volumes with 100 SDSs down that was 6 s of CPU per step for 4,096
// changes, every step, until the last extent was repaired (docs/design.md "MDM at scale").
// Now the keys of the attention extents are listed once per pass (covering index reads, two
// integers and a string per extent: no row, no plan), and each step loads and plans the next slice
// of them, plus every extent with a running copy (the copy budget counts those, so the budget seen
// by a slice is the whole pool's). A pass starts again when it is done or when an SDS or a device
// changed state (the signature of the SDS views), so a new loss is answered at the next step.
//
// Invariants: a slice never holds more than `maxSlice` keys (the step's work is bounded by it and
// by the copies running, themselves bounded by the copy budget); the keys of extents with an
// in-sync copy on a down SDS or a failed device (failover candidates) come first in a pass, and
// in the first pass after a change of signature a slice starts no copy while failover candidates
// are left unexamined (IO waits for failovers, not for copies); every extent that needs attention
// when a pass is listed is examined in that pass (or the pass is restarted by a change).
// The slice size is bounded by time too: it halves after a step dearer than STEP_BUDGET_MS and
// doubles (up to maxSlice) after one cheaper than half of it.

import type { SdsView } from "./target_placement.ts";

export interface ExtentKeyRef {
  volumeId: string;
  idx: number;
}

/** a pass: the keys in order, the first failoverCount of them failover candidates */
export interface ListedKeys {
  keys: ExtentKeyRef[];
  failoverCount: number;
}

/** most attention extents one step loads and plans (besides the copies running) */
export const MAX_EXTENTS_PER_STEP = 4096;
/** fewest a step loads when steps are dear (the slice halves down to this) */
export const MIN_EXTENTS_PER_STEP = 256;
/** the loop time a step aims at: a slice that cost more is halved for the next step */
export const STEP_BUDGET_MS = 80;

export interface Slice {
  keys: ExtentKeyRef[];
  /** this slice is not the whole attention set (a pass takes several steps) */
  partial: boolean;
  /** copy starts of this slice wait: failover candidates of this pass are not all examined yet */
  holdStarts: boolean;
  /** keys of this pass after this slice */
  left: number;
  /** the first slice of a pass */
  firstOfPass: boolean;
  /** failover candidates of the first pass after a change not examined yet (0 in later passes) */
  failoversLeft: number;
}

/** A signature of the SDS views the worklist answers: which SDSs are down and which devices failed. */
export function viewSignature(sds: readonly SdsView[]): string {
  let out = "";
  for (const s of sds) {
    if (!s.connected) out += `d${s.sdsId};`;
    for (const d of s.devices) if (d.failed) out += `f${d.deviceId};`;
  }
  return out;
}

export class RecoveryWorklist {
  private keys: ExtentKeyRef[] = [];
  private pos = 0;
  private failoverCount = 0;
  private signature: string | null = null;
  /** passes listed since the signature last changed (0: the first one is running) */
  private passOfSignature = 0;
  private sliceSize: number;
  /** passes listed (tests, bench) */
  passes = 0;

  constructor(private maxSlice = MAX_EXTENTS_PER_STEP) {
    this.sliceSize = maxSlice;
  }

  /** Bound the slices to n keys (tests: a small cluster with passes of several steps). */
  setMaxSlice(n: number): void {
    this.maxSlice = Math.max(1, Math.floor(n));
    this.sliceSize = Math.min(this.sliceSize, this.maxSlice);
  }

  /** The next slice; lists a new pass when the last one is done or `sds` changed state. */
  next(sds: readonly SdsView[], list: (sds: readonly SdsView[]) => ListedKeys): Slice {
    const sig = viewSignature(sds);
    if (sig !== this.signature || this.pos >= this.keys.length) {
      this.passOfSignature = sig === this.signature ? this.passOfSignature + 1 : 0;
      this.signature = sig;
      const listed = list(sds);
      this.keys = listed.keys;
      this.failoverCount = listed.failoverCount;
      this.pos = 0;
      this.passes++;
    }
    const start = this.pos;
    const keys = this.keys.slice(start, start + this.sliceSize);
    this.pos = start + keys.length;
    const partial = !(start === 0 && this.pos >= this.keys.length);
    const failoversLeft = this.passOfSignature === 0 ? Math.max(0, this.failoverCount - this.pos) : 0;
    return { keys, partial, holdStarts: partial && failoversLeft > 0, left: this.keys.length - this.pos, firstOfPass: start === 0, failoversLeft };
  }

  /** The step that planned the last slice cost costMs of loop time: size the next slice by it. */
  noteCost(costMs: number): void {
    if (costMs > STEP_BUDGET_MS) this.sliceSize = Math.max(Math.min(MIN_EXTENTS_PER_STEP, this.maxSlice), Math.floor(this.sliceSize / 2));
    else if (costMs < STEP_BUDGET_MS / 2) this.sliceSize = Math.min(this.maxSlice, this.sliceSize * 2);
  }

  /** the size the next slice will have at most */
  get nextSliceSize(): number {
    return this.sliceSize;
  }

  /** Forget the pass (a restarted MDM life, a takeover): the next step lists a new one. */
  reset(): void {
    this.keys = [];
    this.pos = 0;
    this.signature = null;
  }
}
