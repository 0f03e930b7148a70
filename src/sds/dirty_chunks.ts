// The change record of one extent while a copy of it is away: which thin chunks
// (Limits.thinChunkBytes, 1 MiB) were written, trimmed or zeroed since the record started. One
// bit per chunk, allocated only for extents that have a record (an extent of 1 GiB costs 128
// bytes), kept in memory only.
//
// A ChangeRecord pairs the bits with the SDS ids whose copy the record is complete for: the in-sync
// copies that went missing (failed a forwarded write, or were dropped from the replica set) while
// this SDS was the primary, at or after the moment the record started.
//
// Invariants: bits are only ever set, never cleared (a record is a superset of what changed
// since it started, so an interrupted resync can start over from it); the record is dropped
// whole when it is no longer needed or no longer trustworthy (see sds_node.ts).

import { assert } from "../proto/errors.ts";

export class DirtyChunks {
  private readonly bits: Uint32Array;
  private marked = 0;

  constructor(readonly chunkCount: number) {
    this.bits = new Uint32Array(Math.ceil(chunkCount / 32));
  }

  /** Mark chunks first..last (inclusive). */
  mark(first: number, last: number): void {
    assert(first >= 0 && last < this.chunkCount && first <= last, "dirty range outside the extent");
    for (let c = first; c <= last; c++) {
      const w = c >>> 5;
      const b = 1 << (c & 31);
      if ((this.bits[w]! & b) === 0) {
        this.bits[w]! |= b;
        this.marked++;
      }
    }
  }

  has(chunk: number): boolean {
    return (this.bits[chunk >>> 5]! & (1 << (chunk & 31))) !== 0;
  }

  /** number of chunks marked */
  get count(): number {
    return this.marked;
  }

  /** Marked chunk numbers, ascending. */
  list(): number[] {
    const out: number[] = [];
    for (let c = 0; c < this.chunkCount; c++) if (this.has(c)) out.push(c);
    return out;
  }
}

export interface ChangeRecord {
  chunks: DirtyChunks;
  /** copies that miss at most the marked chunks */
  missing: Set<string>;
}
