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

interface DeviceLite {
  pool_id: string;
  capacity_bytes: number;
  used_bytes: number;
  thick_assigned_bytes: number;
  state: string;
}

export function poolUsages(ctx: MdmContext): PoolUsage[] {
  const q = ctx.store.sqlite;
  const pools = q
    .query<{ id: string; pd_id: string; name: string; spare_percentage: number; granularity_bytes: number; high: number; critical: number }, []>(
      "SELECT id, pd_id, name, spare_percentage, granularity_bytes, capacity_alert_high_pct AS high, capacity_alert_critical_pct AS critical FROM storage_pool ORDER BY id",
    )
    .all();
  const devices = q.query<DeviceLite, []>("SELECT pool_id, capacity_bytes, used_bytes, thick_assigned_bytes, state FROM device").all();
  const vols = q
    .query<{ pool_id: string; volume_type: string; bytes: number }, []>("SELECT pool_id, volume_type, coalesce(sum(size_bytes), 0) AS bytes FROM volume GROUP BY pool_id, volume_type")
    .all();
  const byPool = new Map<string, DeviceLite[]>();
  for (const d of devices) {
    const list = byPool.get(d.pool_id) ?? [];
    list.push(d);
    byPool.set(d.pool_id, list);
  }
  return pools.map((p) => {
    const devs = byPool.get(p.id) ?? [];
    const thickNet = vols.find((v) => v.pool_id === p.id && v.volume_type === "ThickProvisioned")?.bytes ?? 0;
    const thinNet = vols.find((v) => v.pool_id === p.id && v.volume_type === "ThinProvisioned")?.bytes ?? 0;
    let thinUsedRaw = 0;
    let failed = 0;
    for (const d of devs) {
      if (d.state === "Failed") failed += d.capacity_bytes;
      else thinUsedRaw += Math.max(0, d.used_bytes - d.thick_assigned_bytes);
    }
    const cap = poolCapacity(
      {
        devices: devs.map((d) => ({ capacityBytes: d.capacity_bytes, usedBytes: d.used_bytes, state: d.state === "Failed" ? "Failed" : "Normal" })),
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

export const OVERCOMMIT_LIMIT = Limits.maxThinOvercommitRatio;
