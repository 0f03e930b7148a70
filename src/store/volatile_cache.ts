// A power-loss model for SDS devices: a BlockDevice wrapper that behaves like a disk with a
// volatile write cache. Writes land in this process's memory (reads see them); only datasync()
// writes them to the real device (and fdatasyncs it). So losing this process (kill -9, or
// crash() in-process tests) loses exactly the writes that were never synced: what a power cut
// does to a disk whose cache was not flushed. Page-cache writes of the real file are not what is
// modelled here: the kernel is treated as the disk's media.
//
// Like block_fault.ts it ships in the binary (fault injection is a layer of the real system):
// `pf sds` / `pf up` with PF_VOLATILE_DEVICE_CACHE=1 wrap every device, so an end-to-end test can
// kill -9 every role and check that what was acknowledged as durable is there afterwards.
//
// Invariants: a read returns the newest data written (cache over device); datasync() makes every
// write made before it durable (moves it to the device, then fdatasyncs the device) before it
// resolves; the cache holds at most maxCachedBytes (a full cache writes its oldest blocks to the
// device, as a disk cache evicts to media: those are then "on media" but not synced); crash()
// drops the cache and refuses all further IO.

import { PfError, assert } from "../proto/errors.ts";
import { DeviceWrapper, type BlockDevice } from "./block_device.ts";

export const VOLATILE_CACHE_ENV = "PF_VOLATILE_DEVICE_CACHE";

const BLOCK = 4096;
const DEFAULT_MAX_CACHED_BYTES = 256 * 1024 * 1024;

export class VolatileCacheDevice extends DeviceWrapper {
  /** block index -> its newest content; Map keeps insertion order (oldest first) */
  private cache = new Map<number, Uint8Array>();
  private crashed = false;
  /** writes since the device was created or last synced (tests) */
  unsyncedWrites = 0;

  constructor(
    inner: BlockDevice,
    private readonly maxCachedBytes = DEFAULT_MAX_CACHED_BYTES,
  ) {
    super(inner);
  }

  get cachedBytes(): number {
    return this.cache.size * BLOCK;
  }

  override readInto(buf: Uint8Array, positionBytes: number): void {
    this.check();
    this.inner.readInto(buf, positionBytes);
    this.overlay(buf, positionBytes);
  }

  private overlay(buf: Uint8Array, positionBytes: number): void {
    if (this.cache.size === 0) return;
    const end = positionBytes + buf.byteLength;
    for (let b = Math.floor(positionBytes / BLOCK); b * BLOCK < end; b++) {
      const c = this.cache.get(b);
      if (c === undefined) continue;
      const from = Math.max(positionBytes, b * BLOCK);
      const to = Math.min(end, (b + 1) * BLOCK);
      buf.set(c.subarray(from - b * BLOCK, to - b * BLOCK), from - positionBytes);
    }
  }

  override write(buf: Uint8Array, positionBytes: number): void {
    this.check();
    assert(positionBytes >= 0 && positionBytes + buf.byteLength <= this.sizeBytes, "device write out of range");
    const end = positionBytes + buf.byteLength;
    for (let b = Math.floor(positionBytes / BLOCK); b * BLOCK < end; b++) {
      const from = Math.max(positionBytes, b * BLOCK);
      const to = Math.min(end, (b + 1) * BLOCK);
      let c = this.cache.get(b);
      if (c === undefined) {
        c = new Uint8Array(BLOCK);
        const len = Math.min(BLOCK, this.sizeBytes - b * BLOCK);
        if (to - from < len) this.inner.readInto(c.subarray(0, len), b * BLOCK);
      } else {
        this.cache.delete(b); // re-insert: newest last
      }
      c.set(buf.subarray(from - positionBytes, to - positionBytes), from - b * BLOCK);
      this.cache.set(b, c);
    }
    this.unsyncedWrites++;
    while (this.cache.size * BLOCK > this.maxCachedBytes) this.evictOldest();
  }

  /** The device's bytes read off the loop, then the cache laid over them as it is at the end. */
  override async readAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    this.check();
    await this.inner.readAsync(buf, positionBytes);
    this.check();
    this.overlay(buf, positionBytes);
  }

  /** A write lands in the modelled disk cache (memory), as write() does. */
  override writeAsync(buf: Uint8Array, positionBytes: number): Promise<void> {
    try {
      this.write(buf, positionBytes);
    } catch (e) {
      return Promise.reject(e);
    }
    return Promise.resolve();
  }

  override async datasync(): Promise<void> {
    this.check();
    // everything cached when the sync starts goes to the device; later writes wait for the next
    const taken = this.cache;
    this.cache = new Map();
    this.unsyncedWrites = 0;
    for (const [b, c] of taken) {
      // a newer write of the block after this sync started lives in the new cache: keep both
      // orders right by writing the taken one first (the new cache wins on reads and next sync)
      this.inner.write(c.subarray(0, Math.min(BLOCK, this.sizeBytes - b * BLOCK)), b * BLOCK);
    }
    await this.inner.datasync();
  }

  override datasyncNow(): void {
    this.check();
    for (const [b, c] of this.cache) this.inner.write(c.subarray(0, Math.min(BLOCK, this.sizeBytes - b * BLOCK)), b * BLOCK);
    this.cache.clear();
    this.unsyncedWrites = 0;
    this.inner.datasyncNow();
  }

  /** Power cut: the cached (unsynced) writes are gone; the device answers nothing more. */
  crash(): void {
    this.crashed = true;
    this.cache.clear();
  }

  override close(): void {
    // a clean stop: whatever the cache holds is lost like a power cut would lose it, unless it
    // was synced (the SDS syncs before a clean stop only what its callers asked for)
    this.cache.clear();
    this.inner.close();
  }

  private evictOldest(): void {
    const first = this.cache.entries().next();
    if (first.done) return;
    const [b, c] = first.value;
    this.cache.delete(b);
    this.inner.write(c.subarray(0, Math.min(BLOCK, this.sizeBytes - b * BLOCK)), b * BLOCK);
  }

  private check(): void {
    if (this.crashed) throw new PfError("IO_ERROR", `device ${this.path} lost power (volatile cache model)`);
  }
}
