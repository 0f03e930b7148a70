// Rebuild/resync/move progress per pool, fed by the copied-byte counts of SDS heartbeat reports:
// bytes copied per running copy, a sliding-window rate, the bytes finished in the current work
// episode (for a percentage), and stall detection (work pending, no progress for the stall
// timeout). In memory only: after an MDM restart the next reports rebuild it, and a copy's
// progress simply restarts at what its primary reports.
// Invariants: per copy, copied bytes only grow within one (extent, epoch, target) key; the
// sample list of a pool holds only samples inside the window and at most
// MAX_SAMPLES_PER_POOL of them; a stall is reported once per episode of no progress.

import { Limits } from "../../proto/limits.ts";

const MAX_SAMPLES_PER_POOL = 1024;

interface CopyProgress {
  poolId: string;
  copiedBytes: number;
  totalBytes: number;
}

interface Sample {
  atMs: number;
  bytes: number;
}

interface Episode {
  sinceMs: number;
  lastProgressMs: number;
  finishedBytes: number;
  stalled: boolean;
}

export interface PoolProgress {
  rateBytesPerSec: number;
  /** bytes of copies finished since recovery work began in this pool */
  finishedBytes: number;
  /** work pending with no progress for the stall timeout */
  stalled: boolean;
  /** ms since the last progress while work is pending (0 when idle) */
  noProgressMs: number;
}

export class RebuildProgress {
  private readonly copies = new Map<string, CopyProgress>();
  private readonly samples = new Map<string, Sample[]>();
  private readonly episodes = new Map<string, Episode>();

  constructor(
    private readonly stallTimeoutMs: number,
    private readonly windowMs: number = Limits.rebuildRateWindowMs,
  ) {}

  /** Key of one running copy: the extent, the epoch it runs under and its target. */
  static copyKey(volumeId: string, idx: number, epoch: number, targetSdsId: string): string {
    return `${volumeId}/${idx}@${epoch}>${targetSdsId}`;
  }

  /** A heartbeat reported this copy at copiedBytes of totalBytes. */
  report(poolId: string, key: string, copiedBytes: number, totalBytes: number, nowMs: number): void {
    const prev = this.copies.get(key);
    const delta = prev ? copiedBytes - prev.copiedBytes : copiedBytes;
    this.copies.set(key, { poolId, copiedBytes: Math.max(copiedBytes, prev?.copiedBytes ?? 0), totalBytes });
    if (delta > 0) this.progress(poolId, delta, nowMs);
  }

  /** The copy finished and was installed. */
  finished(poolId: string, key: string, totalBytes: number, nowMs: number): void {
    const prev = this.copies.get(key);
    const delta = totalBytes - (prev?.copiedBytes ?? 0);
    this.copies.delete(key);
    if (delta > 0) this.progress(poolId, delta, nowMs);
    const ep = this.episode(poolId, nowMs);
    ep.finishedBytes += totalBytes;
    ep.lastProgressMs = nowMs;
    ep.stalled = false;
  }

  /** Copies that are no longer running (dropped, restarted under a new epoch). */
  retain(running: ReadonlySet<string>): void {
    for (const k of this.copies.keys()) if (!running.has(k)) this.copies.delete(k);
  }

  copy(key: string): { copiedBytes: number; totalBytes: number } | undefined {
    return this.copies.get(key);
  }

  /** A new copy started: that counts as progress for stall detection. */
  started(poolId: string, nowMs: number): void {
    const ep = this.episode(poolId, nowMs);
    ep.lastProgressMs = nowMs;
    ep.stalled = false;
  }

  /**
   * Called on every planner tick with whether the pool has recovery work pending; returns the
   * pool's figures and whether a stall began just now (the caller alerts once).
   */
  tick(poolId: string, hasWork: boolean, nowMs: number): { progress: PoolProgress; newlyStalled: boolean } {
    if (!hasWork) {
      this.episodes.delete(poolId);
      return { progress: this.figures(poolId, nowMs), newlyStalled: false };
    }
    const ep = this.episode(poolId, nowMs);
    const stalled = nowMs - ep.lastProgressMs >= this.stallTimeoutMs;
    const newlyStalled = stalled && !ep.stalled;
    ep.stalled = stalled;
    return { progress: this.figures(poolId, nowMs), newlyStalled };
  }

  figures(poolId: string, nowMs: number): PoolProgress {
    const ep = this.episodes.get(poolId);
    const list = this.prune(poolId, nowMs);
    let bytes = 0;
    for (const s of list) bytes += s.bytes;
    const from = Math.max(nowMs - this.windowMs, ep?.sinceMs ?? nowMs - this.windowMs);
    const spanMs = Math.max(1000, nowMs - from);
    return {
      rateBytesPerSec: Math.round((bytes * 1000) / spanMs),
      finishedBytes: ep?.finishedBytes ?? 0,
      stalled: ep?.stalled ?? false,
      noProgressMs: ep ? nowMs - ep.lastProgressMs : 0,
    };
  }

  private episode(poolId: string, nowMs: number): Episode {
    let ep = this.episodes.get(poolId);
    if (!ep) {
      ep = { sinceMs: nowMs, lastProgressMs: nowMs, finishedBytes: 0, stalled: false };
      this.episodes.set(poolId, ep);
    }
    return ep;
  }

  private progress(poolId: string, bytes: number, nowMs: number): void {
    const list = this.prune(poolId, nowMs);
    const last = list[list.length - 1];
    if (last && (last.atMs === nowMs || list.length >= MAX_SAMPLES_PER_POOL)) last.bytes += bytes;
    else list.push({ atMs: nowMs, bytes });
    const ep = this.episode(poolId, nowMs);
    ep.lastProgressMs = nowMs;
    ep.stalled = false;
  }

  private prune(poolId: string, nowMs: number): Sample[] {
    let list = this.samples.get(poolId);
    if (!list) {
      list = [];
      this.samples.set(poolId, list);
    }
    let drop = 0;
    while (drop < list.length && list[drop]!.atMs <= nowMs - this.windowMs) drop++;
    if (drop > 0) list.splice(0, drop);
    return list;
  }
}
