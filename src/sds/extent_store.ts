// The SDS's extent store: which extent copies this SDS holds (with their epoch and write
// generation), where their thin chunks live on the devices, and the IO on them (read, write,
// zero/trim, checksum, flush). Synchronous on the IO path (pread/pwrite through the kernel), so
// operations are applied in exactly the order they are called.
//
// Invariants:
// - a logical chunk is mapped to at most one physical chunk and vice versa (ChunkAllocator
//   plus a unique index in sqlite);
// - a chunk mapping is committed to sqlite before write() returns, so an acknowledged write
//   never points at space a restart forgets; flushWritten() makes it durable (WAL fdatasync);
// - a write allocates every chunk it needs before writing any byte, so NO_SPACE leaves the
//   device unchanged; unallocated space reads as zeros; a chunk handed out by the allocator
//   reads as zeros (dirty/virgin chunks are zeroed, durably, before they are mapped);
// - memory is one Int32Array slot per logical chunk of each held extent (allocated on first
//   write) plus one byte per physical chunk: proportional to chunks, never to 4 KiB blocks.

import { consola } from "consola";
import type { ExtentRole, SyncTarget } from "../proto/cluster_api.ts";
import { Status } from "../proto/dataplane.ts";
import { PfError, assert } from "../proto/errors.ts";
import { idToHalves } from "../proto/ids.ts";
import { Limits } from "../proto/limits.ts";
import type { BlockDevice } from "../store/block_device.ts";
import type { SdsMeta } from "../store/sds_meta.ts";
import { ChunkAllocator, type Allocation } from "./chunk_allocator.ts";
import type { ChangeRecord } from "./dirty_chunks.ts";
import type { CopyKind } from "./sds_metrics.ts";

export interface DeviceSlot {
  deviceId: string;
  devNo: number;
  dev: BlockDevice;
  alloc: ChunkAllocator;
  /** written (data or zeros) since the last flush began */
  written: boolean;
  state: "Normal" | "Failed";
  /**
   * an fdatasync failed: Linux may have dropped the dirty pages it could not write and a later
   * fdatasync would succeed without them, so every later flush of this device fails too
   */
  syncFailed: boolean;
}

export class Extent {
  readonly volumeHi: number;
  readonly volumeLo: number;
  /** logical chunk -> physical chunk on slot, -1 when unallocated; null until first allocation */
  chunks: Int32Array | null = null;
  /** set when the extent is no longer held (an async checksum stops) */
  removed = false;
  /** this SDS's role, from the MDM's assignment; a copy loaded from disk serves nothing
   *  ("away") until an assignment says otherwise */
  role: ExtentRole = "away";
  /** the copy being built from this one (primary only) */
  syncTarget: SyncTarget | null = null;
  /** chunks changed since a copy went missing (primary only; null = no record) */
  changes: ChangeRecord | null = null;
  /** forwarded writes (to any copy) that failed: a copy job restarts when this moves */
  forwardFailures = 0;
  /** as a copy target: what kind of copy it receives (metrics; set with the role, sds_node.ts) */
  copyKind: CopyKind = "rebuild";
  constructor(
    readonly volumeId: string,
    readonly extentIndex: number,
    public epoch: number,
    public gen: number,
    readonly sizeBytes: number,
    public thick: boolean,
    public replicas: string[],
    readonly slot: DeviceSlot,
  ) {
    ({ hi: this.volumeHi, lo: this.volumeLo } = idToHalves(volumeId));
  }

  get chunkCount(): number {
    return Math.ceil(this.sizeBytes / Limits.thinChunkBytes);
  }

  get key(): string {
    return `${this.volumeId}/${this.extentIndex}`;
  }

  physOf(chunk: number): number {
    return this.chunks === null ? -1 : this.chunks[chunk]!;
  }
}

export interface ExtentSpec {
  volumeId: string;
  extentIndex: number;
  epoch: number;
  sizeBytes: number;
  thick: boolean;
  replicas: string[];
  deviceId: string;
}

const CHUNK = Limits.thinChunkBytes;
const CHECKSUM_YIELD_EVERY_CHUNKS = 4;

export class ExtentStore {
  private readonly byVolume = new Map<number, Map<number, Extent>>();
  private readonly slotsById = new Map<string, DeviceSlot>();
  private readonly zeros = new Uint8Array(CHUNK);
  private readonly inflightFlushes = new Set<Promise<void>>();
  private cleanerRunning = false;
  private stopped = false;

  private constructor(
    readonly meta: SdsMeta,
    readonly slots: DeviceSlot[],
  ) {
    for (const s of slots) this.slotsById.set(s.deviceId, s);
  }

  /** Register the devices (new ones get a watermark from how they were created) and load state. */
  static open(meta: SdsMeta, devices: { deviceId: string; dev: BlockDevice }[]): ExtentStore {
    const known = new Map(meta.devices().map((r) => [r.path, r]));
    const slots: DeviceSlot[] = [];
    for (const { deviceId, dev } of devices) {
      const chunkCount = Math.floor(dev.sizeBytes / CHUNK);
      let row = known.get(dev.path);
      if (row === undefined) {
        row = meta.addDevice({ path: dev.path, sizeBytes: dev.sizeBytes, chunkBytes: CHUNK, zeroedBelowChunk: dev.createdZeroFilled ? chunkCount : 0 });
      }
      if (row.chunkBytes !== CHUNK) throw new PfError("INVALID_STATE", `device ${dev.path} was formatted with ${row.chunkBytes}-byte chunks, not ${CHUNK}`);
      if (row.sizeBytes > dev.sizeBytes) throw new PfError("INVALID_STATE", `device ${dev.path} shrank from ${row.sizeBytes} to ${dev.sizeBytes} bytes`);
      const alloc = new ChunkAllocator(chunkCount, Math.min(row.zeroedBelowChunk, chunkCount));
      slots.push({ deviceId, devNo: row.devNo, dev, alloc, written: false, state: "Normal", syncFailed: false });
    }
    const store = new ExtentStore(meta, slots);
    store.load();
    return store;
  }

  private load(): void {
    const byDevNo = new Map(this.slots.map((s) => [s.devNo, s]));
    const used = new Map<number, number[]>();
    const dirty = new Map<number, number[]>();
    const extents = new Map<string, Extent>();
    for (const r of this.meta.extents()) {
      const slot = byDevNo.get(r.devNo);
      if (slot === undefined) {
        consola.warn(`sds: extent ${r.volumeId}/${r.extentIndex} is on device #${r.devNo}, which was not opened; not serving it`);
        continue;
      }
      const e = new Extent(r.volumeId, r.extentIndex, r.epoch, r.gen, r.sizeBytes, r.thick, r.replicas, slot);
      extents.set(`${r.volumeId}/${r.extentIndex}`, e);
      this.index(e);
    }
    for (const c of this.meta.chunks()) {
      if (!byDevNo.has(c.devNo)) continue;
      pushTo(used, c.devNo, c.physChunk);
      const e = extents.get(`${c.volumeId}/${c.extentIndex}`);
      if (e === undefined) {
        // mapped chunk of an extent that is gone: release it (found after a crash mid-unassign)
        this.meta.transaction(() => this.meta.releaseChunk(c.volumeId, c.extentIndex, c.chunkIndex, c.devNo, c.physChunk));
        used.get(c.devNo)!.pop();
        pushTo(dirty, c.devNo, c.physChunk);
        continue;
      }
      assert(c.chunkIndex < e.chunkCount, "persisted chunk index beyond its extent");
      if (e.chunks === null) e.chunks = new Int32Array(e.chunkCount).fill(-1);
      e.chunks[c.chunkIndex] = c.physChunk;
    }
    for (const d of this.meta.dirtyChunks()) if (byDevNo.has(d.devNo)) pushTo(dirty, d.devNo, d.physChunk);
    for (const s of this.slots) s.alloc.markLoaded(used.get(s.devNo) ?? [], dirty.get(s.devNo) ?? []);
    this.kickCleaner();
  }

  // ---- lookup ----

  lookup(volumeHi: number, volumeLo: number, extentIndex: number): Extent | undefined {
    const e = this.byVolume.get(volumeLo)?.get(extentIndex);
    return e !== undefined && e.volumeHi === volumeHi ? e : undefined;
  }

  slot(deviceId: string): DeviceSlot | undefined {
    return this.slotsById.get(deviceId);
  }

  *extents(): Generator<Extent> {
    for (const m of this.byVolume.values()) yield* m.values();
  }

  // ---- IO ----

  /** Read [offset, offset+out.length) of the extent into out (zeros where unallocated). */
  read(e: Extent, offsetBytes: number, out: Uint8Array): void {
    try {
      this.readRaw(e, offsetBytes, out);
    } catch (err) {
      throw this.deviceFailed(e.slot, err);
    }
  }

  private readRaw(e: Extent, offsetBytes: number, out: Uint8Array): void {
    assert(offsetBytes + out.byteLength <= e.sizeBytes, "read beyond extent");
    let at = 0;
    while (at < out.byteLength) {
      const pos = offsetBytes + at;
      const chunk = Math.floor(pos / CHUNK);
      const inChunk = pos - chunk * CHUNK;
      const n = Math.min(out.byteLength - at, CHUNK - inChunk);
      const phys = e.physOf(chunk);
      if (phys < 0) out.fill(0, at, at + n);
      else e.slot.dev.readInto(out.subarray(at, at + n), phys * CHUNK + inChunk);
      at += n;
    }
  }

  /** Write data at offset; allocates (and persists) missing chunks first. */
  write(e: Extent, offsetBytes: number, data: Uint8Array): Status {
    assert(offsetBytes + data.byteLength <= e.sizeBytes, "write beyond extent");
    if (data.byteLength === 0) return Status.OK;
    const st = this.ensureAllocated(e, Math.floor(offsetBytes / CHUNK), Math.floor((offsetBytes + data.byteLength - 1) / CHUNK));
    if (st !== Status.OK) return st;
    try {
      this.writeRaw(e, offsetBytes, data);
    } catch (err) {
      throw this.deviceFailed(e.slot, err);
    }
    return Status.OK;
  }

  private writeRaw(e: Extent, offsetBytes: number, data: Uint8Array): void {
    let at = 0;
    while (at < data.byteLength) {
      const pos = offsetBytes + at;
      const chunk = Math.floor(pos / CHUNK);
      const inChunk = pos - chunk * CHUNK;
      const n = Math.min(data.byteLength - at, CHUNK - inChunk);
      const phys = e.physOf(chunk);
      assert(phys >= 0, "writing an unallocated chunk");
      e.slot.dev.write(at === 0 && n === data.byteLength ? data : data.subarray(at, at + n), phys * CHUNK + inChunk);
      at += n;
    }
    e.slot.written = true;
  }

  /** A device IO failed: report the device Failed (heartbeat) and pass the error on. */
  private deviceFailed(slot: DeviceSlot, err: unknown): unknown {
    if (slot.state !== "Failed") consola.error(`sds: device ${slot.deviceId} (${slot.dev.path}) failed: ${String(err)}`);
    slot.state = "Failed";
    return err;
  }

  /**
   * Make [offset, offset+length) read as zeros: whole thin chunks are released (their space
   * returns to the device), partial ranges and thick extents are overwritten with zeros.
   */
  zero(e: Extent, offsetBytes: number, lengthBytes: number): Status {
    assert(offsetBytes + lengthBytes <= e.sizeBytes, "zero beyond extent");
    const releases: number[] = [];
    let at = 0;
    while (at < lengthBytes) {
      const pos = offsetBytes + at;
      const chunk = Math.floor(pos / CHUNK);
      const inChunk = pos - chunk * CHUNK;
      const chunkLen = Math.min(CHUNK, e.sizeBytes - chunk * CHUNK);
      const n = Math.min(lengthBytes - at, chunkLen - inChunk);
      const phys = e.physOf(chunk);
      if (phys >= 0) {
        if (!e.thick && inChunk === 0 && n === chunkLen) releases.push(chunk);
        else {
          try {
            e.slot.dev.write(this.zeros.subarray(0, n), phys * CHUNK + inChunk);
          } catch (err) {
            throw this.deviceFailed(e.slot, err); // like a data write: the device is Failed
          }
          e.slot.written = true;
        }
      }
      at += n;
    }
    if (releases.length > 0) this.release(e, releases);
    return Status.OK;
  }

  /** xxHash64 over the extent's logical content in [offset, offset+length) (0 = to the end). */
  async checksum(e: Extent, offsetBytes: number, lengthBytes: number): Promise<bigint> {
    const end = lengthBytes === 0 ? e.sizeBytes : offsetBytes + lengthBytes;
    assert(end <= e.sizeBytes, "checksum beyond extent");
    const hashes: bigint[] = [];
    const scratch = new Uint8Array(CHUNK);
    let pieces = 0;
    for (let pos = offsetBytes; pos < end; ) {
      const chunk = Math.floor(pos / CHUNK);
      const inChunk = pos - chunk * CHUNK;
      const n = Math.min(end - pos, CHUNK - inChunk);
      const buf = scratch.subarray(0, n);
      if (e.removed) throw new PfError("INVALID_STATE", `extent ${e.volumeId}/${e.extentIndex} was dropped during its checksum`);
      this.read(e, pos, buf);
      hashes.push(BigInt.asUintN(64, BigInt(Bun.hash.xxHash64(buf))));
      pos += n;
      if (++pieces % CHECKSUM_YIELD_EVERY_CHUNKS === 0) await yieldToLoop();
    }
    return BigInt(Bun.hash.xxHash64(new Uint8Array(BigUint64Array.from(hashes).buffer)));
  }

  /**
   * Make every write and zeroing done so far durable (devices written + metadata). `skip`
   * leaves out devices the caller knows are lost (Failed devices whose data has other copies).
   */
  flushWritten(skip?: (slot: DeviceSlot) => boolean): Promise<void> {
    const devs = this.slots.filter((s) => (s.written || s.syncFailed) && !(skip?.(s) ?? false));
    for (const s of devs) s.written = false;
    const own = Promise.all([...devs.map((s) => this.syncSlot(s)), this.meta.sync()]).then(
      () => undefined,
      (err: unknown) => {
        for (const s of devs) s.written = true;
        throw err;
      },
    );
    const tracked = own.finally(() => this.inflightFlushes.delete(tracked));
    // a flush still running may cover writes acked before this call: wait for those too
    const waits = [tracked, ...this.inflightFlushes];
    this.inflightFlushes.add(tracked);
    return Promise.all(waits).then(() => undefined);
  }

  /** FUA: make one device's writes durable now (with the metadata they need). */
  async syncDevice(slot: DeviceSlot): Promise<void> {
    await Promise.all([this.syncSlot(slot), this.meta.sync()]);
  }

  private async syncSlot(slot: DeviceSlot): Promise<void> {
    if (slot.syncFailed) throw new PfError("IO_ERROR", `device ${slot.deviceId} (${slot.dev.path}) failed an earlier fdatasync; its unflushed writes may be lost`);
    try {
      await slot.dev.datasync();
    } catch (err) {
      slot.syncFailed = true;
      throw this.deviceFailed(slot, err);
    }
  }

  // ---- membership ----

  /** Hold (or update) an extent copy; thick extents get all their chunks now. */
  put(spec: ExtentSpec): Status {
    const slot = this.slotsById.get(spec.deviceId);
    if (slot === undefined) throw new PfError("NOT_FOUND", `extent ${spec.volumeId}/${spec.extentIndex} assigned to unknown device ${spec.deviceId}`);
    let e = this.lookupById(spec.volumeId, spec.extentIndex);
    if (e !== undefined && (e.slot !== slot || e.sizeBytes !== spec.sizeBytes)) {
      consola.info(`sds: extent ${spec.volumeId}/${spec.extentIndex} moved to device ${spec.deviceId} or resized; old copy dropped`);
      this.drop(e);
      e = undefined;
    }
    if (e === undefined) {
      e = new Extent(spec.volumeId, spec.extentIndex, spec.epoch, 0, spec.sizeBytes, spec.thick, spec.replicas, slot);
      this.index(e);
    } else {
      if (spec.epoch < e.epoch) {
        // epochs only grow: an older assignment is stale news, keep what we hold
        consola.warn(`sds: extent ${spec.volumeId}/${spec.extentIndex}: assignment epoch ${spec.epoch} is older than held ${e.epoch}; ignored`);
        return Status.OK;
      }
      const same = spec.epoch === e.epoch && spec.thick === e.thick && sameIds(spec.replicas, e.replicas);
      e.epoch = spec.epoch;
      e.thick = spec.thick;
      e.replicas = spec.replicas;
      if (same && !e.thick) return Status.OK; // nothing to persist (a refresh of the same map)
    }
    const cur = e;
    this.meta.putExtent({ volumeId: cur.volumeId, extentIndex: cur.extentIndex, epoch: cur.epoch, gen: cur.gen, devNo: slot.devNo, sizeBytes: cur.sizeBytes, thick: cur.thick, replicas: cur.replicas });
    if (cur.thick) {
      const st = this.ensureAllocated(cur, 0, cur.chunkCount - 1);
      if (st !== Status.OK) {
        consola.error(`sds: thick extent ${cur.volumeId}/${cur.extentIndex}: device ${slot.dev.path} cannot reserve its ${cur.sizeBytes} bytes`);
        return st;
      }
    }
    return Status.OK;
  }

  /** Stop holding an extent: its chunks are released (zeroed later) and its row deleted. */
  drop(e: Extent): void {
    e.removed = true;
    const chunks: number[] = [];
    for (let c = 0; c < e.chunkCount; c++) if (e.physOf(c) >= 0) chunks.push(c);
    this.meta.transaction(() => {
      this.releaseRows(e, chunks);
      this.meta.deleteExtent(e.volumeId, e.extentIndex);
    });
    this.releaseMemory(e, chunks);
    const m = this.byVolume.get(e.volumeLo);
    m?.delete(e.extentIndex);
    if (m !== undefined && m.size === 0) this.byVolume.delete(e.volumeLo);
    this.kickCleaner();
  }

  /** Persist the in-memory write generations (clean stop). */
  persistVersions(): void {
    this.meta.transaction(() => {
      for (const e of this.extents()) this.meta.setExtentVersion(e.volumeId, e.extentIndex, e.epoch, e.gen);
    });
  }

  usedBytes(slot: DeviceSlot): number {
    return slot.alloc.used * CHUNK;
  }

  stop(): void {
    this.stopped = true;
  }

  // ---- internals ----

  /** The held extent with this id, if any. */
  find(volumeId: string, extentIndex: number): Extent | undefined {
    return this.lookupById(volumeId, extentIndex);
  }

  private lookupById(volumeId: string, extentIndex: number): Extent | undefined {
    const { hi, lo } = idToHalves(volumeId);
    return this.lookup(hi, lo, extentIndex);
  }

  private index(e: Extent): void {
    let m = this.byVolume.get(e.volumeLo);
    if (m === undefined) {
      m = new Map();
      this.byVolume.set(e.volumeLo, m);
    }
    assert(!m.has(e.extentIndex) || m.get(e.extentIndex)!.volumeHi === e.volumeHi, "two volumes share a low id half");
    m.set(e.extentIndex, e);
  }

  /** Allocate every unallocated chunk in [first, last]; all or nothing. */
  private ensureAllocated(e: Extent, first: number, last: number): Status {
    let missing = 0;
    for (let c = first; c <= last; c++) if (e.physOf(c) < 0) missing++;
    if (missing === 0) return Status.OK;
    const alloc = e.slot.alloc;
    if (alloc.available < missing) return Status.NO_SPACE;
    const got: { chunk: number; a: Allocation }[] = [];
    for (let c = first; c <= last; c++) {
      if (e.physOf(c) >= 0) continue;
      const a = alloc.allocate();
      assert(a !== null, "allocator ran out below its available count");
      got.push({ chunk: c, a });
    }
    try {
      this.zeroFirst(e.slot, got);
      this.meta.transaction(() => {
        for (const { chunk, a } of got) {
          this.meta.insertChunk(e.volumeId, e.extentIndex, chunk, e.slot.devNo, a.phys);
          if (a.zeroFirst && a.was === "dirty") this.meta.clearDirty(e.slot.devNo, a.phys);
        }
        if (got.some((g) => g.a.zeroFirst && g.a.was === "virgin")) this.meta.setZeroedBelow(e.slot.devNo, alloc.zeroedBelow);
      });
    } catch (err) {
      for (let i = got.length - 1; i >= 0; i--) alloc.unallocate(got[i]!.a);
      consola.error(`sds: allocating ${got.length} chunk(s) on ${e.slot.dev.path} failed: ${(err as Error).message}`);
      return (err as NodeJS.ErrnoException).code === "SQLITE_FULL" ? Status.NO_SPACE : Status.IO_ERROR;
    }
    if (e.chunks === null) e.chunks = new Int32Array(e.chunkCount).fill(-1);
    for (const { chunk, a } of got) e.chunks[chunk] = a.phys;
    return Status.OK;
  }

  /** Dirty or virgin chunks are zeroed and the zeros made durable before they are mapped. */
  private zeroFirst(slot: DeviceSlot, got: { a: Allocation }[]): void {
    // A dirty chunk was released by a transaction that may still be only in the WAL: make that
    // release durable before the chunk gets other data, or a power cut could map it back to
    // its old extent, which would then read this extent's data.
    if (got.some(({ a }) => a.zeroFirst && a.was === "dirty")) this.meta.syncNow();
    let any = false;
    for (const { a } of got) {
      if (!a.zeroFirst) continue;
      slot.dev.write(this.zeros, a.phys * CHUNK);
      any = true;
    }
    if (any) slot.dev.datasyncNow();
  }

  private release(e: Extent, chunks: number[]): void {
    this.meta.transaction(() => this.releaseRows(e, chunks));
    this.releaseMemory(e, chunks);
    this.kickCleaner();
  }

  private releaseRows(e: Extent, chunks: number[]): void {
    for (const c of chunks) this.meta.releaseChunk(e.volumeId, e.extentIndex, c, e.slot.devNo, e.physOf(c));
  }

  private releaseMemory(e: Extent, chunks: number[]): void {
    for (const c of chunks) {
      e.slot.alloc.free(e.physOf(c));
      e.chunks![c] = -1;
    }
  }

  /** Background: zero dirty chunks, fdatasync, then mark them clean (batches, off the IO path). */
  private kickCleaner(): void {
    if (this.cleanerRunning || this.stopped) return;
    if (!this.slots.some((s) => s.alloc.dirty > 0)) return;
    this.cleanerRunning = true;
    this.clean()
      .catch((err: unknown) => consola.error(`sds: chunk cleaner failed: ${String(err)}`))
      .finally(() => {
        this.cleanerRunning = false;
      });
  }

  private async clean(): Promise<void> {
    for (const slot of this.slots) {
      while (!this.stopped) {
        const batch = slot.alloc.dirtyChunks(16);
        if (batch.length === 0) break;
        const takenBefore = slot.alloc.dirtyTaken;
        for (const phys of batch) {
          if (this.stopped) return;
          if (slot.alloc.isUsed(phys)) continue;
          slot.dev.write(this.zeros, phys * CHUNK);
          await yieldToLoop();
        }
        await slot.dev.datasync();
        if (this.stopped) return;
        // a chunk of this batch may have been taken, written and freed again while we zeroed:
        // then its zeros are gone; start the batch over
        if (slot.alloc.dirtyTaken !== takenBefore) continue;
        this.meta.transaction(() => {
          for (const phys of batch) if (!slot.alloc.isUsed(phys)) this.meta.clearDirty(slot.devNo, phys);
        });
        for (const phys of batch) slot.alloc.cleaned(phys);
      }
    }
  }
}

function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function pushTo(m: Map<number, number[]>, k: number, v: number): void {
  const a = m.get(k);
  if (a === undefined) m.set(k, [v]);
  else a.push(v);
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
