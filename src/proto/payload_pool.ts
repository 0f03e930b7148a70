// Reusable buffers for large data-plane payloads (a 1 MiB write arrives in many socket chunks and
// is assembled into one buffer). A fresh buffer per IO costs page faults and their unmapping in
// the kernel (perf: ~15 % of an SDC's CPU on 1 MiB writes); handing the same buffers back and
// forth costs none. Process-wide, bounded: at most MAX_PER_SIZE buffers of one size and
// MAX_POOLED_BYTES in all; only buffers of at least MIN_POOLED_BYTES are pooled.
//
// Invariant (the caller's): a buffer is put() back only once nothing refers to it any more (the
// request it carried was answered: every copy was written and every forward was sent).

export const MIN_POOLED_BYTES = 64 * 1024;
const MAX_PER_SIZE = 16;
const MAX_POOLED_BYTES = 64 * 1024 * 1024;

const bySize = new Map<number, Buffer[]>();
let pooledBytes = 0;

/** A buffer of exactly n bytes (contents undefined). */
export function takePayload(n: number): Buffer {
  if (n >= MIN_POOLED_BYTES) {
    const list = bySize.get(n);
    const b = list?.pop();
    if (b !== undefined) {
      pooledBytes -= n;
      return b;
    }
  }
  return Buffer.allocUnsafe(n);
}

/** Give a buffer from takePayload back (ignored when small or the pool is full). */
export function returnPayload(b: Buffer | Uint8Array): void {
  const n = b.byteLength;
  if (n < MIN_POOLED_BYTES || b.byteOffset !== 0 || b.buffer.byteLength !== n) return;
  if (pooledBytes + n > MAX_POOLED_BYTES) return;
  let list = bySize.get(n);
  if (list === undefined) {
    list = [];
    bySize.set(n, list);
  }
  if (list.length >= MAX_PER_SIZE) return;
  list.push(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, 0, n));
  pooledBytes += n;
}
