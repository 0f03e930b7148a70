// The receive side of an NBD connection: a list of the chunks the socket delivered, consumed from
// the front without concatenating them.
//
// Invariants: `length` is the number of unconsumed bytes; chunks are never modified (Bun hands each
// `data` event a fresh Buffer of its own, so a view into one stays valid after the event);
// `take(n)` returns a zero-copy view when the n bytes lie in one chunk and a copy only when they
// span chunks; `takePayload(n)` returns a large WRITE payload that spans chunks as their views.

import { assert } from "../proto/errors.ts";
import { MIN_POOLED_BYTES, takePayload } from "../proto/payload_pool.ts";
import { Scatter, type Bytes } from "../proto/scatter.ts";

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // index of the first chunk holding unconsumed bytes
  private headOff = 0; // bytes already consumed in chunks[head]
  private total = 0;
  /** scratch for headers that straddle two chunks (the caller decodes it before the next call) */
  private readonly scratch: Buffer;

  constructor(maxHeaderBytes: number) {
    this.scratch = Buffer.allocUnsafe(maxHeaderBytes);
  }

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** the last take() returned a buffer of its own (from payload_pool.ts): give it back once unused */
  lastTakeCopied = false;

  /** where the bytes returned by the last peek() start in the returned buffer */
  peekOffset = 0;

  /**
   * n contiguous bytes (n ≤ maxHeaderBytes) without consuming them, starting at `peekOffset` of
   * the returned buffer; valid until the next call (no allocation on the hot path).
   * Precondition: length ≥ n.
   */
  peek(n: number): Buffer {
    assert(n <= this.total && n <= this.scratch.length, "ByteQueue.peek beyond available bytes");
    const first = this.chunks[this.head];
    assert(first !== undefined, "ByteQueue: no head chunk");
    if (first.length - this.headOff >= n) {
      this.peekOffset = this.headOff;
      return first;
    }
    this.copyInto(this.scratch, n);
    this.peekOffset = 0;
    return this.scratch;
  }

  /** Consume n bytes: a view when they lie in one chunk, else a fresh copy. Precondition: length ≥ n. */
  take(n: number): Buffer {
    assert(n <= this.total, "ByteQueue.take beyond available bytes");
    this.lastTakeCopied = false;
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[this.head];
    assert(first !== undefined, "ByteQueue: no head chunk");
    if (first.length - this.headOff >= n) {
      const view = first.subarray(this.headOff, this.headOff + n);
      this.skip(n);
      return view;
    }
    const out = takePayload(n);
    this.copyInto(out, n);
    this.skip(n);
    this.lastTakeCopied = true;
    return out;
  }

  /**
   * Consume n bytes of a WRITE payload: as take(), except that a large payload spanning chunks is
   * returned as views of them (a Scatter: no copy; lastTakeCopied stays false).
   */
  takePayload(n: number): Bytes {
    const first = this.chunks[this.head];
    if (n < MIN_POOLED_BYTES || first === undefined || first.length - this.headOff >= n) return this.take(n);
    assert(n <= this.total, "ByteQueue.takePayload beyond available bytes");
    this.lastTakeCopied = false;
    const pieces: Buffer[] = [];
    let left = n;
    let i = this.head;
    let off = this.headOff;
    while (left > 0) {
      const c = this.chunks[i]!;
      const k = Math.min(left, c.length - off);
      pieces.push(off === 0 && k === c.length ? c : c.subarray(off, off + k));
      left -= k;
      i++;
      off = 0;
    }
    this.skip(n);
    return new Scatter(pieces, n);
  }

  /** Drop n bytes. Precondition: length ≥ n. */
  skip(n: number): void {
    assert(n <= this.total, "ByteQueue.skip beyond available bytes");
    this.total -= n;
    while (n > 0) {
      const c = this.chunks[this.head];
      assert(c !== undefined, "ByteQueue: ran out of chunks while skipping");
      const avail = c.length - this.headOff;
      if (n < avail) {
        this.headOff += n;
        return;
      }
      n -= avail;
      this.head++;
      this.headOff = 0;
    }
    this.compact();
  }

  /** Drop everything (connection closing). */
  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.headOff = 0;
    this.total = 0;
  }

  private copyInto(dst: Buffer, n: number): void {
    let copied = 0;
    let i = this.head;
    let off = this.headOff;
    while (copied < n) {
      const c = this.chunks[i];
      assert(c !== undefined, "ByteQueue: ran out of chunks while copying");
      const k = Math.min(n - copied, c.length - off);
      c.copy(dst, copied, off, off + k);
      copied += k;
      i++;
      off = 0;
    }
  }

  private compact(): void {
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
    } else if (this.head > 64) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}
