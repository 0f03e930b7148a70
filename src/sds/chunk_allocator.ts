// Free-space map of one SDS device at thin-chunk granularity (Limits.thinChunkBytes). Pure, in
// memory, O(chunks) bytes: one state byte per chunk plus a stack of clean free chunks.
//
// Chunk states:
//   CLEAN    free and known to read as zeros (may be handed out at once);
//   USED     mapped to some extent chunk;
//   DIRTY    freed (TRIM, extent unassigned) but still holding old data: must be zeroed and
//            the zeros made durable before it is CLEAN again;
//   VIRGIN   never used by pf on a device whose original content is unknown (an existing block
//            device or file): must be zeroed on first use. Virgin chunks are exactly the ones at
//            or above `zeroedBelow`, handed out in increasing order so that one watermark
//            persists them.
//
// Busy chunks: a write in flight off the event loop (a copy frame, extent_store.ts
// writeOwnedAsync) holds its chunk; a free() of a held chunk is deferred until the last hold
// ends, so the chunk cannot turn DIRTY (the cleaner would zero it while the write still lands,
// then hand out a "clean" chunk holding data) nor be handed out again meanwhile.
//
// Invariants: a chunk is in exactly one state; the clean stack holds exactly the CLEAN chunks;
// allocate() never returns a USED chunk; counts always add up to chunkCount; a held chunk stays
// USED until its last hold ends.

import { assert } from "../proto/errors.ts";

const CLEAN = 0;
const USED = 1;
const DIRTY = 2;
const VIRGIN = 3;

export type Allocation =
  | { phys: number; zeroFirst: false }
  /** the caller must zero the chunk (and make the zeros durable) before mapping it */
  | { phys: number; zeroFirst: true; was: "dirty" | "virgin" };

export class ChunkAllocator {
  private readonly state: Uint8Array;
  private cleanStack: Uint32Array;
  private cleanCount = 0;
  private dirtyCount = 0;
  private usedCount = 0;
  private zeroedBelowChunk: number;
  private dirtyTakenCount = 0;
  /** chunks with writes in flight off the loop (hold/unhold), and those freed meanwhile */
  private readonly holds = new Map<number, number>();
  private readonly freeWhenUnheld = new Set<number>();

  /** Every chunk starts CLEAN below zeroedBelow and VIRGIN above; load() then marks the rest. */
  constructor(
    readonly chunkCount: number,
    zeroedBelow: number,
  ) {
    assert(chunkCount >= 0 && zeroedBelow >= 0 && zeroedBelow <= chunkCount, "allocator bounds");
    this.state = new Uint8Array(chunkCount);
    this.cleanStack = new Uint32Array(chunkCount);
    this.zeroedBelowChunk = zeroedBelow;
    this.state.fill(VIRGIN, zeroedBelow);
    // push in reverse so low chunks are handed out first
    for (let i = zeroedBelow - 1; i >= 0; i--) this.cleanStack[this.cleanCount++] = i;
  }

  get zeroedBelow(): number {
    return this.zeroedBelowChunk;
  }
  /** grows whenever a dirty chunk is handed out (the cleaner detects reuse during its zeroing) */
  get dirtyTaken(): number {
    return this.dirtyTakenCount;
  }
  get used(): number {
    return this.usedCount;
  }
  /** free chunks known to read as zeros (allocate() hands these out first, no zeroing needed) */
  get clean(): number {
    return this.cleanCount;
  }
  get dirty(): number {
    return this.dirtyCount;
  }
  /** chunks that can still be allocated (clean + dirty + virgin) */
  get available(): number {
    return this.chunkCount - this.usedCount;
  }

  /** Load persisted state: mark chunks USED or DIRTY (call before any allocate). */
  markLoaded(used: Iterable<number>, dirty: Iterable<number>): void {
    for (const p of used) this.setFromFree(p, USED);
    for (const p of dirty) this.setFromFree(p, DIRTY);
    this.rebuildCleanStack();
  }

  /** Take a chunk: clean first, then virgin (in order), then a dirty one; null when full. */
  allocate(): Allocation | null {
    if (this.cleanCount > 0) {
      const phys = this.cleanStack[--this.cleanCount]!;
      assert(this.state[phys] === CLEAN, "clean stack holds a non-clean chunk");
      this.state[phys] = USED;
      this.usedCount++;
      return { phys, zeroFirst: false };
    }
    if (this.zeroedBelowChunk < this.chunkCount) {
      const phys = this.zeroedBelowChunk++;
      assert(this.state[phys] === VIRGIN, "virgin watermark points at a used chunk");
      this.state[phys] = USED;
      this.usedCount++;
      return { phys, zeroFirst: true, was: "virgin" };
    }
    const phys = this.firstDirty();
    if (phys < 0) return null;
    this.state[phys] = USED;
    this.dirtyCount--;
    this.dirtyTakenCount++;
    this.usedCount++;
    return { phys, zeroFirst: true, was: "dirty" };
  }

  /** Undo an allocate() whose persistence failed: the chunk returns to its former pool. */
  unallocate(a: Allocation): void {
    assert(this.state[a.phys] === USED, "unallocate of a chunk that is not used");
    this.usedCount--;
    if (!a.zeroFirst) {
      this.state[a.phys] = CLEAN;
      this.cleanStack[this.cleanCount++] = a.phys;
    } else if (a.was === "virgin" && a.phys === this.zeroedBelowChunk - 1) {
      this.state[a.phys] = VIRGIN;
      this.zeroedBelowChunk--;
    } else {
      this.state[a.phys] = DIRTY;
      this.dirtyCount++;
    }
  }

  /** A write into this used chunk is in flight off the loop: a free() waits for unhold(). */
  hold(phys: number): void {
    assert(this.state[phys] === USED, "hold of a chunk that is not used");
    this.holds.set(phys, (this.holds.get(phys) ?? 0) + 1);
  }

  /** A hold ended; true when that completed a deferred free (the chunk is DIRTY now: kick the cleaner). */
  unhold(phys: number): boolean {
    const n = (this.holds.get(phys) ?? 0) - 1;
    if (n > 0) {
      this.holds.set(phys, n);
      return false;
    }
    this.holds.delete(phys);
    if (!this.freeWhenUnheld.delete(phys)) return false;
    this.free(phys);
    return true;
  }

  /** A used chunk is released: it holds old data until zeroed (deferred while held). */
  free(phys: number): void {
    assert(this.state[phys] === USED, "free of a chunk that is not used");
    if (this.holds.has(phys)) {
      assert(!this.freeWhenUnheld.has(phys), "free of a chunk already freed");
      this.freeWhenUnheld.add(phys);
      return;
    }
    this.state[phys] = DIRTY;
    this.usedCount--;
    this.dirtyCount++;
  }

  /** A dirty chunk was zeroed durably. */
  cleaned(phys: number): void {
    if (this.state[phys] !== DIRTY) return; // reallocated meanwhile (zeroed on demand)
    this.state[phys] = CLEAN;
    this.dirtyCount--;
    this.cleanStack[this.cleanCount++] = phys;
  }

  /** Up to `max` dirty chunks (for the background cleaner). */
  dirtyChunks(max: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.chunkCount && out.length < max && out.length < this.dirtyCount; i++) {
      if (this.state[i] === DIRTY) out.push(i);
    }
    return out;
  }

  isUsed(phys: number): boolean {
    return this.state[phys] === USED;
  }

  private firstDirty(): number {
    if (this.dirtyCount === 0) return -1;
    for (let i = 0; i < this.chunkCount; i++) if (this.state[i] === DIRTY) return i;
    return -1;
  }

  private setFromFree(p: number, s: number): void {
    assert(Number.isInteger(p) && p >= 0 && p < this.chunkCount, `persisted chunk ${p} outside the device`);
    // the watermark is persisted with every virgin allocation, so persisted chunks lie below it
    assert(this.state[p] === CLEAN, `persisted chunk ${p} listed twice or above the zeroed watermark`);
    this.state[p] = s;
    if (s === USED) this.usedCount++;
    else this.dirtyCount++;
  }

  private rebuildCleanStack(): void {
    this.cleanCount = 0;
    for (let i = this.chunkCount - 1; i >= 0; i--) if (this.state[i] === CLEAN) this.cleanStack[this.cleanCount++] = i;
  }
}
