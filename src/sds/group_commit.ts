// Group commit for one durable thing an SDS writes through the kernel (a device, its metadata
// WAL): every caller that needs "everything written so far is durable" waits for ONE sync that
// started after its request, and any number of callers share that sync. At most one sync runs
// per target; callers that arrive while it runs wait for the next one, which starts as soon as
// the running one ends (no timer: at queue depth 1 a batch holds one write and costs one sync; at
// depth 16 the batch grows by itself while the previous sync runs). The sync itself runs off the
// event loop (the target's business: node:fs fdatasync on the thread pool).
//
// Invariants:
// - a waiter is told OK only by a sync that started after its request(), or, when nothing was
//   written since the last sync started, by that sync (it already covers every earlier write);
//   with nothing written since a sync that completed, at once;
// - every waiter is told exactly once; after a failed sync every waiter of that batch, and every
//   later one, is told it failed (Linux may drop the pages a failed fdatasync could not write:
//   a later sync succeeding would not mean those writes are durable);
// - no allocation per waiter: batches are two arrays reused in turn.

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
}

export class GroupCommit {
  private running = false;
  private failedWith: unknown = null;
  /** waiters of the sync that runs now */
  private current: CommitWaiter[] = [];
  /** waiters of the next sync */
  private next: CommitWaiter[] = [];
  readonly stats: GroupCommitStats = { syncs: 0, waiters: 0, covered: 0, maxBatch: 0 };
  private readonly onSynced = () => this.finish(null);
  private readonly onFailed = (err: unknown) => this.finish(err);

  constructor(
    private readonly target: CommitTarget,
    /** for error messages */
    readonly name: string,
    private readonly onError: (err: unknown) => void = () => {},
  ) {}

  /** True once a sync failed: nothing on this target can be made durable any more. */
  get failed(): boolean {
    return this.failedWith !== null;
  }

  /** True while a sync runs or waiters wait for one. */
  get busy(): boolean {
    return this.running || this.next.length > 0;
  }

  /** Tell `w` once every write made before this call is durable. */
  request(w: CommitWaiter): void {
    this.stats.waiters++;
    if (this.failedWith !== null) return w.committed(false);
    if (!this.target.dirty) {
      // nothing written since the last sync began: that sync covers every earlier write (waiters
      // of a next sync exist only while something is dirty)
      this.stats.covered++;
      if (this.running) this.current.push(w);
      else w.committed(true);
      return;
    }
    this.next.push(w);
    if (!this.running) this.start();
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
    this.running = true;
    const batch = this.next;
    this.next = this.current; // empty: the previous batch was told and cleared
    this.current = batch;
    if (batch.length > this.stats.maxBatch) this.stats.maxBatch = batch.length;
    this.stats.syncs++;
    this.target.clean();
    let p: Promise<void>;
    try {
      p = this.target.sync();
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(this.onSynced, this.onFailed);
  }

  private finish(err: unknown): void {
    if (err !== null && this.failedWith === null) {
      this.failedWith = err;
      this.onError(err);
    }
    const ok = this.failedWith === null;
    // still "running" while the batch is told: a waiter that requests again from its callback
    // joins this batch (nothing written since this sync began) or the next one, never a batch
    // being swapped under this loop
    const batch = this.current;
    for (let i = 0; i < batch.length; i++) batch[i]!.committed(ok);
    batch.length = 0;
    this.running = false;
    if (this.next.length === 0) return;
    if (!ok) {
      const rest = this.next;
      for (let i = 0; i < rest.length; i++) rest[i]!.committed(false);
      rest.length = 0;
      return;
    }
    this.start();
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
