// How full each storage pool is, as the capacity alerts and the /metrics gauges see it, read in
// one pass over devices and volumes (not one query per pool). Bytes are raw (both copies on
// devices) unless named net.
// - usable = raw of Normal devices minus the spare reserve (topology/capacity.ts's rules);
// - used = thick reservations (both copies) + thin data written beyond each device's thick
//   share, on Normal devices; utilization = used / usable (>= 1 when nothing is usable and
//   something is used);
// - thin allocated (net) = the sizes of the pool's thin volumes; overcommit = (thin allocated
//   x 2 + thick reserved raw) / usable, against Limits.maxThinOvercommitRatio.
// Invariants: every figure is >= 0; pools without devices have ratio 0.

import { Limits } from "../../proto/limits.ts";
import { COPIES, poolCapacity } from "../topology/capacity.ts";
import type { MdmContext } from "../core/context.ts";
import { placementViewOf } from "../topology/placement_view.ts";
import { volumeSums } from "./observe_cache.ts";

export interface PoolUsage {
  poolId: string;
  pdId: string;
  name: string;
  rawBytes: number;
  /** raw of Failed devices (gone until rebuilt) */
  failedBytes: number;
  spareBytes: number;
  usableRawBytes: number;
  usedRawBytes: number;
  thickReservedRawBytes: number;
  thinUsedRawBytes: number;
  thinAllocatedNetBytes: number;
  /** device-reported bytes in use (Normal devices) */
  inUseRawBytes: number;
  availableForVolumeAllocationBytes: number;
  provisionedNetBytes: number;
  utilizationRatio: number;
  overcommitRatio: number;
  highThresholdPct: number;
  criticalThresholdPct: number;
}

/** the device figures read here (the placement view's rows have them) */
interface DeviceLite {
  poolId: string;
  capacityBytes: number;
  usedBytes: number;
  thickAssignedBytes: number;
  state: string;
}

export function poolUsages(ctx: MdmContext): PoolUsage[] {
  const q = ctx.store.sqlite;
  const pools = q
    .query<{ id: string; pd_id: string; name: string; spare_percentage: number; granularity_bytes: number; high: number; critical: number }, []>(
      "SELECT id, pd_id, name, spare_percentage, granularity_bytes, capacity_alert_high_pct AS high, capacity_alert_critical_pct AS critical FROM storage_pool ORDER BY id",
    )
    .all();
  // at rest these were most of the observe step at 100,000 volumes: the volume sums are kept by
  // triggers (observe_cache.ts) and the active MDM's devices come from the placement view
  const vols = volumeSums(ctx);
  const byPool = devicesByPool(ctx, pools);
  return pools.map((p) => {
    const devs = byPool.get(p.id) ?? [];
    const thickNet = vols.find((v) => v.pool_id === p.id && v.volume_type === "ThickProvisioned")?.bytes ?? 0;
    const thinNet = vols.find((v) => v.pool_id === p.id && v.volume_type === "ThinProvisioned")?.bytes ?? 0;
    let thinUsedRaw = 0;
    let failed = 0;
    for (const d of devs) {
      if (d.state === "Failed") failed += d.capacityBytes;
      else thinUsedRaw += Math.max(0, d.usedBytes - d.thickAssignedBytes);
    }
    const cap = poolCapacity(
      {
        devices: devs.map((d) => ({ capacityBytes: d.capacityBytes, usedBytes: d.usedBytes, state: d.state === "Failed" ? "Failed" : "Normal" })),
        sparePercentage: p.spare_percentage,
        thickReservedBytes: thickNet,
        thinUsedBytes: Math.floor(thinUsedRaw / COPIES),
      },
      p.granularity_bytes,
    );
    const used = cap.thickReservedRawBytes + thinUsedRaw;
    const usable = cap.usableRawBytes;
    const ratio = (num: number) => (usable > 0 ? num / usable : num > 0 ? 1 : 0);
    return {
      poolId: p.id,
      pdId: p.pd_id,
      name: p.name,
      rawBytes: cap.rawBytes,
      failedBytes: failed,
      spareBytes: cap.spareBytes,
      usableRawBytes: usable,
      usedRawBytes: used,
      thickReservedRawBytes: cap.thickReservedRawBytes,
      thinUsedRawBytes: thinUsedRaw,
      thinAllocatedNetBytes: thinNet,
      inUseRawBytes: cap.inUseRawBytes,
      availableForVolumeAllocationBytes: cap.availableForVolumeAllocationBytes,
      provisionedNetBytes: thinNet + thickNet,
      utilizationRatio: ratio(used),
      overcommitRatio: ratio(thinNet * COPIES + cap.thickReservedRawBytes),
      highThresholdPct: p.high,
      criticalThresholdPct: p.critical,
    };
  });
}

/** Every device of every pool: the placement view's rows on the active MDM, read from the store elsewhere (a standby: query_only). */
function devicesByPool(ctx: MdmContext, pools: readonly { id: string }[]): Map<string, readonly DeviceLite[]> {
  if (ctx.meta.isLeader()) {
    const view = placementViewOf(ctx);
    return new Map(pools.map((p) => [p.id, view.devicesOf(p.id)]));
  }
  const devices = ctx.store.sqlite
    .query<DeviceLite, []>("SELECT pool_id AS poolId, capacity_bytes AS capacityBytes, used_bytes AS usedBytes, thick_assigned_bytes AS thickAssignedBytes, state FROM device")
    .all();
  return Map.groupBy(devices, (d) => d.poolId);
}

export const OVERCOMMIT_LIMIT = Limits.maxThinOvercommitRatio;
