// Where one more copy of one extent goes (a rebuild, resync-less rebuild or move target), and the
// SDS/device view the recovery core works on. Pure: reads the view, returns a device.
// Rules (the same as placement.ts for new volumes, for one copy next to existing ones):
// - never on an SDS that holds a copy of the extent it keeps, never in the fault set of such an
//   SDS when the pool has fault sets (an SDS without a fault set is then its own domain);
// - only connected SDSs heard from since the MDM started, not being removed, Normal devices of the extent's pool, with
//   room for a whole extent: thick copies need real room (capacity - max(thick assigned, used)),
//   thin ones fit while assigned stays under Limits.maxThinOvercommitRatio x capacity;
// - among the eligible devices the emptiest after the copy wins ((assigned + extent) / capacity),
//   ties broken by tieOf (a mix of the device id and its assigned bytes), then the device id, so
//   a plan is reproducible. Ties by SDS id, as before, made equally filled pools take the lowest
//   ids first, all devices of one SDS in a row: one SDS's loss at 1,000 SDSs x 8 equal devices put
//   its 3,200 new copies on ~400 of 999 SDSs, up to 8 in a row on one (bench/placement_spread.ts).

import { Limits } from "../../proto/limits.ts";
import type { CopyRef } from "./recovery_model.ts";

export interface DeviceView {
  deviceId: string;
  poolId: string;
  capacityBytes: number;
  /** every copy placed on the device (in-sync, target, away), thin and thick */
  assignedBytes: number;
  thickAssignedBytes: number;
  usedBytes: number;
  failed: boolean;
}

export interface SdsView {
  sdsId: string;
  faultSetId: string | null;
  connected: boolean;
  /** heard from since the MDM started (a restarted MDM presumes every SDS alive until the
   *  timeout, but only one that checked in counts as back or takes new copies) */
  confirmed: boolean;
  /** when it stopped being Connected (null while connected) */
  downSinceMs: number | null;
  /** sdsState RemovalInProgress: its copies move away, it takes no new ones */
  removing: boolean;
  devices: DeviceView[];
}

/** Fault domain of an SDS: its fault set when the pool uses fault sets, else itself. */
export function domainOf(sds: Pick<SdsView, "sdsId" | "faultSetId">, hasFaultSets: boolean): string {
  return hasFaultSets && sds.faultSetId !== null ? `fs:${sds.faultSetId}` : `sds:${sds.sdsId}`;
}

export function poolHasFaultSets(sds: readonly SdsView[], poolId: string): boolean {
  return sds.some((s) => s.faultSetId !== null && s.devices.some((d) => d.poolId === poolId));
}

/**
 * Order among devices of equal fill: a 32-bit mix (the murmur3 finalizer) of the device id's
 * halves and its assigned MiB, so equally filled devices come in an order unrelated to their
 * SDSs (ids are handed out in order, so an SDS's devices have neighbouring ids), and a device
 * that took a copy draws a new place. Deterministic: the same view gives the same plan.
 */
export function tieOf(d: Pick<DeviceView, "deviceId" | "assignedBytes">): number {
  const hi = Number.parseInt(d.deviceId.slice(0, 8), 16) | 0;
  const lo = Number.parseInt(d.deviceId.slice(8, 16), 16) | 0;
  let x = (hi ^ Math.imul(lo, 0x9e3779b1) ^ Math.floor(d.assignedBytes / 1048576)) | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The ranking's tie-break after equal fill: tieOf, then the device id (the order stays total). */
function tieLess(a: DeviceView, b: DeviceView): boolean {
  const ta = tieOf(a);
  const tb = tieOf(b);
  return ta !== tb ? ta < tb : a.deviceId < b.deviceId;
}

export function deviceHasRoom(d: DeviceView, extentBytes: number, thick: boolean): boolean {
  if (d.failed || d.capacityBytes <= 0) return false;
  if (thick) return d.capacityBytes - Math.max(d.thickAssignedBytes, d.usedBytes) >= extentBytes;
  return d.capacityBytes * Limits.maxThinOvercommitRatio - d.assignedBytes >= extentBytes;
}

export interface TargetRequest {
  poolId: string;
  extentBytes: number;
  thick: boolean;
  hasFaultSets: boolean;
  /** SDSs that may not take the copy (holders of the extent) */
  excludeSds: ReadonlySet<string>;
  /** SDSs whose fault domain the copy must avoid (the holders it stays next to) */
  avoidDomainsOf: readonly Pick<SdsView, "sdsId" | "faultSetId">[];
  /** only this SDS (rebalance moves onto the emptiest SDS) */
  onlySdsId?: string;
}

/**
 * chooseTargetDevice without a scan of every device per choice: one SDS's loss at 1,000 SDSs x 8
 * devices and 100,000 volumes asks 3,204 choices of 8,000 devices each (2.3 s of one recovery
 * tick as a scan). Per SDS view array (one recovery tick, one drain check) and per pool and
 * extent size, the pool's devices sit in a binary heap ordered as the scan ranks them: fill after
 * one more extent ((assigned + extent) / capacity), then tieOf, then device id. A choice walks the
 * heap best-first (without changing it) past the devices the request rules out (excluded SDSs,
 * avoided fault domains, not connected, no room), so it costs the ones ruled out ahead of the
 * winner, not the pool. addToDevice, the only writer of a view's assigned bytes, moves the device
 * in its heaps. The index is rebuilt when the array's length or its first or last SDS object
 * changed; an SDS's device list and its connected / confirmed / removing flags are taken as
 * fixed once indexed (the views are made per tick and never edited so; a drain check copies them).
 */
interface PoolEntry {
  sds: SdsView;
  dev: DeviceView;
  /** domainOf(sds, true) / domainOf(sds, false) */
  domFs: string;
  domOwn: string;
}

class PoolHeap {
  /** entry indexes in heap order; pos[entry] = its place in h */
  private readonly h: number[];
  private readonly pos: Int32Array;

  constructor(
    private readonly entries: readonly PoolEntry[],
    private readonly extentBytes: number,
  ) {
    // only SDSs that may take a copy at all (connected, heard from, not being removed: fixed for
    // a view): after a mass loss the down SDSs' devices are the emptiest, and every choice would
    // walk past all of them
    this.h = [];
    entries.forEach((e, i) => {
      if (e.sds.connected && e.sds.confirmed && !e.sds.removing) this.h.push(i);
    });
    this.pos = new Int32Array(entries.length).fill(-1);
    this.h.forEach((e, p) => (this.pos[e] = p));
    // heapify bottom-up (O(n)): sorting the 8,000 devices of a pool was ~10 ms of every step
    // that places a copy; `less` is a strict total order, so any heap walks best-first alike
    for (let p = (this.h.length >> 1) - 1; p >= 0; p--) this.siftDown(p);
  }

  /** the scan's ranking: lower fill after the copy, then tieLess */
  private less(a: number, b: number): boolean {
    const ea = this.entries[a]!;
    const eb = this.entries[b]!;
    // a device without capacity (never chosen: no room) ranks last, never NaN (0 / 0): the order
    // stays total, which the heapify and the walk rely on
    const fa = ea.dev.capacityBytes > 0 ? (ea.dev.assignedBytes + this.extentBytes) / ea.dev.capacityBytes : Infinity;
    const fb = eb.dev.capacityBytes > 0 ? (eb.dev.assignedBytes + this.extentBytes) / eb.dev.capacityBytes : Infinity;
    if (fa !== fb) return fa < fb;
    return tieLess(ea.dev, eb.dev);
  }

  private swap(p: number, q: number): void {
    const a = this.h[p]!;
    const b = this.h[q]!;
    this.h[p] = b;
    this.h[q] = a;
    this.pos[b] = p;
    this.pos[a] = q;
  }

  /** the entry's figures changed: move it to its place */
  update(entry: number): void {
    let p = this.pos[entry]!;
    if (p < 0) return; // not in the heap (its SDS takes no copies)
    while (p > 0) {
      const up = (p - 1) >> 1;
      if (!this.less(this.h[p]!, this.h[up]!)) break;
      this.swap(p, up);
      p = up;
    }
    this.siftDown(p);
  }

  private siftDown(p: number): void {
    for (;;) {
      const l = 2 * p + 1;
      const r = l + 1;
      let m = p;
      if (l < this.h.length && this.less(this.h[l]!, this.h[m]!)) m = l;
      if (r < this.h.length && this.less(this.h[r]!, this.h[m]!)) m = r;
      if (m === p) break;
      this.swap(p, m);
      p = m;
    }
  }

  /** the best entry `ok` accepts: heap places visited best-first from the root (a frontier heap) */
  best(ok: (e: PoolEntry) => boolean): PoolEntry | null {
    if (this.h.length === 0) return null;
    const frontier: number[] = [0];
    const lessAt = (p: number, q: number) => this.less(this.h[p]!, this.h[q]!);
    while (frontier.length > 0) {
      // pop the best place of the frontier
      const top = frontier[0]!;
      const last = frontier.pop()!;
      if (frontier.length > 0) {
        frontier[0] = last;
        for (let i = 0; ; ) {
          const l = 2 * i + 1;
          const r = l + 1;
          let m = i;
          if (l < frontier.length && lessAt(frontier[l]!, frontier[m]!)) m = l;
          if (r < frontier.length && lessAt(frontier[r]!, frontier[m]!)) m = r;
          if (m === i) break;
          [frontier[i], frontier[m]] = [frontier[m]!, frontier[i]!];
          i = m;
        }
      }
      const e = this.entries[this.h[top]!]!;
      if (ok(e)) return e;
      for (const c of [2 * top + 1, 2 * top + 2]) {
        if (c >= this.h.length) continue;
        frontier.push(c);
        for (let i = frontier.length - 1; i > 0; ) {
          const up = (i - 1) >> 1;
          if (!lessAt(frontier[i]!, frontier[up]!)) break;
          [frontier[i], frontier[up]] = [frontier[up]!, frontier[i]!];
          i = up;
        }
      }
    }
    return null;
  }
}

interface PoolIndex {
  entries: PoolEntry[];
  entryOf: Map<string, number>;
  /** by extent size */
  heaps: Map<number, PoolHeap>;
}
interface ViewIndex {
  sdsCount: number;
  first: SdsView | undefined;
  last: SdsView | undefined;
  byPool: Map<string, PoolIndex>;
  /** the first device of each id in array order (as a scan finds it), with its pool */
  devById: Map<string, DeviceView>;
  sdsById: Map<string, SdsView>;
}
const indexes = new WeakMap<readonly SdsView[], ViewIndex>();

function indexOf(sds: readonly SdsView[]): ViewIndex {
  const have = indexes.get(sds);
  if (have !== undefined && have.sdsCount === sds.length && have.first === sds[0] && have.last === sds[sds.length - 1]) return have;
  const byPool = new Map<string, PoolIndex>();
  const devById = new Map<string, DeviceView>();
  const sdsById = new Map<string, SdsView>();
  for (const s of sds) {
    if (!sdsById.has(s.sdsId)) sdsById.set(s.sdsId, s);
    const domFs = domainOf(s, true);
    const domOwn = domainOf(s, false);
    for (const d of s.devices) {
      if (!devById.has(d.deviceId)) devById.set(d.deviceId, d);
      let p = byPool.get(d.poolId);
      if (p === undefined) byPool.set(d.poolId, (p = { entries: [], entryOf: new Map(), heaps: new Map() }));
      if (!p.entryOf.has(d.deviceId)) p.entryOf.set(d.deviceId, p.entries.length);
      p.entries.push({ sds: s, dev: d, domFs, domOwn });
    }
  }
  const idx: ViewIndex = { sdsCount: sds.length, first: sds[0], last: sds[sds.length - 1], byPool, devById, sdsById };
  indexes.set(sds, idx);
  return idx;
}

/** The device for one new copy, or null when the rules leave none. */
export function chooseTargetDevice(sds: readonly SdsView[], req: TargetRequest): CopyRef | null {
  const index = indexOf(sds);
  // onto one SDS (rebalance): its own devices, as the scan would take them
  if (req.onlySdsId !== undefined) {
    const one = index.sdsById.get(req.onlySdsId);
    return one === undefined ? null : chooseTargetDeviceByScan([one], req);
  }
  const pool = index.byPool.get(req.poolId);
  if (pool === undefined) return null;
  let heap = pool.heaps.get(req.extentBytes);
  if (heap === undefined) pool.heaps.set(req.extentBytes, (heap = new PoolHeap(pool.entries, req.extentBytes)));
  const avoid = req.avoidDomainsOf.map((s) => domainOf(s, req.hasFaultSets));
  const e = heap.best(({ sds: s, dev: d, domFs, domOwn }) => {
    if (!s.connected || !s.confirmed || s.removing || req.excludeSds.has(s.sdsId)) return false;
    if (avoid.length > 0 && avoid.includes(req.hasFaultSets ? domFs : domOwn)) return false;
    return deviceHasRoom(d, req.extentBytes, req.thick);
  });
  return e === null ? null : { sdsId: e.sds.sdsId, deviceId: e.dev.deviceId };
}

/** chooseTargetDevice as a plain scan of every SDS's devices (the rule as written; tests hold the heap to it). */
export function chooseTargetDeviceByScan(sds: readonly SdsView[], req: TargetRequest): CopyRef | null {
  const avoid = new Set(req.avoidDomainsOf.map((s) => domainOf(s, req.hasFaultSets)));
  let best: { sdsId: string; dev: DeviceView; fill: number } | null = null;
  for (const s of sds) {
    if (!s.connected || !s.confirmed || s.removing || req.excludeSds.has(s.sdsId)) continue;
    if (req.onlySdsId !== undefined && s.sdsId !== req.onlySdsId) continue;
    if (avoid.has(domainOf(s, req.hasFaultSets))) continue;
    for (const d of s.devices) {
      if (d.poolId !== req.poolId || !deviceHasRoom(d, req.extentBytes, req.thick)) continue;
      const fill = (d.assignedBytes + req.extentBytes) / d.capacityBytes;
      if (best === null || fill < best.fill || (fill === best.fill && tieLess(d, best.dev))) best = { sdsId: s.sdsId, dev: d, fill };
    }
  }
  return best === null ? null : { sdsId: best.sdsId, deviceId: best.dev.deviceId };
}

/** Account one more (or, with a negative count, one less) copy on a device of the view. */
export function addToDevice(sds: readonly SdsView[], deviceId: string, bytes: number, thick: boolean): void {
  const index = indexOf(sds);
  const d = index.devById.get(deviceId);
  if (d === undefined) return;
  d.assignedBytes += bytes;
  if (thick) d.thickAssignedBytes += bytes;
  const pool = index.byPool.get(d.poolId);
  const entry = pool?.entryOf.get(deviceId);
  if (pool !== undefined && entry !== undefined) for (const heap of pool.heaps.values()) heap.update(entry);
}
