// The recovery step's worklist: which extents that need attention the next step loads and plans.
// A step used to load and plan every extent of every down SDS, then persist a capped prefix of the
// plan: at 1,000 SDSs x 100,000 volumes with 100 SDSs down that was 6 s of CPU per step for 4,096
// changes, every step, until the last extent was repaired (docs/design.md "MDM at scale").
// Now each step reads the next slice of attention extents' keys (keyset pages over covering
// indexes: each down SDS's copies as primary, then as secondary, then the attention index), loads
// and plans those extents, plus every extent with a running copy (the copy budget counts those, so the budget seen
// by a slice is the whole pool's). A pass starts again when it is done or when an SDS or a device
// changed state (the signature of the SDS views), so a new loss is answered at the next step.
//
// Invariants: a slice never holds more than `maxSlice` keys (the step's work is bounded by it and
// by the copies running, themselves bounded by the copy budget; no step lists a whole pass); the
// keys of extents with an in-sync copy on a down SDS or a failed device (failover candidates) come first in a pass, and
// in the first pass after a change of signature a slice starts no copy while failover candidates
// are left unexamined (IO waits for failovers, not for copies); every extent that needs attention
// throughout a pass is examined in it (or the pass is restarted by a change).
// The slice size is bounded by time too: it halves after a step dearer than STEP_BUDGET_MS and
// doubles (up to maxSlice) after one cheaper than half of it.

import type { SdsView } from "./target_placement.ts";

export interface ExtentKeyRef {
  volumeId: string;
  idx: number;
}

/** One kind of attention extent, read in key order a page at a time (keyset: no offset); T: what
 *  a page holds for each extent (its key at least: the recovery step reads whole rows). */
export interface KeySource<T extends ExtentKeyRef = ExtentKeyRef> {
  /** its extents have an in-sync copy on a down SDS or a failed device */
  failover: boolean;
  /** at most n extents after the key `after` (null: from the first), in key order */
  page(after: ExtentKeyRef | null, n: number): T[];
}

/** most attention extents one step loads and plans (besides the copies running) */
export const MAX_EXTENTS_PER_STEP = 4096;
/** fewest a step loads when steps are dear (the slice halves down to this): a step has a fixed
 *  cost besides its slice (the running copies, the SDS views: ~40 ms at 1,000 SDSs with 1,200
 *  copies running), so small slices make a pass dear in all for little gain in hold time */
export const MIN_EXTENTS_PER_STEP = 1024;
/** the loop time a step aims at: a slice that cost more is halved for the next step (heartbeats
 *  come every 1 s and time out after 5 s: a hold of this size delays a beat, it loses none) */
export const STEP_BUDGET_MS = 150;

export interface Slice<T extends ExtentKeyRef = ExtentKeyRef> {
  keys: T[];
  /** this slice is not the whole attention set (a pass takes several steps) */
  partial: boolean;
  /** copy starts of this slice wait: failover candidates of this pass are not all examined yet */
  holdStarts: boolean;
  /** this slice ends its pass (the next step starts a new one) */
  passDone: boolean;
  /** the first slice of a pass */
  firstOfPass: boolean;
  /** failover sources (down SDSs' copies, failed devices) of the first pass after a change not read to their end yet (0 in later passes) */
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
  private sources: KeySource[] = [];
  private at = 0;
  private cursor: ExtentKeyRef | null = null;
  private done = true;
  private signature: string | null = null;
  /** passes started since the signature last changed (0: the first one is running) */
  private passOfSignature = 0;
  private sliceSize: number;
  /** passes started (tests, bench) */
  passes = 0;
  /** the position before the last next() (again()) */
  private before: { passes: number; sources: KeySource[]; at: number; cursor: ExtentKeyRef | null; done: boolean; signature: string | null; passOfSignature: number } | null = null;

  constructor(private maxSlice = MAX_EXTENTS_PER_STEP) {
    this.sliceSize = maxSlice;
  }

  /** Bound the slices to n keys (tests: a small cluster with passes of several steps). */
  setMaxSlice(n: number): void {
    this.maxSlice = Math.max(1, Math.floor(n));
    this.sliceSize = Math.min(this.sliceSize, this.maxSlice);
  }

  /**
   * The next slice; starts a new pass (sources from `sourcesOf`, failover sources first) when the
   * last one is done or `sds` changed state. A key held by two sources (both copies of an extent
   * on down SDSs) is in two slices: planning it again is planning an extent the step before changed.
   */
  next<T extends ExtentKeyRef>(sds: readonly SdsView[], sourcesOf: (sds: readonly SdsView[]) => KeySource<T>[]): Slice<T> {
    this.before = { passes: this.passes, sources: this.sources, at: this.at, cursor: this.cursor, done: this.done, signature: this.signature, passOfSignature: this.passOfSignature };
    const sig = viewSignature(sds);
    const firstOfPass = sig !== this.signature || this.done;
    if (firstOfPass) {
      this.passOfSignature = sig === this.signature ? this.passOfSignature + 1 : 0;
      this.signature = sig;
      this.sources = [...sourcesOf(sds)].sort((a, b) => Number(b.failover) - Number(a.failover));
      this.at = 0;
      this.cursor = null;
      this.done = false;
      this.passes++;
    }
    const sources = this.sources as KeySource<T>[];
    const keys: T[] = [];
    while (this.at < sources.length && keys.length < this.sliceSize) {
      const want = this.sliceSize - keys.length;
      const page = sources[this.at]!.page(this.cursor, want);
      for (const k of page) keys.push(k);
      if (page.length < want) {
        this.at++;
        this.cursor = null;
      } else {
        const last = page[page.length - 1]!;
        this.cursor = { volumeId: last.volumeId, idx: last.idx };
      }
    }
    // a source read to exactly its last key is known to be done only at the next read: look ahead
    while (this.at < this.sources.length && this.cursor !== null && this.sources[this.at]!.page(this.cursor, 1).length === 0) {
      this.at++;
      this.cursor = null;
    }
    this.done = this.at >= this.sources.length;
    let failoversLeft = 0;
    if (this.passOfSignature === 0) for (let i = this.at; i < this.sources.length; i++) if (this.sources[i]!.failover) failoversLeft++;
    const partial = !(firstOfPass && this.done);
    return { keys, partial, holdStarts: partial && failoversLeft > 0, passDone: this.done, firstOfPass, failoversLeft };
  }

  /**
   * Offer the last slice again at the next step (its step could not persist all of its membership
   * repairs: the commit's change cap). Moving on would leave those failovers to the next pass,
   * after the whole attention index, with copy starts no longer held for them. Each step persists
   * some repairs of the slice, so a slice is offered again only a bounded number of times.
   */
  again(): void {
    const b = this.before;
    if (b === null) return;
    this.sources = b.sources;
    this.at = b.at;
    this.cursor = b.cursor;
    this.done = b.done;
    this.signature = b.signature;
    this.passOfSignature = b.passOfSignature;
    this.passes = b.passes;
    this.before = null;
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
}

/** A source over keys already listed (tests). */
export function listedSource<T extends ExtentKeyRef>(keys: readonly T[], failover: boolean): KeySource<T> {
  const sorted = [...keys].sort((a, b) => (a.volumeId < b.volumeId ? -1 : a.volumeId > b.volumeId ? 1 : a.idx - b.idx));
  return {
    failover,
    page(after, n) {
      let i = 0;
      if (after !== null) while (i < sorted.length && (sorted[i]!.volumeId < after.volumeId || (sorted[i]!.volumeId === after.volumeId && sorted[i]!.idx <= after.idx))) i++;
      return sorted.slice(i, i + n);
    },
  };
}
