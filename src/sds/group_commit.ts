// Group commit for one durable thing an SDS writes through the kernel (a device, its metadata
// WAL): every caller that needs "everything written so far is durable" waits for ONE sync that
// started after its request, and any number of callers share that sync. At most maxSyncs syncs run
// per target (Limits.groupCommitMaxSyncs); callers that arrive while that many run wait for the
// next one, which starts as soon as one ends (no timer: at queue depth 1 a batch holds one write
// and costs one sync; at depth 16 the batch grows by itself while the earlier syncs run). The sync itself runs off the
// event loop (the target's business: node:fs fdatasync on the thread pool).
//
// Invariants:
// - a waiter is told OK only by a sync that started after its request(), or, when nothing was
//   written since the last sync started, by that sync (it already covers every earlier write);
//   with nothing written since a sync that completed, at once;
// - every waiter is told exactly once; after a failed sync every waiter of that batch, and every
//   later one, is told it failed (Linux may drop the pages a failed fdatasync could not write:
//   a later sync succeeding would not mean those writes are durable);
// - no allocation per waiter: batch arrays are recycled (one small object per sync).

import { Limits } from "../proto/limits.ts";
import type { BlockDevice } from "../store/block_device.ts";
import type { SdsMeta } from "../store/sds_meta.ts";

/** What group commit makes durable: the target tracks whether anything was written since its last sync began. */
export interface CommitTarget {
  /** something was written since the last sync began */
  readonly dirty: boolean;
  /** a sync begins now: clear the dirty mark (writes after this belong to the next sync) */
  clean(): void;
  /** make everything written before clean() durable, off the event loop */
  sync(): Promise<void>;
}

/** PF_GROUP_COMMIT_MAX_SYNCS overrides Limits.groupCommitMaxSyncs for A/B runs. */
const DEFAULT_MAX_SYNCS = Math.max(1, Number(process.env.PF_GROUP_COMMIT_MAX_SYNCS ?? Limits.groupCommitMaxSyncs));

/** Device commits start their syncs at the end of the task (GroupCommit deferStart); PF_GROUP_COMMIT_DEFER=0 turns it off for A/B runs. */
export const DEFER_DEVICE_SYNC_START = process.env.PF_GROUP_COMMIT_DEFER !== "0";
/** Limits.deviceSecondSyncMinBatch; PF_DEVICE_SECOND_SYNC_MIN_BATCH overrides it for A/B runs. */
export const DEVICE_SECOND_SYNC_MIN_BATCH = Math.max(1, Number(process.env.PF_DEVICE_SECOND_SYNC_MIN_BATCH ?? Limits.deviceSecondSyncMinBatch));

export interface CommitWaiter {
  /** every write before the request is durable (ok) or may be lost (not ok); may be called synchronously from request() */
  committed(ok: boolean): void;
}

export interface GroupCommitStats {
  syncs: number;
  waiters: number;
  /** requests answered without a sync of their own (nothing written since a sync that covers them) */
  covered: number;
  maxBatch: number;
  /** syncs asked for ahead of any waiter (syncAhead: a FLUSH is expected) */
  ahead: number;
  /** sum over syncs of their time from start to completion as the event loop sees it (µs): the
   * fdatasync itself plus the thread pool's hand-off both ways */
  syncUs: number;
}

/** The waiter of syncAhead(): nobody to tell. */
const NO_WAITER: CommitWaiter = { committed: () => {} };

/** One sync in flight and the waiters it answers. */
interface InFlightSync {
  waiters: CommitWaiter[];
  startMs: number;
}

export class GroupCommit {
  private failedWith: unknown = null;
  /** syncs in flight, in the order they started */
  private readonly inFlight: InFlightSync[] = [];
  /** waiters of the next sync */
  private next: CommitWaiter[] = [];
  private readonly spare: CommitWaiter[][] = [];
  readonly stats: GroupCommitStats = { syncs: 0, waiters: 0, covered: 0, maxBatch: 0, ahead: 0, syncUs: 0 };

  /** a start is queued for the end of this task (deferStart) */
  private startQueued = false;
  private readonly startTask = (): void => this.queuedStart();

  constructor(
    private readonly target: CommitTarget,
    /** for error messages */
    readonly name: string,
    private readonly onError: (err: unknown) => void = () => {},
    /** syncs allowed in flight at once (a later one covers the writes made while earlier ones run) */
    private readonly maxSyncs: number = DEFAULT_MAX_SYNCS,
    /**
     * Start a sync that a request calls for at the end of the current task (a microtask) instead of
     * inside request(): every write the event loop makes in that task (all frames of one socket read)
     * joins it, and the replies or forwards those frames queued go to their sockets first (they
     * were queued earlier in the same task). Without it the first request of a task starts a sync
     * that covers that one write and the rest of the task's writes wait for the next.
     */
    private readonly deferStart: boolean = false,
    /**
     * With a sync running, another starts only for a batch of at least this many waiters; a
     * smaller one waits for the running sync to end (with writes spread over many devices, two
     * syncs of two or three writes each cost more syncs per IO than they save in waiting).
     */
    private readonly overlapMinBatch: number = 1,
  ) {}

  /** True once a sync failed: nothing on this target can be made durable any more. */
  get failed(): boolean {
    return this.failedWith !== null;
  }

  /** True while a sync runs or waiters wait for one. */
  get busy(): boolean {
    return this.inFlight.length > 0 || this.next.length > 0;
  }

  /** Tell `w` once every write made before this call is durable. */
  request(w: CommitWaiter): void {
    this.stats.waiters++;
    if (this.failedWith !== null) return w.committed(false);
    if (!this.target.dirty) {
      // nothing written since the newest sync began: it covers every earlier write (waiters of
      // a next sync exist only while something is dirty)
      this.stats.covered++;
      const last = this.inFlight[this.inFlight.length - 1];
      if (last !== undefined) last.waiters.push(w);
      else w.committed(true);
      return;
    }
    this.next.push(w);
    if (this.mayStart()) this.startOrQueue();
  }

  /** a sync may start for the waiting batch now: none runs, or one more is allowed and the batch is big enough */
  private mayStart(): boolean {
    const n = this.inFlight.length;
    return n === 0 || (n < this.maxSyncs && this.next.length >= this.overlapMinBatch);
  }

  private startOrQueue(): void {
    if (!this.deferStart) return this.start();
    if (this.startQueued) return;
    this.startQueued = true;
    queueMicrotask(this.startTask);
  }

  /** The deferred start: the waiters queued in this task share one sync (unless one runs already). */
  private queuedStart(): void {
    this.startQueued = false;
    if (this.next.length === 0 || !this.mayStart()) return;
    if (this.failedWith !== null) {
      const rest = this.next;
      for (let i = 0; i < rest.length; i++) rest[i]!.committed(false);
      rest.length = 0;
      return;
    }
    this.start();
  }

  /**
   * Make the writes so far durable soon, with nobody waiting yet: a sync starts (at the end of the
   * task with deferStart, or after the running one) as if a waiter had asked. A FLUSH that comes
   * while it runs, with nothing written since it began, joins it instead of starting its own.
   */
  syncAhead(): void {
    if (this.failedWith !== null || !this.target.dirty) return;
    this.stats.ahead++;
    this.next.push(NO_WAITER);
    if (this.mayStart()) this.startOrQueue();
  }

  /** Promise form, for cold paths (FLUSH, allocation): resolves when durable, rejects when the sync failed. */
  whenDurable(): Promise<void> {
    return new Promise((resolve, reject) =>
      this.request({
        committed: (ok) => (ok ? resolve() : reject(this.failedWith ?? new Error(`${this.name}: sync failed`))),
      }),
    );
  }

  private start(): void {
    const batch = this.next;
    this.next = this.spare.pop() ?? [];
    const s: InFlightSync = { waiters: batch, startMs: performance.now() };
    this.inFlight.push(s);
    if (batch.length > this.stats.maxBatch) this.stats.maxBatch = batch.length;
    this.stats.syncs++;
    this.target.clean();
    let p: Promise<void>;
    try {
      p = this.target.sync();
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      () => this.finish(s, null),
      (err: unknown) => this.finish(s, err),
    );
  }

  private finish(s: InFlightSync, err: unknown): void {
    this.stats.syncUs += Math.round((performance.now() - s.startMs) * 1000);
    if (err !== null && this.failedWith === null) {
      this.failedWith = err;
      this.onError(err);
    }
    const ok = this.failedWith === null;
    // still in flight while its waiters are told: one that requests again from its callback with
    // nothing written since joins the newest sync (maybe this one: the loop reaches it), never an
    // array being recycled under this loop
    const batch = s.waiters;
    for (let i = 0; i < batch.length; i++) batch[i]!.committed(ok);
    this.inFlight.splice(this.inFlight.indexOf(s), 1);
    batch.length = 0;
    this.spare.push(batch);
    if (this.next.length === 0) return;
    if (!ok) {
      const rest = this.next;
      for (let i = 0; i < rest.length; i++) rest[i]!.committed(false);
      rest.length = 0;
      return;
    }
    // deferred: the replies the batch just queued reach their sockets before the next sync is handed to the pool
    if (this.mayStart()) this.startOrQueue();
  }
}

/** A device's writes: marked dirty by every write through the kernel, synced with fdatasync (thread pool). */
export class DeviceCommitTarget implements CommitTarget {
  dirty = false;
  constructor(private readonly dev: Pick<BlockDevice, "datasync">) {}
  markWritten(): void {
    this.dirty = true;
  }
  clean(): void {
    this.dirty = false;
  }
  sync(): Promise<void> {
    return this.dev.datasync();
  }
}

/** The SDS's metadata (sqlite WAL): dirty after any commit, synced with fdatasync of the WAL. */
export class MetaCommitTarget implements CommitTarget {
  constructor(private readonly meta: Pick<SdsMeta, "needsSync" | "sync">) {}
  get dirty(): boolean {
    return this.meta.needsSync;
  }
  clean(): void {
    // SdsMeta.sync() clears its own mark synchronously when it begins
  }
  sync(): Promise<void> {
    return this.meta.sync();
  }
}
