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
import { DeviceCommitTarget, GroupCommit, MetaCommitTarget, type CommitWaiter } from "./group_commit.ts";
import { prepareChunks, type ExtentGate, type PrepHost } from "./chunk_prep.ts";
import type { ChangeRecord } from "./dirty_chunks.ts";
import type { CopyKind } from "./sds_metrics.ts";

export interface DeviceSlot {
  deviceId: string;
  devNo: number;
  dev: BlockDevice;
  alloc: ChunkAllocator;
  /** written (data or zeros) since the device's last sync began */
  written: DeviceCommitTarget;
  /** group commit of the device's writes (group_commit.ts): FUA, FLUSH and writeThrough share it */
  commit: GroupCommit;
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
  /** the pool is writeThrough: every write is durable on every copy before it is acknowledged */
  writeThrough = false;
  /** operations waiting behind a chunk preparation (chunk_prep.ts); null when none */
  gate: ExtentGate | null = null;
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

export class ExtentStore implements PrepHost<Extent> {
  private readonly byVolume = new Map<number, Map<number, Extent>>();
  private readonly slotsById = new Map<string, DeviceSlot>();
  private readonly zeros = new Uint8Array(CHUNK);
  /** group commit of the metadata WAL (chunk allocation, releases): joins every device's commit */
  readonly metaCommit: GroupCommit;
  private cleanerRunning = false;
  private stopped = false;

  private constructor(
    readonly meta: SdsMeta,
    readonly slots: DeviceSlot[],
  ) {
    for (const s of slots) this.slotsById.set(s.deviceId, s);
    this.metaCommit = new GroupCommit(new MetaCommitTarget(meta), "SDS metadata WAL");
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
      const written = new DeviceCommitTarget(dev);
      const slot: DeviceSlot = { deviceId, devNo: row.devNo, dev, alloc, written, commit: null as unknown as GroupCommit, state: "Normal", syncFailed: false };
      // a failed fdatasync fails the device: Linux may have dropped the pages it could not write
      slot.commit = new GroupCommit(written, `device ${deviceId} (${dev.path})`, (err) => {
        slot.syncFailed = true;
        if (slot.state !== "Failed") consola.error(`sds: device ${deviceId} (${dev.path}) failed: ${String(err)}`);
        slot.state = "Failed";
      });
      slots.push(slot);
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
    const first = Math.floor(offsetBytes / CHUNK);
    const last = Math.floor((offsetBytes + data.byteLength - 1) / CHUNK);
    if (e.gate !== null && e.gate.failed !== null && this.needsPrep(e, first, last)) return e.gate.failed;
    const st = this.ensureAllocated(e, first, last);
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
    e.slot.written.markWritten();
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
          e.slot.written.markWritten();
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
    // group commit: a device written since its last sync began gets a sync that starts after
    // this call; one not written since joins the sync that runs (it covers every earlier write)
    const parts: Promise<void>[] = [this.metaCommit.whenDurable()];
    for (const s of this.slots) if (!(skip?.(s) ?? false)) parts.push(this.syncSlot(s));
    return Promise.all(parts).then(() => undefined);
  }

  /** FUA: make one device's writes durable now (with the metadata they need). */
  async syncDevice(slot: DeviceSlot): Promise<void> {
    await Promise.all([this.syncSlot(slot), this.metaCommit.whenDurable()]);
  }

  /**
   * Hot-path form of syncDevice (FUA and writeThrough writes): `w` is told TWICE, once for the
   * device's group commit and once for the metadata's (usually at once: nothing to sync).
   */
  commitWrite(slot: DeviceSlot, w: CommitWaiter): void {
    slot.commit.request(w);
    this.metaCommit.request(w);
  }

  private syncSlot(slot: DeviceSlot): Promise<void> {
    if (slot.syncFailed) return Promise.reject(new PfError("IO_ERROR", `device ${slot.deviceId} (${slot.dev.path}) failed an earlier fdatasync; its unflushed writes may be lost`));
    return slot.commit.whenDurable().catch((err: unknown) => {
      throw new PfError("IO_ERROR", `fdatasync of device ${slot.deviceId} (${slot.dev.path}) failed: ${String(err)}`);
    });
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
      // chunks that must be zeroed first are prepared off the loop; IO waits in the gate meanwhile
      if (this.mustWait(cur, 0, cur.sizeBytes)) {
        this.waitFor(cur, 0, cur.sizeBytes, () => {
          if (cur.gate?.failed != null) consola.error(`sds: thick extent ${cur.key}: device ${slot.dev.path} cannot reserve its ${cur.sizeBytes} bytes`);
        });
        return Status.OK;
      }
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

  /**
   * Allocate every unallocated chunk in [first, last] and map it now; all or nothing. Only for
   * chunks that need no zeroing (mustWait() said so): those are prepared off the loop (chunk_prep.ts).
   */
  private ensureAllocated(e: Extent, first: number, last: number): Status {
    const got = this.allocateMissing(e, first, last);
    if (got === null) return Status.NO_SPACE;
    if (got.length === 0) return Status.OK;
    if (got.some((g) => g.a.zeroFirst)) {
      // a caller skipped mustWait(): never zero and sync on the event loop
      this.unallocate(e, got);
      consola.error(`sds: extent ${e.key}: a write needing zeroed chunks came without its preparation; refused`);
      return Status.UNAVAILABLE;
    }
    try {
      this.map(e, got);
    } catch (err) {
      this.unallocate(e, got);
      return this.failureStatus(err);
    }
    return Status.OK;
  }

  // ---- chunk preparation (chunk_prep.ts): PrepHost ----

  allocateMissing(e: Extent, first: number, last: number): { chunk: number; a: Allocation }[] | null {
    let missing = 0;
    for (let c = first; c <= last; c++) if (e.physOf(c) < 0) missing++;
    if (missing === 0) return [];
    const alloc = e.slot.alloc;
    if (alloc.available < missing) return null;
    const got: { chunk: number; a: Allocation }[] = [];
    for (let c = first; c <= last; c++) {
      if (e.physOf(c) >= 0) continue;
      const a = alloc.allocate();
      assert(a !== null, "allocator ran out below its available count");
      got.push({ chunk: c, a });
    }
    return got;
  }

  unallocate(e: Extent, got: { a: Allocation }[]): void {
    for (let i = got.length - 1; i >= 0; i--) e.slot.alloc.unallocate(got[i]!.a);
  }

  metaDurable(): Promise<void> {
    return this.metaCommit.whenDurable();
  }

  /** Dirty or virgin chunks are zeroed and the zeros made durable (group commit) before they are mapped. */
  zeroDurably(e: Extent, got: { a: Allocation }[]): Promise<void> {
    let any = false;
    for (const { a } of got) {
      if (!a.zeroFirst) continue;
      try {
        e.slot.dev.write(this.zeros, a.phys * CHUNK);
      } catch (err) {
        return Promise.reject(this.deviceFailed(e.slot, err));
      }
      any = true;
    }
    if (!any) return Promise.resolve();
    e.slot.written.markWritten();
    return this.syncSlot(e.slot);
  }

  map(e: Extent, got: { chunk: number; a: Allocation }[]): void {
    const alloc = e.slot.alloc;
    this.meta.transaction(() => {
      for (const { chunk, a } of got) {
        this.meta.insertChunk(e.volumeId, e.extentIndex, chunk, e.slot.devNo, a.phys);
        if (a.zeroFirst && a.was === "dirty") this.meta.clearDirty(e.slot.devNo, a.phys);
      }
      if (got.some((g) => g.a.zeroFirst && g.a.was === "virgin")) this.meta.setZeroedBelow(e.slot.devNo, alloc.zeroedBelow);
    });
    if (e.chunks === null) e.chunks = new Int32Array(e.chunkCount).fill(-1);
    for (const { chunk, a } of got) e.chunks[chunk] = a.phys;
  }

  gone(e: Extent): boolean {
    return e.removed || this.stopped;
  }

  failureStatus(err: unknown): Status {
    consola.error(`sds: allocating chunk(s) failed: ${(err as Error).message}`);
    return (err as NodeJS.ErrnoException).code === "SQLITE_FULL" ? Status.NO_SPACE : Status.IO_ERROR;
  }

  // ---- the extent gate ----

  /**
   * True when an operation on [offset, offset+length) of e cannot run now: earlier operations
   * of e wait in its gate, or (when it allocates) the range needs chunks that must be zeroed
   * first. The caller then hands it to waitFor() and it runs later, in order.
   */
  mustWait(e: Extent, offsetBytes: number, lengthBytes: number, allocates = true): boolean {
    const g = e.gate;
    if (g !== null && !g.running) return true;
    if (!allocates || lengthBytes === 0) return false;
    if (g !== null && g.failed !== null) return false; // write() answers the failure
    return this.needsPrep(e, Math.floor(offsetBytes / CHUNK), Math.floor((offsetBytes + lengthBytes - 1) / CHUNK));
  }

  /** Run `op` once the operations before it ran and its chunks are prepared (see mustWait). */
  waitFor(e: Extent, offsetBytes: number, lengthBytes: number, op: () => void): void {
    let g = e.gate;
    if (g === null) {
      g = { ops: [], preparing: false, running: false, failed: null };
      e.gate = g;
    }
    if (!g.running) {
      g.ops.push(op);
      if (g.preparing) return;
    } else {
      g.ops.unshift(op); // the op being run from the gate needs a preparation: it stays first
    }
    if (lengthBytes === 0) {
      // nothing of its own to prepare (a zeroing queued behind others): run the queue soon
      queueMicrotask(() => this.drain(e, g));
      return;
    }
    this.startPrep(e, g, Math.floor(offsetBytes / CHUNK), Math.floor((offsetBytes + Math.max(1, lengthBytes) - 1) / CHUNK));
  }

  private needsPrep(e: Extent, first: number, last: number): boolean {
    let missing = 0;
    for (let c = first; c <= last; c++) if (e.physOf(c) < 0) missing++;
    if (missing === 0) return false;
    const alloc = e.slot.alloc;
    return alloc.clean < missing && alloc.available >= missing;
  }

  private startPrep(e: Extent, g: ExtentGate, first: number, last: number): void {
    g.preparing = true;
    void prepareChunks(this, e, first, last).then((st) => {
      g.preparing = false;
      g.failed = st === Status.OK ? null : st;
      this.drain(e, g);
    });
  }

  private drain(e: Extent, g: ExtentGate): void {
    g.running = true;
    while (g.ops.length > 0 && !g.preparing) g.ops.shift()!();
    g.running = false;
    g.failed = null;
    if (!g.preparing && g.ops.length === 0 && e.gate === g) e.gate = null;
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
        slot.written.markWritten();
        await slot.commit.whenDurable();
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
