// The SDS's extent store: which extent copies this SDS holds (with their epoch and write
// generation), which LAYER of the extent's V-Tree owns each 1 MiB chunk and where it lives on
// the device, and the IO on them (read, write with copy-on-write, zero/trim, checksum, flush,
// and the metadata-only layer operations: merge, drop, ownership for copies). Synchronous on
// the IO path (pread/pwrite through the kernel), so operations apply in exactly call order.
//
// Layers (snapshots-qos.md §6.1): an extent is keyed by its V-Tree's owner id; each layer owns
// some chunks; a read resolves a chunk through a chain (open layer, parent, ..., root) and
// takes the first layer that owns it; a write goes to the chain's first layer, which takes the
// chunk on first write (redirect-on-write: a partial write copies the resolved 1 MiB first).
//
// Invariants:
// - a physical chunk is mapped by at most one (layer, chunk) (ChunkAllocator plus a unique
//   index in sqlite); ZERO_CHUNK owns a chunk as zeros and holds no space;
// - a chunk mapping is committed to sqlite before write() returns, so an acknowledged write
//   never points at space a restart forgets; flushWritten() makes it durable (WAL fdatasync);
// - a mapping that shadows a parent's data (copy-on-write) is committed at once, marked
//   pending: its bytes (the copy and the new write) are in the page cache, which a kill -9 keeps,
//   so after a process restart it counts; the next FLUSH (or FUA) clears the mark only after the
//   device's fdatasync, so after a host reboot (power cut) a still-pending mapping is dropped and
//   the chunk shows its old content, never zeros or a half copy;
// - a write allocates every chunk it needs before writing any byte, so NO_SPACE leaves the
//   device unchanged; unowned space reads through the chain, and zeros past the root; a chunk
//   handed out by the allocator reads as zeros (dirty/virgin chunks are zeroed durably first);
// - memory is one Int32Array slot per logical chunk of each (extent, layer) that owns
//   something, plus one byte per physical chunk: proportional to chunks, never to 4 KiB blocks.

import type { AppIoGauge } from "./copy_throttle.ts";
import { consola } from "consola";
import type { ExtentRole, SyncTarget } from "../proto/cluster_api.ts";
import { Status } from "../proto/dataplane.ts";
import { PfError, assert, deviceErrorText } from "../proto/errors.ts";
import { halvesToId, idToHalves } from "../proto/ids.ts";
import { Limits } from "../proto/limits.ts";
import { Scatter, forEachSegment, type Bytes } from "../proto/scatter.ts";
import { DEVICE_SYNCS_IN_FLIGHT, WRITE_SEGMENT_BYTES, type BlockDevice } from "../store/block_device.ts";
import type { DeviceRow, SdsMeta } from "../store/sds_meta.ts";
import { ChunkAllocator, type Allocation } from "./chunk_allocator.ts";
import { DEFER_DEVICE_SYNC_START, DEVICE_SECOND_SYNC_MIN_BATCH, DeviceCommitTarget, GroupCommit, MetaCommitTarget, type CommitWaiter } from "./group_commit.ts";
import { prepareChunks, prepareCopies, type CopyWant, type ExtentGate, type PrepHost, type PreparedCopy } from "./chunk_prep.ts";
import type { ChangeRecord } from "./dirty_chunks.ts";
import type { CopyKind } from "./sds_metrics.ts";
import type { CopyOrder } from "./copy_order.ts";

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
  /** the error that failed it (the first one), for the heartbeat's report */
  failure?: string;
  /**
   * an fdatasync failed: Linux may have dropped the dirty pages it could not write and a later
   * fdatasync would succeed without them, so every later flush of this device fails too
   */
  syncFailed: boolean;
  /** the device's application IO gauge (copy_throttle.ts), cached here on first use by sds_node: no lookup per IO */
  appIo?: AppIoGauge;
  /** taken out of use (removeDevice): the cleaner stops writing to it */
  removed?: boolean;
}

/** not owned by this layer */
export const NO_CHUNK = -1;
/** owned by this layer as zeros (shadows a parent's data, holds no space) */
export const ZERO_CHUNK = -2;

/** A layer as the store needs it: key (low id half), id, and the chain reads resolve through. */
export interface LayerRef {
  readonly key: number;
  readonly id: string;
  readonly chain: readonly number[];
}

export class Extent {
  readonly volumeHi: number;
  readonly volumeLo: number;
  /** layer key -> logical chunk -> physical chunk / ZERO_CHUNK / NO_CHUNK; created on first ownership */
  readonly layers = new Map<number, Int32Array>();
  /** layer key -> layer id (persistence) */
  readonly layerIds = new Map<number, string>();
  /** layer key -> chunks it owns here (data or zeros); a layer owning nothing has no map */
  readonly ownedCount = new Map<number, number>();

  /** the layer plain reads and writes use (the owner's first layer until a graph says otherwise) */
  head: LayerRef;
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
  /** primary: chunk copies unanswered on the copy lane and forwards held behind them (copy_order.ts); null when none */
  copyOrder: CopyOrder | null = null;
  /** copy target: copy frames being written off the loop and the requests held behind them (sds_node.ts); null when none */
  applying: CopyOrder | null = null;
  /** bumped whenever a physical chunk leaves a mapping (freed, folded, dropped): a copy prepared
   *  off the loop before a bump may have read a chunk that was reused meanwhile */
  layoutGen = 0;
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
    this.head = { key: this.volumeLo, id: volumeId, chain: [this.volumeLo] };
  }

  get chunkCount(): number {
    return Math.ceil(this.sizeBytes / Limits.thinChunkBytes);
  }

  get key(): string {
    return `${this.volumeId}/${this.extentIndex}`;
  }

  /** What layer `key` itself holds at `chunk`: a physical chunk, ZERO_CHUNK or NO_CHUNK. */
  own(key: number, chunk: number): number {
    const m = this.layers.get(key);
    return m === undefined ? NO_CHUNK : m[chunk]!;
  }

  /** The physical chunk `chain` reads at `chunk` from position `from` on; NO_CHUNK = zeros. */
  resolve(chain: readonly number[], chunk: number, from = 0): number {
    for (let i = from; i < chain.length; i++) {
      const m = this.layers.get(chain[i]!);
      if (m === undefined) continue;
      const p = m[chunk]!;
      if (p !== NO_CHUNK) return p === ZERO_CHUNK ? NO_CHUNK : p;
    }
    return NO_CHUNK;
  }

  /** The physical chunk a plain read of the head layer sees (NO_CHUNK: zeros). */
  physOf(chunk: number): number {
    return this.resolve(this.head.chain, chunk);
  }

  /** Layers owning `chunk` (data or zeros), by key. */
  ownersOf(chunk: number): number[] {
    const out: number[] = [];
    for (const [k, m] of this.layers) if (m[chunk] !== NO_CHUNK) out.push(k);
    return out;
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
/** a payload kept as its socket pieces is written in device-aligned segments of this size (the
 *  device's own pwrite bound, block_device.ts, at most a chunk), so no pwrite starts or ends
 *  inside a page at a piece boundary */
const SCATTER_SEGMENT_BYTES = Math.min(WRITE_SEGMENT_BYTES, CHUNK);
const CHECKSUM_YIELD_EVERY_CHUNKS = 4;
/** 1 MiB copy buffers kept for reuse (more may exist while many copies run at once) */
const COPY_BUFFERS_KEPT = 8;

/** A copy-on-write mapping committed pending: settled (and what it shadows looked at) after its device's sync. */
interface PendingRow {
  phys: number;
  token: number;
  e: Extent;
  layerKey: number;
  chunk: number;
}

/** What the store needs of a V-Tree's graph (layer_graphs.ts VTreeState has this shape). */
export interface LiveLayers {
  readonly layers: ReadonlyMap<number, { readonly frozen: boolean }>;
  readonly members: ReadonlyMap<number, { readonly layer: { readonly chain: readonly number[] } }>;
}

/** A chunk a write takes for its layer, and what it copies first (-1: nothing). */
interface Take {
  chunk: number;
  a: Allocation;
  copyFrom: number;
  /** a parent layer has data there: commit only once the data is durable */
  shadows: boolean;
  /** the layer owned the chunk as zeros (the row exists) */
  wasZero: boolean;
  /** the row's pending mark (0: committed as settled) */
  token: number;
  /** prepared by the gate: already durable zeros, or a prepared copy (no zeroing needed) */
  zeroed: boolean;
  /** the allocation holds bytes (a copy, on the loop or prepared): back dirty if the take fails */
  holdsData: boolean;
}

/** A device's slot: its chunk allocator and group commit, its row in the SDS's metadata (made if new). */
function makeSlot(meta: SdsMeta, known: Map<string, DeviceRow>, deviceId: string, dev: BlockDevice): DeviceSlot {
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
  slot.commit = new GroupCommit(
    written,
    `device ${deviceId} (${dev.path})`,
    (err) => {
      slot.syncFailed = true;
      if (slot.state !== "Failed") {
        consola.error(`sds: device ${deviceId} (${dev.path}) failed: ${String(err)}`);
        slot.failure = deviceErrorText(err);
      }
      slot.state = "Failed";
    },
    // more than one sync at once: a later one covers the writes made while earlier ones run,
    // so a batch does not wait for the running sync to end (each on its own descriptor)
    DEVICE_SYNCS_IN_FLIGHT,
    // a sync starts at the end of the event-loop task that asked for it: the task's other
    // writes join it and its forwards and replies are on their sockets first
    DEFER_DEVICE_SYNC_START,
    DEVICE_SECOND_SYNC_MIN_BATCH,
  );
  return slot;
}

export class ExtentStore implements PrepHost<Extent> {
  /** a segment of a Scatter payload that straddles two of its pieces (writeRaw) */
  private readonly segmentScratch = new Uint8Array(SCATTER_SEGMENT_BYTES);
  private readonly byVolume = new Map<number, Map<number, Extent>>();
  private readonly slotsById = new Map<string, DeviceSlot>();
  private readonly zeros = new Uint8Array(CHUNK);
  private readonly copyScratch = new Uint8Array(CHUNK);
  /** physical chunks (space) owned per layer key, over every extent held */
  private readonly usage = new Map<number, { id: string; chunks: number }>();
  /** copy-on-write rows not yet settled, per device (the next FLUSH/FUA of the device settles them) */
  private readonly pending = new Map<DeviceSlot, PendingRow[]>();
  /** marks pending copy-on-write rows (start: above every mark on disk) */
  private nextPendingToken = 1;
  /**
   * zeroedOnLoop: chunk zeroings that synced on the event loop (not prepared by the gate: see
   * zeroFirst); copiesOnLoop / copiesPrepared: copy-on-write copies made in take() on the loop /
   * made off it by the gate and used; copiesDiscarded: prepared copies not used (stale or unneeded);
   * unreachableFreed: frozen layers' chunks freed because no member reaches them (settlePending)
   */
  readonly stats = { zeroedOnLoop: 0, copiesOnLoop: 0, copiesPrepared: 0, copiesDiscarded: 0, unreachableFreed: 0 };
  /**
   * The V-Tree layers as the SDS knows them (layer_graphs.ts), for freeing chunks no member can
   * reach (settlePending); null: not known (a plain V-Tree, or a fence pending). Set by the node.
   */
  liveLayers: ((ownerLo: number) => LiveLayers | null) | null = null;
  /** 1 MiB buffers for copies off the loop, reused */
  private readonly copyBuffers: Uint8Array[] = [];
  /** group commit of the metadata WAL (chunk allocation, releases): joins every device's commit */
  readonly metaCommit: GroupCommit;
  private cleanerRunning = false;
  /** cleaner and chunk preparations running (stop() waits for them before devices close) */
  private readonly background = new Set<Promise<unknown>>();
  private stopped = false;

  private constructor(
    readonly meta: SdsMeta,
    readonly slots: DeviceSlot[],
  ) {
    for (const s of slots) this.slotsById.set(s.deviceId, s);
    this.metaCommit = new GroupCommit(new MetaCommitTarget(meta), "SDS metadata WAL");
  }

  /** Register the devices (new ones get a watermark from how they were created) and load state. */
  /**
   * `hostRebooted`: the page cache was lost since this SDS last ran, so copy-on-write mappings
   * still pending may point at bytes that never reached the device: they are dropped.
   */
  static open(meta: SdsMeta, devices: { deviceId: string; dev: BlockDevice }[], opts: { hostRebooted?: boolean } = {}): ExtentStore {
    const known = new Map(meta.devices().map((r) => [r.path, r]));
    const slots = devices.map(({ deviceId, dev }) => makeSlot(meta, known, deviceId, dev));
    const store = new ExtentStore(meta, slots);
    store.load(opts.hostRebooted ?? false);
    return store;
  }

  /**
   * A device the MDM registered while this SDS runs (scli --add_sds_device): it holds nothing
   * yet, so only its free and dirty chunks are loaded (a path used before keeps its device row,
   * whose chunks no extent maps any more: every extent on it was moved off before its removal).
   */
  addDevice(deviceId: string, dev: BlockDevice): DeviceSlot {
    assert(!this.slotsById.has(deviceId), "a device is added once");
    const known = new Map(this.meta.devices().map((r) => [r.path, r]));
    const row = known.get(dev.path);
    // one disk in two slots would be two allocators handing out the same chunks
    if (row !== undefined && this.slots.some((s) => s.devNo === row.devNo)) throw new PfError("IN_USE", `device ${dev.path} is already in use by this SDS`);
    if (row !== undefined) {
      // a path used before: what it holds now is not known (it was out of pf's hands), so no
      // chunk is trusted as zeros; every one is zeroed before its first use
      this.meta.transaction(() => {
        this.meta.setZeroedBelow(row.devNo, 0);
        for (const d of this.meta.dirtyChunks()) if (d.devNo === row.devNo) this.meta.clearDirty(row.devNo, d.physChunk);
      });
      row.zeroedBelowChunk = 0;
    }
    const slot = makeSlot(this.meta, known, deviceId, dev);
    slot.alloc.markLoaded([], []);
    this.slots.push(slot);
    this.slotsById.set(deviceId, slot);
    this.kickCleaner();
    return slot;
  }

  /**
   * Stop using a device the MDM removed (it removes only a device that holds no copies). Refused
   * (false) while an extent of this SDS still lives on it. Its descriptor stays open until the
   * store's owner closes it: a cleaner batch or a sync may still be running on it.
   */
  removeDevice(deviceId: string): boolean {
    const slot = this.slotsById.get(deviceId);
    if (slot === undefined) return true;
    for (const e of this.extents()) if (e.slot === slot) return false;
    slot.removed = true; // a cleaner pass on it stops at its next chunk
    this.slotsById.delete(deviceId);
    this.slots.splice(this.slots.indexOf(slot), 1);
    return true;
  }

  private load(hostRebooted: boolean): void {
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
      if (c.physChunk !== null) pushTo(used, c.devNo, c.physChunk);
      const e = extents.get(`${c.volumeId}/${c.extentIndex}`);
      if (e === undefined) {
        // mapped chunk of an extent that is gone: release it (found after a crash mid-unassign)
        this.meta.transaction(() => this.meta.releaseChunk(c.volumeId, c.extentIndex, c.layerId, c.chunkIndex, c.devNo, c.physChunk));
        if (c.physChunk !== null) {
          used.get(c.devNo)!.pop();
          pushTo(dirty, c.devNo, c.physChunk);
        }
        continue;
      }
      if (c.pending !== 0 && c.physChunk !== null) {
        if (hostRebooted) {
          // its bytes may have died with the page cache; it was never flushed: the old content stands
          this.meta.transaction(() => this.meta.releaseChunk(c.volumeId, c.extentIndex, c.layerId, c.chunkIndex, c.devNo, c.physChunk));
          used.get(c.devNo)!.pop();
          continue;
        }
        const slot = byDevNo.get(c.devNo)!;
        this.pendingOf(slot).push({ phys: c.physChunk, token: c.pending, e, layerKey: idToHalves(c.layerId).lo, chunk: c.chunkIndex });
        this.nextPendingToken = Math.max(this.nextPendingToken, c.pending + 1);
      }
      assert(c.chunkIndex < e.chunkCount, "persisted chunk index beyond its extent");
      const { lo } = idToHalves(c.layerId);
      this.setOwn(e, lo, c.layerId, c.chunkIndex, c.physChunk ?? ZERO_CHUNK);
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

  /** The extents held of one owner (V-Tree), by extent index. */
  extentsOf(ownerLo: number): Extent[] {
    const m = this.byVolume.get(ownerLo);
    return m === undefined ? [] : [...m.values()];
  }

  /** Physical chunks owned per layer key, over every extent held (snapshot capacity). */
  layerUsage(): ReadonlyMap<number, { id: string; chunks: number }> {
    return this.usage;
  }

  // ---- IO ----

  /** Read [offset, offset+out.length) as `layer`'s chain sees it (zeros where nothing owns it). */
  read(e: Extent, offsetBytes: number, out: Uint8Array, layer: LayerRef = e.head): void {
    try {
      this.readRaw(e, layer.chain, offsetBytes, out);
    } catch (err) {
      throw this.deviceFailed(e.slot, err);
    }
  }

  private readRaw(e: Extent, chain: readonly number[], offsetBytes: number, out: Uint8Array): void {
    assert(offsetBytes + out.byteLength <= e.sizeBytes, "read beyond extent");
    let at = 0;
    while (at < out.byteLength) {
      const pos = offsetBytes + at;
      const chunk = Math.floor(pos / CHUNK);
      const inChunk = pos - chunk * CHUNK;
      const n = Math.min(out.byteLength - at, CHUNK - inChunk);
      const phys = e.resolve(chain, chunk);
      if (phys < 0) out.fill(0, at, at + n);
      else e.slot.dev.readInto(out.subarray(at, at + n), phys * CHUNK + inChunk);
      at += n;
    }
  }

  /**
   * Write data at offset into `layer` (the first layer of its chain). Chunks the layer does not
   * own yet are taken first; a partial write of a chunk a parent layer holds copies it first.
   */
  write(e: Extent, offsetBytes: number, data: Bytes, layer: LayerRef = e.head): Status {
    return this.writeInto(e, offsetBytes, data, layer, true);
  }

  /** A copy frame (rebuild/resync): write into exactly `layer`, without copy-on-write. */
  writeOwned(e: Extent, offsetBytes: number, data: Bytes, layer: LayerRef): Status {
    return this.writeInto(e, offsetBytes, data, layer, false);
  }

  /**
   * A copy frame written off the event loop: on a target under a copy's load, the synchronous
   * pwrite of 1 MiB into the page cache held its loop 0.4-2.7 ms per frame (writeback of the
   * copies' bytes running meanwhile; docs/design.md, "The target's copy apply"), and every forward
   * and client request of that SDS waited behind it. The chunk is taken now, in call order (its
   * row committed as in writeOwned); the bytes go to the thread pool; `done` runs once they are in
   * the page cache (a write() returning), with OK, or UNAVAILABLE when the device failed. Until
   * then the physical chunks are held (ChunkAllocator.hold: a free of them waits), and the caller
   * must keep every later operation overlapping the range from running (sds_node.ts: copyApplies).
   * Returns the status when nothing was started (NO_SPACE...; `done` is not called), else null.
   */
  writeOwnedAsync(e: Extent, offsetBytes: number, data: Uint8Array, layer: LayerRef, done: (st: Status) => void): Status | null {
    assert(offsetBytes + data.byteLength <= e.sizeBytes, "write beyond extent");
    if (data.byteLength === 0) return Status.OK;
    const first = Math.floor(offsetBytes / CHUNK);
    const last = Math.floor((offsetBytes + data.byteLength - 1) / CHUNK);
    for (let c = first; c <= last; c++) {
      if (e.own(layer.key, c) >= 0) continue;
      // no copy-on-write for a copy frame: nothing shadowed, nothing to settle later
      const r = this.take(e, layer, first, last, null);
      if (typeof r === "number") return r;
      break;
    }
    const slot = e.slot;
    const held: number[] = [];
    const parts: Promise<void>[] = [];
    let at = 0;
    while (at < data.byteLength) {
      const pos = offsetBytes + at;
      const chunk = Math.floor(pos / CHUNK);
      const inChunk = pos - chunk * CHUNK;
      const n = Math.min(data.byteLength - at, CHUNK - inChunk);
      const phys = e.own(layer.key, chunk);
      assert(phys >= 0, "writing a chunk its layer does not own");
      slot.alloc.hold(phys);
      held.push(phys);
      parts.push(slot.dev.writeAsync(at === 0 && n === data.byteLength ? data : data.subarray(at, at + n), phys * CHUNK + inChunk));
      at += n;
    }
    // every part settled (a failed one must not unhold the chunk while the others still land)
    const run = Promise.allSettled(parts).then((rs) => {
      slot.written.markWritten();
      const bad = rs.find((r) => r.status === "rejected");
      if (bad === undefined) return Status.OK;
      this.deviceFailed(slot, bad.reason);
      return Status.UNAVAILABLE;
    });
    this.track(
      run.then((st) => {
        let freed = false;
        for (const phys of held) freed = slot.alloc.unhold(phys) || freed;
        if (freed) this.kickCleaner();
        done(st);
      }),
    );
    return null;
  }

  private writeInto(e: Extent, offsetBytes: number, data: Bytes, layer: LayerRef, cow: boolean): Status {
    assert(offsetBytes + data.byteLength <= e.sizeBytes, "write beyond extent");
    if (data.byteLength === 0) return Status.OK;
    const first = Math.floor(offsetBytes / CHUNK);
    const last = Math.floor((offsetBytes + data.byteLength - 1) / CHUNK);
    let shadowing: Take[] | null = null;
    for (let c = first; c <= last; c++) {
      if (e.own(layer.key, c) >= 0) continue;
      // some chunk must be taken: do it for the whole range at once (all or nothing)
      const r = this.take(e, layer, first, last, cow ? { offsetBytes, lengthBytes: data.byteLength } : null);
      if (typeof r === "number") return r;
      shadowing = r;
      break;
    }
    try {
      this.writeRaw(e, layer.key, offsetBytes, data);
    } catch (err) {
      if (shadowing !== null) this.untake(e, layer, shadowing);
      throw this.deviceFailed(e.slot, err);
    }
    if (shadowing !== null) for (const g of shadowing) this.pendingOf(e.slot).push({ phys: g.a.phys, token: g.token, e, layerKey: layer.key, chunk: g.chunk });
    return Status.OK;
  }

  private pendingOf(slot: DeviceSlot): PendingRow[] {
    let list = this.pending.get(slot);
    if (list === undefined) {
      list = [];
      this.pending.set(slot, list);
    }
    return list;
  }

  /**
   * After an fdatasync of the slot that covered these rows' bytes: they count even after a power
   * cut. Only now may what they shadow be freed: a frozen layer's chunk that no member reaches any
   * more (every path to it goes through a layer that owns the chunk: e.g. both children of a
   * snapshot's parent overwrote it) is released in the same transaction, after the settling, so a
   * power cut keeps either both or the settling alone (sqlite's WAL keeps a prefix).
   */
  private settlePending(slot: DeviceSlot, rows: PendingRow[]): void {
    if (rows.length === 0) return;
    const dead: { e: Extent; key: number; id: string; chunk: number; own: number }[] = [];
    for (const r of rows) if (!r.e.removed && r.e.own(r.layerKey, r.chunk) === r.phys) this.collectDead(r.e, r.chunk, dead);
    this.meta.transaction(() => {
      for (const r of rows) this.meta.clearPending(slot.devNo, r.phys, r.token);
      for (const d of dead) this.meta.releaseChunk(d.e.volumeId, d.e.extentIndex, d.id, d.chunk, d.e.slot.devNo, d.own);
    });
    if (dead.length === 0) return;
    for (const d of dead) {
      d.e.slot.alloc.free(d.own);
      this.setOwn(d.e, d.key, d.id, d.chunk, NO_CHUNK);
    }
    this.stats.unreachableFreed += dead.length;
    this.kickCleaner();
  }

  /**
   * Chunks at `chunk` of e's frozen layers that no member's chain resolves to (nothing can read
   * them again), appended to `out`. Nothing when the V-Tree's layers are not known here, or a
   * fence's graph is pending for it (graph edits never make an unreachable chunk reachable
   * again, but a pending graph is not final: leave it to the next settle or fold).
   */
  private collectDead(e: Extent, chunk: number, out: { e: Extent; key: number; id: string; chunk: number; own: number }[]): void {
    if (e.layers.size < 2 || this.liveLayers === null) return;
    const view = this.liveLayers(e.volumeLo);
    if (view === null) return;
    const reached = new Set<number>();
    for (const m of view.members.values()) {
      const chain = m.layer.chain;
      for (let i = 0; i < chain.length; i++) {
        if (e.own(chain[i]!, chunk) !== NO_CHUNK) {
          reached.add(chain[i]!);
          break;
        }
      }
    }
    for (const [key, m] of e.layers) {
      const own = m[chunk]!;
      if (own < 0 || reached.has(key)) continue;
      if (view.layers.get(key)?.frozen !== true) continue; // only frozen layers of the graph held
      if (out.some((d) => d.e === e && d.key === key && d.chunk === chunk)) continue;
      out.push({ e, key, id: e.layerIds.get(key)!, chunk, own });
    }
  }

  private writeRaw(e: Extent, layerKey: number, offsetBytes: number, data: Bytes): void {
    let at = 0;
    while (at < data.byteLength) {
      const pos = offsetBytes + at;
      const chunk = Math.floor(pos / CHUNK);
      const inChunk = pos - chunk * CHUNK;
      const n = Math.min(data.byteLength - at, CHUNK - inChunk);
      const phys = e.own(layerKey, chunk);
      assert(phys >= 0, "writing a chunk its layer does not own");
      if (data instanceof Scatter) {
        // from the pieces the payload arrived in: device-aligned segments, a straddling one copied
        const dev = e.slot.dev;
        forEachSegment(data, at, n, phys * CHUNK + inChunk, SCATTER_SEGMENT_BYTES, this.segmentScratch, (view, p) => dev.write(view, p));
      } else {
        e.slot.dev.write(at === 0 && n === data.byteLength ? data : data.subarray(at, at + n), phys * CHUNK + inChunk);
      }
      at += n;
    }
    e.slot.written.markWritten();
  }

  /**
   * Take every chunk in [first, last] the layer does not own (space, all or nothing), committed
   * now. Chunks that shadow nothing read as zeros, which is their old content; chunks that
   * shadow a parent's data get the parent's bytes copied in (unless `write` covers them whole)
   * and are committed pending; they are returned for the caller to settle once its data is in.
   */
  private take(e: Extent, layer: LayerRef, first: number, last: number, write: { offsetBytes: number; lengthBytes: number } | null): Take[] | Status {
    const chunks: number[] = [];
    for (let c = first; c <= last; c++) if (e.own(layer.key, c) < 0) chunks.push(c);
    const alloc = e.slot.alloc;
    const prepared = e.gate?.prepared;
    const copies = write === null ? null : this.preparedCopiesFor(e, layer, chunks);
    if (alloc.available + (prepared?.length ?? 0) + (copies?.size ?? 0) < chunks.length) {
      if (copies !== null) e.gate?.copies.push(...copies.values()); // still the gate's (given back when it empties)
      return Status.NO_SPACE;
    }
    const got: Take[] = [];
    for (const c of chunks) {
      const wasZero = e.own(layer.key, c) === ZERO_CHUNK;
      const below = write === null || wasZero ? NO_CHUNK : e.resolve(layer.chain, c, 1);
      const start = c * CHUNK;
      const whole = write !== null && write.offsetBytes <= start && write.offsetBytes + write.lengthBytes >= start + chunkBytesOf(e, c);
      const pc = copies?.get(c);
      let a: Allocation | null;
      let copyFrom = below >= 0 && !whole ? below : NO_CHUNK;
      let p: Allocation | null = null;
      if (pc !== undefined && below >= 0) {
        // a prepared copy's chunk (the row is pending: it shadows a parent): every byte of it is
        // overwritten, by the write (whole) or by the copy it holds; that copy serves only if it
        // is of what the chunk resolves to now and no chunk of the extent was freed or moved
        // since it was read (else the copy is made again, on the loop, into the same chunk)
        a = pc.a;
        if (copyFrom >= 0 && pc.fromPhys === copyFrom && pc.layoutGen === e.layoutGen) {
          copyFrom = NO_CHUNK;
          this.stats.copiesPrepared++;
        } else if (copyFrom >= 0) this.stats.copiesDiscarded++;
      } else {
        if (pc !== undefined) {
          this.stats.copiesDiscarded++;
          this.discard(e, [pc.a]); // it holds a parent's bytes; the chunk must read zeros
        }
        p = prepared !== undefined && prepared.length > 0 ? prepared.pop()! : null;
        a = p ?? alloc.allocate();
      }
      assert(a !== null, "allocator ran out below its available count");
      const fromCopy = pc !== undefined && a === pc.a;
      got.push({ chunk: c, a, copyFrom, shadows: below >= 0, wasZero, token: below >= 0 ? this.nextPendingToken++ : 0, zeroed: p !== null || fromCopy, holdsData: copyFrom >= 0 || fromCopy });
    }
    try {
      this.zeroFirst(e.slot, got);
      for (const g of got) {
        if (g.copyFrom < 0) continue;
        this.stats.copiesOnLoop++;
        this.copyChunk(e, g.copyFrom, g.a.phys, chunkBytesOf(e, g.chunk));
      }
      this.meta.transaction(() => {
        for (const g of got) {
          this.persistOwn(e, layer, g.chunk, g.a.phys, g.wasZero, g.token);
          if (g.a.zeroFirst && g.a.was === "dirty") this.meta.clearDirty(e.slot.devNo, g.a.phys);
        }
        if (got.some((g) => g.a.zeroFirst && g.a.was === "virgin")) this.meta.setZeroedBelow(e.slot.devNo, alloc.zeroedBelow);
      });
    } catch (err) {
      // a chunk that received a copy holds data now: it goes back dirty, the others as they were
      for (let i = got.length - 1; i >= 0; i--) this.giveBack(e, got[i]!);
      consola.error(`sds: taking ${got.length} chunk(s) on ${e.slot.dev.path} failed: ${(err as Error).message}`);
      return (err as NodeJS.ErrnoException).code === "SQLITE_FULL" ? Status.NO_SPACE : Status.IO_ERROR;
    }
    for (const g of got) this.setOwn(e, layer.key, layer.id, g.chunk, g.a.phys);
    return got.filter((g) => g.shadows);
  }

  /** The gate's prepared copies for these chunks of `layer`, taken out of the gate. */
  private preparedCopiesFor(e: Extent, layer: LayerRef, chunks: readonly number[]): Map<number, PreparedCopy> | null {
    const list = e.gate?.copies;
    if (list === undefined || list.length === 0) return null;
    let out: Map<number, PreparedCopy> | null = null;
    for (let i = list.length - 1; i >= 0; i--) {
      const pc = list[i]!;
      if (pc.layerKey !== layer.key || !chunks.includes(pc.chunk)) continue;
      out ??= new Map();
      out.set(pc.chunk, pc);
      list.splice(i, 1);
    }
    return out;
  }

  /** A take that did not commit: an allocation with bytes in it goes back dirty, the others as they were. */
  private giveBack(e: Extent, g: Take): void {
    if (g.holdsData) this.freeUnmapped(e.slot, g.a.phys);
    else e.slot.alloc.unallocate(g.a);
  }

  /** Undo the shadowing chunks of a write that failed before its data landed (rows pending: released, dirty). */
  private untake(e: Extent, layer: LayerRef, got: Take[]): void {
    try {
      this.meta.transaction(() => {
        for (const g of got) this.meta.releaseChunk(e.volumeId, e.extentIndex, layer.id, g.chunk, e.slot.devNo, g.a.phys);
      });
    } catch (err) {
      consola.error(`sds: releasing ${got.length} pending chunk(s) of ${e.key} failed (released on restart): ${(err as Error).message}`);
    }
    for (const g of got) {
      this.setOwn(e, layer.key, layer.id, g.chunk, NO_CHUNK);
      e.slot.alloc.free(g.a.phys);
    }
    this.kickCleaner();
  }

  /** A taken chunk that never got a committed mapping but may hold bytes: dirty (persisted if possible). */
  private freeUnmapped(slot: DeviceSlot, phys: number): void {
    slot.alloc.free(phys);
    try {
      this.meta.transaction(() => this.meta.markDirty(slot.devNo, phys));
    } catch (err) {
      consola.error(`sds: cannot record chunk ${phys} of ${slot.dev.path} as dirty: ${(err as Error).message}`);
    }
  }

  private copyChunk(e: Extent, fromPhys: number, toPhys: number, bytes: number): void {
    const buf = this.copyScratch.subarray(0, bytes);
    e.slot.dev.readInto(buf, fromPhys * CHUNK);
    e.slot.dev.write(buf, toPhys * CHUNK);
    e.slot.written.markWritten();
  }

  private persistOwn(e: Extent, layer: LayerRef, chunk: number, phys: number | null, rowExists: boolean, pending = 0): void {
    if (rowExists) this.meta.setChunkPhys(e.volumeId, e.extentIndex, layer.id, chunk, phys);
    else this.meta.insertChunk(e.volumeId, e.extentIndex, layer.id, chunk, e.slot.devNo, phys, pending);
  }

  /** A device IO failed: report the device Failed (heartbeat) and pass the error on. */
  private deviceFailed(slot: DeviceSlot, err: unknown): unknown {
    if (slot.state !== "Failed") {
      consola.error(`sds: device ${slot.deviceId} (${slot.dev.path}) failed: ${String(err)}`);
      slot.failure = deviceErrorText(err);
    }
    slot.state = "Failed";
    return err;
  }

  /**
   * Make [offset, offset+length) read as zeros through `layer`: whole chunks the layer owns
   * are released (their space returns to the device), or owned as zeros when a parent layer
   * holds data there; partial ranges and thick extents are overwritten with zeros (a partial
   * range over a parent's data is a copy-on-write of zeros).
   */
  zero(e: Extent, offsetBytes: number, lengthBytes: number, layer: LayerRef = e.head): Status {
    assert(offsetBytes + lengthBytes <= e.sizeBytes, "zero beyond extent");
    const plain = layer.chain.length === 1;
    const ops: { chunk: number; own: number; toZero: boolean }[] = [];
    let at = 0;
    while (at < lengthBytes) {
      const pos = offsetBytes + at;
      const chunk = Math.floor(pos / CHUNK);
      const inChunk = pos - chunk * CHUNK;
      const chunkLen = chunkBytesOf(e, chunk);
      const n = Math.min(lengthBytes - at, chunkLen - inChunk);
      const own = e.own(layer.key, chunk);
      const belowHasData = !plain && e.resolve(layer.chain, chunk, 1) >= 0;
      if (inChunk === 0 && n === chunkLen && !(e.thick && plain && own >= 0)) {
        if (belowHasData && own !== ZERO_CHUNK) ops.push({ chunk, own, toZero: true });
        else if (!belowHasData && own !== NO_CHUNK) ops.push({ chunk, own, toZero: false });
      } else if (own >= 0) {
        try {
          e.slot.dev.write(this.zeros.subarray(0, n), own * CHUNK + inChunk);
        } catch (err) {
          throw this.deviceFailed(e.slot, err); // like a data write: the device is Failed
        }
        e.slot.written.markWritten();
      } else if (own === NO_CHUNK && belowHasData) {
        const st = this.write(e, pos, this.zeros.subarray(0, n), layer);
        if (st !== Status.OK) return st;
      }
      at += n;
    }
    if (ops.length === 0) return Status.OK;
    this.meta.transaction(() => {
      for (const o of ops) {
        if (o.toZero) {
          if (o.own >= 0) this.meta.releaseChunk(e.volumeId, e.extentIndex, layer.id, o.chunk, e.slot.devNo, o.own);
          this.meta.insertChunk(e.volumeId, e.extentIndex, layer.id, o.chunk, e.slot.devNo, null);
        } else {
          this.meta.releaseChunk(e.volumeId, e.extentIndex, layer.id, o.chunk, e.slot.devNo, o.own >= 0 ? o.own : null);
        }
      }
    });
    for (const o of ops) {
      if (o.own >= 0) e.slot.alloc.free(o.own);
      this.setOwn(e, layer.key, layer.id, o.chunk, o.toZero ? ZERO_CHUNK : NO_CHUNK);
    }
    this.kickCleaner();
    return Status.OK;
  }

  /** xxHash64 over the logical content `layer`'s chain sees in [offset, offset+length) (0 = to the end). */
  async checksum(e: Extent, offsetBytes: number, lengthBytes: number, layer: LayerRef = e.head): Promise<bigint> {
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
      this.read(e, pos, buf, layer);
      hashes.push(BigInt.asUintN(64, BigInt(Bun.hash.xxHash64(buf))));
      pos += n;
      if (++pieces % CHECKSUM_YIELD_EVERY_CHUNKS === 0) await yieldToLoop();
    }
    return BigInt(Bun.hash.xxHash64(new Uint8Array(BigUint64Array.from(hashes).buffer)));
  }

  /**
   * xxHash64 over what one layer itself owns, chunk by chunk (not owned / owned as zeros / the
   * chunk's bytes): two copies of a layer agree only if they own the same chunks with the same
   * data, which is what a later merge or copy relies on.
   */
  async checksumLayer(e: Extent, layerKey: number): Promise<bigint> {
    const hashes: bigint[] = [];
    const scratch = new Uint8Array(CHUNK);
    for (let c = 0; c < e.chunkCount; c++) {
      if (e.removed) throw new PfError("INVALID_STATE", `extent ${e.volumeId}/${e.extentIndex} was dropped during its checksum`);
      const own = e.own(layerKey, c);
      if (own === NO_CHUNK) hashes.push(0n);
      else if (own === ZERO_CHUNK) hashes.push(1n);
      else {
        const buf = scratch.subarray(0, chunkBytesOf(e, c));
        try {
          e.slot.dev.readInto(buf, own * CHUNK);
        } catch (err) {
          throw this.deviceFailed(e.slot, err);
        }
        hashes.push(BigInt.asUintN(64, BigInt(Bun.hash.xxHash64(buf))) | 2n);
      }
      if ((c + 1) % CHECKSUM_YIELD_EVERY_CHUNKS === 0) await yieldToLoop();
    }
    return BigInt(Bun.hash.xxHash64(new Uint8Array(BigUint64Array.from(hashes).buffer)));
  }

  // ---- layer operations (metadata only) ----

  /** A copy frame: `layer` owns `chunk` as zeros. */
  ownAsZeros(e: Extent, chunk: number, layer: LayerRef): void {
    const own = e.own(layer.key, chunk);
    if (own === ZERO_CHUNK) return;
    this.meta.transaction(() => {
      if (own >= 0) this.meta.releaseChunk(e.volumeId, e.extentIndex, layer.id, chunk, e.slot.devNo, own);
      this.meta.insertChunk(e.volumeId, e.extentIndex, layer.id, chunk, e.slot.devNo, null);
    });
    if (own >= 0) e.slot.alloc.free(own);
    this.setOwn(e, layer.key, layer.id, chunk, ZERO_CHUNK);
    this.kickCleaner();
  }

  /** A copy frame: only the layers in `keep` own `chunk`; every other layer drops it. */
  keepOwners(e: Extent, chunk: number, keep: readonly number[]): void {
    const drop: { key: number; id: string; own: number }[] = [];
    for (const [key, m] of e.layers) {
      const own = m[chunk]!;
      if (own !== NO_CHUNK && !keep.includes(key)) drop.push({ key, id: e.layerIds.get(key)!, own });
    }
    if (drop.length === 0) return;
    this.meta.transaction(() => {
      for (const d of drop) this.meta.releaseChunk(e.volumeId, e.extentIndex, d.id, chunk, e.slot.devNo, d.own >= 0 ? d.own : null);
    });
    for (const d of drop) {
      if (d.own >= 0) e.slot.alloc.free(d.own);
      this.setOwn(e, d.key, d.id, chunk, NO_CHUNK);
    }
    this.kickCleaner();
  }

  /**
   * Fold layer `fromKey` into its only child `into`: chunks the child owns shadow the parent's,
   * which are freed; the rest are relabelled to the child. One transaction, no data moves.
   * Idempotent (a layer this extent has nothing of is a no-op).
   */
  mergeLayer(e: Extent, fromKey: number, into: { key: number; id: string }): { relabelled: number; freed: number } {
    const from = e.layers.get(fromKey);
    if (from === undefined || fromKey === into.key) return { relabelled: 0, freed: 0 };
    const fromId = e.layerIds.get(fromKey)!;
    const moves: number[] = [];
    const frees: { chunk: number; own: number }[] = [];
    for (let c = 0; c < from.length; c++) {
      const own = from[c]!;
      if (own === NO_CHUNK) continue;
      if (e.own(into.key, c) !== NO_CHUNK) frees.push({ chunk: c, own });
      else moves.push(c);
    }
    this.meta.transaction(() => {
      for (const f of frees) this.meta.releaseChunk(e.volumeId, e.extentIndex, fromId, f.chunk, e.slot.devNo, f.own >= 0 ? f.own : null);
      for (const c of moves) this.meta.relabelChunk(e.volumeId, e.extentIndex, fromId, into.id, c);
    });
    for (const f of frees) {
      if (f.own >= 0) e.slot.alloc.free(f.own);
      this.setOwn(e, fromKey, fromId, f.chunk, NO_CHUNK);
    }
    for (const c of moves) {
      const own = from[c]!;
      this.setOwn(e, fromKey, fromId, c, NO_CHUNK);
      this.setOwn(e, into.key, into.id, c, own);
    }
    if (frees.length > 0) this.kickCleaner();
    return { relabelled: moves.length, freed: frees.length };
  }

  /** Free every chunk a layer owns in this extent (the layer is gone). */
  dropLayer(e: Extent, key: number): number {
    const m = e.layers.get(key);
    if (m === undefined) return 0;
    const id = e.layerIds.get(key)!;
    const frees: { chunk: number; own: number }[] = [];
    for (let c = 0; c < m.length; c++) if (m[c] !== NO_CHUNK) frees.push({ chunk: c, own: m[c]! });
    this.meta.transaction(() => {
      for (const f of frees) this.meta.releaseChunk(e.volumeId, e.extentIndex, id, f.chunk, e.slot.devNo, f.own >= 0 ? f.own : null);
    });
    for (const f of frees) {
      if (f.own >= 0) e.slot.alloc.free(f.own);
      this.setOwn(e, key, id, f.chunk, NO_CHUNK);
    }
    this.kickCleaner();
    return frees.length;
  }

  /** Set what a layer owns at a chunk in memory (the one place maps and usage change). */
  private setOwn(e: Extent, key: number, id: string, chunk: number, value: number): void {
    let m = e.layers.get(key);
    if (m === undefined) {
      if (value === NO_CHUNK) return;
      m = new Int32Array(e.chunkCount).fill(NO_CHUNK);
      e.layers.set(key, m);
      e.layerIds.set(key, id);
      e.ownedCount.set(key, 0);
    }
    const old = m[chunk]!;
    m[chunk] = value;
    if (old >= 0 && old !== value) e.layoutGen++;
    const owned = e.ownedCount.get(key)! + (value !== NO_CHUNK ? 1 : 0) - (old !== NO_CHUNK ? 1 : 0);
    e.ownedCount.set(key, owned);
    const delta = (value >= 0 ? 1 : 0) - (old >= 0 ? 1 : 0);
    if (delta !== 0) {
      const u = this.usage.get(key);
      if (u === undefined) this.usage.set(key, { id, chunks: delta });
      else {
        u.chunks += delta;
        if (u.chunks === 0) this.usage.delete(key);
      }
    }
    if (owned === 0) {
      e.layers.delete(key);
      e.layerIds.delete(key);
      e.ownedCount.delete(key);
    }
  }

  /**
   * Make every write and zeroing done so far durable (devices written + metadata). `skip`
   * leaves out devices the caller knows are lost (Failed devices whose data has other copies).
   */
  flushWritten(skip?: (slot: DeviceSlot) => boolean): Promise<void> {
    // group commit (group_commit.ts): a device written since its last sync began gets a sync that
    // starts after this call; one not written since joins the sync that runs (it covers every
    // earlier write). Copy-on-write rows written so far settle once their device's sync covered
    // them, and only then does the metadata commit (which makes the settling durable) run.
    const parts: Promise<void>[] = [];
    let anyPending = false;
    for (const s of this.slots) {
      if (skip?.(s) ?? false) continue;
      const rows = this.takePending(s);
      if (rows.length > 0) anyPending = true;
      parts.push(rows.length === 0 ? this.syncSlot(s) : this.syncAndSettle(s, rows));
    }
    if (!anyPending) parts.push(this.metaCommit.whenDurable());
    const all = Promise.all(parts).then(() => undefined);
    return anyPending ? all.then(() => this.metaCommit.whenDurable()) : all;
  }

  /** FUA: make one device's writes durable now (with the metadata they need). */
  async syncDevice(slot: DeviceSlot): Promise<void> {
    const rows = this.takePending(slot);
    if (rows.length === 0) {
      await Promise.all([this.syncSlot(slot), this.metaCommit.whenDurable()]);
      return;
    }
    await this.syncAndSettle(slot, rows);
    await this.metaCommit.whenDurable();
  }

  /** Start making the device's writes so far durable, nobody waiting yet (a FLUSH is expected soon). */
  syncAhead(slot: DeviceSlot): void {
    if (!slot.syncFailed) slot.commit.syncAhead();
  }

  /**
   * Hot-path form of syncDevice (FUA and writeThrough writes): `w` is told TWICE, once for the
   * device's group commit and once for the metadata's (usually at once: nothing to sync). With
   * copy-on-write rows pending on the device (the first writes after a snapshot) it takes the
   * ordered path: device sync, settle, metadata sync.
   */
  commitWrite(slot: DeviceSlot, w: CommitWaiter): void {
    if ((this.pending.get(slot)?.length ?? 0) === 0) {
      slot.commit.request(w);
      this.metaCommit.request(w);
      return;
    }
    this.syncDevice(slot).then(
      () => {
        w.committed(true);
        w.committed(true);
      },
      (err: unknown) => {
        consola.error(`sds: FUA sync of device ${slot.deviceId} failed: ${String(err)}`);
        w.committed(false);
        w.committed(false);
      },
    );
  }

  /** Sync the device (group commit), then settle the rows its sync covered; on failure they stay pending. */
  private async syncAndSettle(slot: DeviceSlot, rows: PendingRow[]): Promise<void> {
    try {
      await this.syncSlot(slot);
    } catch (err) {
      this.pendingOf(slot).push(...rows);
      throw err;
    }
    this.settlePending(slot, rows);
  }

  private takePending(slot: DeviceSlot): PendingRow[] {
    const list = this.pending.get(slot);
    if (list === undefined || list.length === 0) return [];
    this.pending.set(slot, []);
    return list;
  }

  private syncSlot(slot: DeviceSlot): Promise<void> {
    if (slot.syncFailed) return Promise.reject(new PfError("IO_ERROR", `device ${slot.deviceId} (${slot.dev.path}) failed an earlier fdatasync; its unflushed writes may be lost`));
    return slot.commit.whenDurable().catch((err: unknown) => {
      throw new PfError("IO_ERROR", `fdatasync of device ${slot.deviceId} (${slot.dev.path}) failed: ${String(err)}`);
    });
  }

  // ---- membership ----

  /** Hold (or update) an extent copy; thick extents get all their chunks (head layer) now. */
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
      let missing = false;
      for (let c = 0; c < cur.chunkCount && !missing; c++) missing = cur.own(cur.head.key, c) < 0;
      if (!missing) return Status.OK;
      const reserve = (): Status => {
        const r = this.take(cur, cur.head, 0, cur.chunkCount - 1, null);
        if (typeof r !== "number") return Status.OK;
        consola.error(`sds: thick extent ${cur.volumeId}/${cur.extentIndex}: device ${slot.dev.path} cannot reserve its ${cur.sizeBytes} bytes`);
        return r;
      };
      // chunks that must be zeroed first are prepared off the loop; the extent's IO waits meanwhile
      if (this.mustWait(cur, cur.head, 0, cur.sizeBytes)) {
        this.waitFor(cur, cur.head, 0, cur.sizeBytes, () => void reserve());
        return Status.OK;
      }
      return reserve();
    }
    return Status.OK;
  }

  /** Stop holding an extent: its chunks are released (zeroed later) and its row deleted. */
  drop(e: Extent): void {
    e.removed = true;
    const frees: { key: number; id: string; chunk: number; own: number }[] = [];
    for (const [key, m] of e.layers) {
      const id = e.layerIds.get(key)!;
      for (let c = 0; c < m.length; c++) if (m[c] !== NO_CHUNK) frees.push({ key, id, chunk: c, own: m[c]! });
    }
    this.meta.transaction(() => {
      for (const f of frees) this.meta.releaseChunk(e.volumeId, e.extentIndex, f.id, f.chunk, e.slot.devNo, f.own >= 0 ? f.own : null);
      this.meta.deleteExtent(e.volumeId, e.extentIndex);
    });
    for (const f of frees) {
      if (f.own >= 0) e.slot.alloc.free(f.own);
      this.setOwn(e, f.key, f.id, f.chunk, NO_CHUNK);
    }
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

  /** Stop background work (cleaner, chunk preparations); resolves once what runs has settled. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.background]);
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
   * Dirty or virgin chunks are zeroed and the zeros made durable before they are mapped. Writes
   * that come through the gate (sds_node.ts: client, forwarded and copy writes) find their chunks
   * prepared off the loop (chunk_prep.ts) and skip this; what remains (a thick extent's
   * reservation outside the gate, a partial zeroing over a parent's data, a copy's owner list)
   * zeroes and syncs here, on the event loop.
   */
  private zeroFirst(slot: DeviceSlot, got: { a: Allocation; zeroed: boolean }[]): void {
    // A dirty chunk was released by a transaction that may still be only in the WAL: make that
    // release durable before the chunk gets other data, or a power cut could map it back to
    // its old extent, which would then read this extent's data.
    if (got.some(({ a, zeroed }) => !zeroed && a.zeroFirst && a.was === "dirty")) this.meta.syncNow();
    let any = false;
    for (const { a, zeroed } of got) {
      if (zeroed || !a.zeroFirst) continue;
      slot.dev.write(this.zeros, a.phys * CHUNK);
      any = true;
    }
    if (any) {
      this.stats.zeroedOnLoop++;
      slot.dev.datasyncNow();
    }
  }

  // ---- chunk preparation (chunk_prep.ts): PrepHost ----

  allocate(e: Extent, n: number): Allocation[] | null {
    const alloc = e.slot.alloc;
    if (alloc.available < n) return null;
    const got: Allocation[] = [];
    for (let i = 0; i < n; i++) {
      const a = alloc.allocate();
      assert(a !== null, "allocator ran out below its available count");
      got.push(a);
    }
    return got;
  }

  unallocate(e: Extent, got: Allocation[]): void {
    for (let i = got.length - 1; i >= 0; i--) e.slot.alloc.unallocate(got[i]!);
  }

  metaDurable(): Promise<void> {
    return this.metaCommit.whenDurable();
  }

  zeroDurably(e: Extent, got: Allocation[]): Promise<void> {
    let any = false;
    for (const a of got) {
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

  async copyInto(e: Extent, fromPhys: number, to: Allocation, bytes: number): Promise<void> {
    const buf = this.copyBuffers.pop() ?? new Uint8Array(CHUNK);
    try {
      const view = buf.subarray(0, bytes);
      await e.slot.dev.readAsync(view, fromPhys * CHUNK);
      await e.slot.dev.writeAsync(view, to.phys * CHUNK);
      e.slot.written.markWritten();
    } catch (err) {
      throw this.deviceFailed(e.slot, err);
    } finally {
      if (this.copyBuffers.length < COPY_BUFFERS_KEPT) this.copyBuffers.push(buf);
    }
  }

  discard(e: Extent, got: Allocation[]): void {
    for (const a of got) this.freeUnmapped(e.slot, a.phys);
    this.kickCleaner();
  }

  gone(e: Extent): boolean {
    return e.removed || this.stopped;
  }

  failureStatus(err: unknown): Status {
    consola.error(`sds: preparing chunk(s) failed: ${(err as Error).message}`);
    return (err as NodeJS.ErrnoException).code === "SQLITE_FULL" ? Status.NO_SPACE : Status.IO_ERROR;
  }

  // ---- the extent gate ----

  /**
   * True when an operation on [offset, offset+length) of e through `layer` cannot run now:
   * earlier operations of e wait in its gate, or (when it allocates) the layer must take chunks
   * that need zeroing first. The caller then hands it to waitFor() and it runs later, in order.
   */
  /**
   * `cow`: the operation is a write that copies a parent's chunk first where it writes part of
   * one its layer does not own (client and forwarded writes; not copy frames): that copy is
   * prepared off the loop too.
   */
  mustWait(e: Extent, layer: LayerRef, offsetBytes: number, lengthBytes: number, allocates = true, cow = allocates): boolean {
    const g = e.gate;
    if (g !== null && !g.running) return true;
    if (!allocates || lengthBytes === 0) return false;
    if (g !== null && g.failed !== null) return false; // the write answers the failure (NO_SPACE...)
    // the steady state (every chunk of the range owned by the layer) allocates nothing here
    if (!this.anyUnowned(e, layer, offsetBytes, lengthBytes)) return false;
    const wants = cow ? this.copyWants(e, layer, offsetBytes, lengthBytes) : null;
    if (wants !== null && wants.length > 0) return true;
    return this.prepNeeded(e, layer, offsetBytes, lengthBytes, wants) > 0;
  }

  /** Run `op` once the operations before it ran and its chunks are prepared (see mustWait). */
  waitFor(e: Extent, layer: LayerRef, offsetBytes: number, lengthBytes: number, op: () => void, cow = true): void {
    let g = e.gate;
    if (g === null) {
      g = { ops: [], preparing: false, running: false, failed: null, prepared: [], copies: [] };
      e.gate = g;
    }
    if (!g.running) {
      g.ops.push(op);
      if (g.preparing) return;
    } else {
      g.ops.unshift(op); // the op being run from the gate needs a preparation: it stays first
    }
    const wants = lengthBytes === 0 || !cow ? [] : this.copyWants(e, layer, offsetBytes, lengthBytes);
    const n = lengthBytes === 0 ? 0 : this.prepNeeded(e, layer, offsetBytes, lengthBytes, cow ? wants : null);
    if (n === 0 && wants.length === 0) {
      // nothing of its own to prepare (queued behind others): run the queue soon
      const gate = g;
      queueMicrotask(() => this.drain(e, gate));
      return;
    }
    this.startPrep(e, g, n, wants);
  }

  /**
   * The copy-on-write copies a write of [offset, offset+length) into `layer` needs and the gate
   * has not made: chunks the layer does not own (not even as zeros), written in part, that a
   * parent layer holds data of.
   */
  private copyWants(e: Extent, layer: LayerRef, offsetBytes: number, lengthBytes: number): CopyWant[] {
    if (layer.chain.length < 2) return [];
    const first = Math.floor(offsetBytes / CHUNK);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / CHUNK);
    const out: CopyWant[] = [];
    for (let c = first; c <= last; c++) {
      if (e.own(layer.key, c) !== NO_CHUNK) continue;
      const start = c * CHUNK;
      const bytes = chunkBytesOf(e, c);
      if (offsetBytes <= start && offsetBytes + lengthBytes >= start + bytes) continue; // whole: nothing to copy
      const below = e.resolve(layer.chain, c, 1);
      if (below < 0) continue;
      if (this.hasPreparedCopy(e, layer.key, c)) continue;
      out.push({ layerKey: layer.key, chunk: c, fromPhys: below, bytes });
    }
    return out;
  }

  private anyUnowned(e: Extent, layer: LayerRef, offsetBytes: number, lengthBytes: number): boolean {
    const last = Math.floor((offsetBytes + lengthBytes - 1) / CHUNK);
    for (let c = Math.floor(offsetBytes / CHUNK); c <= last; c++) if (e.own(layer.key, c) < 0) return true;
    return false;
  }

  private hasPreparedCopy(e: Extent, layerKey: number, chunk: number): boolean {
    const list = e.gate?.copies;
    return list !== undefined && list.some((pc) => pc.layerKey === layerKey && pc.chunk === chunk);
  }

  /**
   * Chunks `layer` must take for [offset, offset+length) beyond the prepared and clean ones (0: none
   * to prepare). `wants`: the range's copy-on-write copies (copyWants), null for a write that copies
   * nothing (a copy frame, a zeroing).
   */
  private prepNeeded(e: Extent, layer: LayerRef, offsetBytes: number, lengthBytes: number, wants: readonly CopyWant[] | null): number {
    const first = Math.floor(offsetBytes / CHUNK);
    const last = Math.floor((offsetBytes + lengthBytes - 1) / CHUNK);
    // a chunk that gets (or has) a prepared copy needs no zeroed chunk
    const copied = wants !== null && layer.chain.length > 1 ? new Set(wants.map((w) => w.chunk)) : null;
    let missing = 0;
    for (let c = first; c <= last; c++) {
      if (e.own(layer.key, c) >= 0) continue;
      if (copied !== null && (copied.has(c) || this.hasPreparedCopy(e, layer.key, c))) continue;
      missing++;
    }
    missing -= e.gate?.prepared.length ?? 0;
    if (missing <= 0) return 0;
    const alloc = e.slot.alloc;
    if (alloc.clean >= missing || alloc.available < missing) return 0; // nothing to zero, or NO_SPACE at once
    return missing;
  }

  private startPrep(e: Extent, g: ExtentGate, n: number, wants: readonly CopyWant[]): void {
    g.preparing = true;
    const layoutGen = e.layoutGen; // the generation `wants` were resolved at
    const prep = async (): Promise<Status> => {
      const st = await prepareChunks(this, e, g, n);
      return st === Status.OK ? prepareCopies(this, e, g, wants, layoutGen) : st;
    };
    const run = prep();
    this.track(run);
    void run.then((st) => {
      g.preparing = false;
      g.failed = st === Status.OK ? null : st;
      this.drain(e, g);
    });
  }

  private drain(e: Extent, g: ExtentGate): void {
    if (g.preparing) return;
    g.running = true;
    while (g.ops.length > 0 && !g.preparing) g.ops.shift()!();
    g.running = false;
    g.failed = null;
    if (!g.preparing && g.ops.length === 0 && e.gate === g) {
      e.gate = null;
      // prepared chunks no write took go back (a dirty one is zeroed again by the cleaner)
      if (g.prepared.length > 0) {
        this.unallocate(e, g.prepared);
        g.prepared.length = 0;
        this.kickCleaner();
      }
      // copies no write took hold a parent's bytes: back dirty
      if (g.copies.length > 0) {
        this.stats.copiesDiscarded += g.copies.length;
        this.discard(e, g.copies.map((pc) => pc.a));
        g.copies.length = 0;
      }
    }
  }

  /** Background: zero dirty chunks, fdatasync, then mark them clean (batches, off the IO path). */
  private kickCleaner(): void {
    if (this.cleanerRunning || this.stopped) return;
    if (!this.slots.some((s) => s.alloc.dirty > 0)) return;
    this.cleanerRunning = true;
    this.track(
      this.clean()
        .catch((err: unknown) => consola.error(`sds: chunk cleaner failed: ${String(err)}`))
        .finally(() => {
          this.cleanerRunning = false;
        }),
    );
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    const forget = () => this.background.delete(p);
    p.then(forget, forget);
  }

  private async clean(): Promise<void> {
    // a copy: removeDevice may take a slot out while this awaits
    for (const slot of [...this.slots]) {
      // read anew after every await (removeDevice sets it meanwhile)
      const gone = (): boolean => slot.removed === true;
      while (!this.stopped && !gone()) {
        const batch = slot.alloc.dirtyChunks(16);
        if (batch.length === 0) break;
        const takenBefore = slot.alloc.dirtyTaken;
        for (const phys of batch) {
          if (this.stopped) return;
          if (gone()) break;
          if (slot.alloc.isUsed(phys)) continue;
          slot.dev.write(this.zeros, phys * CHUNK);
          await yieldToLoop();
        }
        slot.written.markWritten();
        await slot.commit.whenDurable();
        if (this.stopped) return;
        if (gone()) break;
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

/** Bytes of logical chunk `chunk` of the extent (the last one may be short). */
export function chunkBytesOf(e: Extent, chunk: number): number {
  return Math.min(CHUNK, e.sizeBytes - chunk * CHUNK);
}

/** The id of the owner's first layer, from the extent (the owner id itself). */
export function ownerLayerId(e: Extent): string {
  return halvesToId(e.volumeHi, e.volumeLo);
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
