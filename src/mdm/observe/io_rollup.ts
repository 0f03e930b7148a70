// IO figures per PowerFlex object, from the windows of io_accounting.ts: rates per second of
// one object (Volume, Sdc, Sds, Device) or sums over a StoragePool, ProtectionDomain or the
// System, and their PowerFlex Bwc triplets. One IoRollup reads the topology it needs once
// (volume -> pool, device -> pool, SDS -> pools, pool -> PD), so a batched statistics query
// over every pool costs one pass, not one per pool.
//
// Attribution: user IO (userData*) of a pool is the sum of its volumes; SDS-side IO (primary,
// secondary, copies) is per SDS and goes to the pools of its devices in proportion to how many
// of its devices each pool has (an SDS normally serves one pool; the split only matters for an
// SDS with devices in several pools). Device IO goes to the device's pool.
//
// Bwc: numSeconds is always the window (Limits.ioBwcWindowMs / 1000 = 5); numOccured and
// totalWeightInKb are the window's rates times that, rounded. So an idle object answers
// {numSeconds: 5, numOccured: 0, totalWeightInKb: 0}, never numSeconds 0. Latency Bwc carry
// the latency sum in microseconds as totalWeightInKb (mean = totalWeightInKb / numOccured).

import { Limits } from "../../proto/limits.ts";
import type { MdmContext } from "../core/context.ts";
import {
  BYTES,
  client,
  CLIENT_CHANNELS,
  device,
  DEVICE_CHANNELS,
  LAT_US,
  OPS,
  sds,
  SDS_CHANNELS,
  type ClientKind,
  type SdsKind,
} from "./io_channels.ts";

export interface Bwc {
  numOccured: number;
  numSeconds: number;
  totalWeightInKb: number;
}

export const BWC_WINDOW_S = Math.round(Limits.ioBwcWindowMs / 1000);

export function bwcOf(opsPerS: number, bytesPerS: number): Bwc {
  return {
    numOccured: Math.round(opsPerS * BWC_WINDOW_S),
    numSeconds: BWC_WINDOW_S,
    totalWeightInKb: Math.round((bytesPerS * BWC_WINDOW_S) / 1024),
  };
}

export function latencyBwcOf(opsPerS: number, latencyUsPerS: number): Bwc {
  return { numOccured: Math.round(opsPerS * BWC_WINDOW_S), numSeconds: BWC_WINDOW_S, totalWeightInKb: Math.round(latencyUsPerS * BWC_WINDOW_S) };
}

const CLIENT_BWC: [string, ClientKind][] = [
  ["userDataReadBwc", "read"],
  ["userDataWriteBwc", "write"],
  ["userDataTrimBwc", "trim"],
];
const CLIENT_LATENCY: [string, ClientKind][] = [
  ["userDataSdcReadLatency", "read"],
  ["userDataSdcWriteLatency", "write"],
  ["userDataSdcTrimLatency", "trim"],
];

/** userData* Bwc and latency of client-layout rates (a volume, an SDC, or sums of them). */
export function clientBwcs(r: Float64Array): Record<string, Bwc> {
  const out: Record<string, Bwc> = {};
  for (const [name, k] of CLIENT_BWC) out[name] = bwcOf(r[client(k, OPS)] ?? 0, r[client(k, BYTES)] ?? 0);
  for (const [name, k] of CLIENT_LATENCY) out[name] = latencyBwcOf(r[client(k, OPS)] ?? 0, r[client(k, LAT_US)] ?? 0);
  return out;
}

function sumKinds(r: Float64Array, kinds: readonly SdsKind[], field: number): number {
  let s = 0;
  for (const k of kinds) s += r[sds(k, field)] ?? 0;
  return s;
}

const READS: SdsKind[] = ["primaryRead", "rebuildRead", "resyncRead", "moveRead"];
const WRITES: SdsKind[] = ["primaryWrite", "secondaryWrite", "rebuildWrite", "resyncWrite", "moveWrite"];

/** Back-end Bwc of SDS-layout rates: primary/secondary, totals, and copies (rebuild = fwdRebuild, resync = bckRebuild, move = rebalance). */
export function sdsBwcs(r: Float64Array) {
  const b = (k: SdsKind): Bwc => bwcOf(r[sds(k, OPS)] ?? 0, r[sds(k, BYTES)] ?? 0);
  return {
    primaryReadBwc: b("primaryRead"),
    primaryWriteBwc: b("primaryWrite"),
    // only the primary serves reads: a secondary never reads for a client
    secondaryReadBwc: bwcOf(0, 0),
    secondaryWriteBwc: b("secondaryWrite"),
    totalReadBwc: bwcOf(sumKinds(r, READS, OPS), sumKinds(r, READS, BYTES)),
    totalWriteBwc: bwcOf(sumKinds(r, WRITES, OPS), sumKinds(r, WRITES, BYTES)),
    fwdRebuildReadBwc: b("rebuildRead"),
    fwdRebuildWriteBwc: b("rebuildWrite"),
    bckRebuildReadBwc: b("resyncRead"),
    bckRebuildWriteBwc: b("resyncWrite"),
    normRebuildReadBwc: bwcOf(0, 0),
    normRebuildWriteBwc: bwcOf(0, 0),
    rebalanceReadBwc: b("moveRead"),
    rebalanceWriteBwc: b("moveWrite"),
  };
}

/** Device figures: total read/write Bwc and PowerFlex's average latency and size fields. */
export function deviceFigures(r: Float64Array): Record<string, Bwc | number> {
  const ops = (k: "read" | "write") => r[device(k, OPS)] ?? 0;
  const avg = (num: number, den: number) => (den > 0 ? Math.round(num / den) : 0);
  return {
    totalReadBwc: bwcOf(ops("read"), r[device("read", BYTES)] ?? 0),
    totalWriteBwc: bwcOf(ops("write"), r[device("write", BYTES)] ?? 0),
    avgReadLatencyInMicrosec: avg(r[device("read", LAT_US)] ?? 0, ops("read")),
    avgWriteLatencyInMicrosec: avg(r[device("write", LAT_US)] ?? 0, ops("write")),
    avgReadSizeInBytes: avg(r[device("read", BYTES)] ?? 0, ops("read")),
    avgWriteSizeInBytes: avg(r[device("write", BYTES)] ?? 0, ops("write")),
  };
}

function addScaled(out: Float64Array, src: Float64Array, factor: number): void {
  for (let c = 0; c < out.length; c++) out[c] = (out[c] ?? 0) + (src[c] ?? 0) * factor;
}

/** Rates of every object and group over one window at one instant; topology read once. */
export class IoRollup {
  private readonly nowMs: number;
  private readonly poolOfVolume = new Map<string, string>();
  private readonly pdOfPool = new Map<string, string>();
  /** sdsId -> poolId -> share of its devices */
  private readonly sdsPoolShare = new Map<string, Map<string, number>>();

  constructor(
    private readonly ctx: MdmContext,
    private readonly windowMs: number = Limits.ioBwcWindowMs,
  ) {
    this.nowMs = ctx.clock();
    const q = ctx.store.sqlite;
    for (const p of q.query<{ id: string; pd_id: string }, []>("SELECT id, pd_id FROM storage_pool").all()) this.pdOfPool.set(p.id, p.pd_id);
    const counts = new Map<string, Map<string, number>>();
    for (const d of q.query<{ sds_id: string; pool_id: string }, []>("SELECT sds_id, pool_id FROM device").all()) {
      const m = counts.get(d.sds_id) ?? new Map<string, number>();
      m.set(d.pool_id, (m.get(d.pool_id) ?? 0) + 1);
      counts.set(d.sds_id, m);
    }
    for (const [sdsId, m] of counts) {
      let n = 0;
      for (const v of m.values()) n += v;
      this.sdsPoolShare.set(sdsId, new Map([...m].map(([p, c]) => [p, c / n])));
    }
  }

  private get io() {
    return this.ctx.observe.io;
  }

  private volumePool(volumeId: string): string | undefined {
    if (this.poolOfVolume.size === 0) {
      for (const v of this.ctx.store.sqlite.query<{ id: string; pool_id: string }, []>("SELECT id, pool_id FROM volume").all()) this.poolOfVolume.set(v.id, v.pool_id);
    }
    return this.poolOfVolume.get(volumeId);
  }

  volume(volumeId: string): Float64Array {
    const out = new Float64Array(CLIENT_CHANNELS);
    this.io.addVolumeRates(out, volumeId, this.nowMs, this.windowMs);
    return out;
  }

  /** User IO of several volumes summed (a V-Tree's members). */
  volumes(volumeIds: readonly string[]): Float64Array {
    const out = new Float64Array(CLIENT_CHANNELS);
    for (const id of volumeIds) this.io.addVolumeRates(out, id, this.nowMs, this.windowMs);
    return out;
  }

  sdc(sdcId: string): Float64Array {
    const out = new Float64Array(CLIENT_CHANNELS);
    this.io.addSdcRates(out, sdcId, this.nowMs, this.windowMs);
    return out;
  }

  sds(sdsId: string): Float64Array {
    const out = new Float64Array(SDS_CHANNELS);
    this.io.addSdsRates(out, sdsId, this.nowMs, this.windowMs);
    return out;
  }

  device(deviceId: string): Float64Array {
    const out = new Float64Array(DEVICE_CHANNELS);
    this.io.addDeviceRates(out, deviceId, this.nowMs, this.windowMs);
    return out;
  }

  /** User IO of the volumes whose pool passes `keep` (all volumes when keep is null). */
  clientOf(keep: ((poolId: string) => boolean) | null): Float64Array {
    const out = new Float64Array(CLIENT_CHANNELS);
    if (keep === null) {
      for (const id of this.io.reportingSdcs()) this.io.addSdcRates(out, id, this.nowMs, this.windowMs);
      return out;
    }
    for (const id of this.io.volumesWithWindows()) {
      const pool = this.volumePool(id);
      if (pool !== undefined && keep(pool)) this.io.addVolumeRates(out, id, this.nowMs, this.windowMs);
    }
    return out;
  }

  /** SDS-side IO attributed to the pools passing `keep` (all SDSs when keep is null). */
  sdsOf(keep: ((poolId: string) => boolean) | null): Float64Array {
    const out = new Float64Array(SDS_CHANNELS);
    for (const id of this.io.reportingSdss()) {
      let share = 1;
      if (keep !== null) {
        share = 0;
        for (const [pool, s] of this.sdsPoolShare.get(id) ?? []) if (keep(pool)) share += s;
      }
      if (share > 0) addScaled(out, this.sds(id), share);
    }
    return out;
  }

  poolFilter(poolId: string): (p: string) => boolean {
    return (p) => p === poolId;
  }

  pdFilter(pdId: string): (p: string) => boolean {
    return (p) => this.pdOfPool.get(p) === pdId;
  }

  /** Every Bwc property of a group of pools (or the whole system with null). */
  groupBwcs(keep: ((poolId: string) => boolean) | null): Record<string, Bwc> {
    return { ...clientBwcs(this.clientOf(keep)), ...sdsBwcs(this.sdsOf(keep)) };
  }
}

/** Copy bytes per second of SDS-layout rates: (rebuild incl. resync, rebalance), counted on the writing side. */
export function copyRates(r: Float64Array): { rebuildBps: number; rebalanceBps: number } {
  return {
    rebuildBps: (r[sds("rebuildWrite", BYTES)] ?? 0) + (r[sds("resyncWrite", BYTES)] ?? 0),
    rebalanceBps: r[sds("moveWrite", BYTES)] ?? 0,
  };
}
