// Where one more copy of one extent goes (a rebuild, resync-less rebuild or move target), and the
// SDS/device view the recovery core works on. Pure: reads the view, returns a device.
// Rules (the same as placement.ts for new volumes, for one copy next to existing ones):
// - never on an SDS that holds a copy of the extent it keeps, never in the fault set of such an
//   SDS when the pool has fault sets (an SDS without a fault set is then its own domain);
// - only connected SDSs heard from since the MDM started, not being removed, Normal devices of the extent's pool, with
//   room for a whole extent: thick copies need real room (capacity - max(thick assigned, used)),
//   thin ones fit while assigned stays under Limits.maxThinOvercommitRatio x capacity;
// - among the eligible devices the emptiest after the copy wins ((assigned + extent) / capacity),
//   ties broken by SDS id then device id, so a plan is reproducible.

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

/** The device for one new copy, or null when the rules leave none. */
export function chooseTargetDevice(sds: readonly SdsView[], req: TargetRequest): CopyRef | null {
  const avoid = new Set(req.avoidDomainsOf.map((s) => domainOf(s, req.hasFaultSets)));
  let best: { sdsId: string; deviceId: string; fill: number } | null = null;
  for (const s of sds) {
    if (!s.connected || !s.confirmed || s.removing || req.excludeSds.has(s.sdsId)) continue;
    if (req.onlySdsId !== undefined && s.sdsId !== req.onlySdsId) continue;
    if (avoid.has(domainOf(s, req.hasFaultSets))) continue;
    for (const d of s.devices) {
      if (d.poolId !== req.poolId || !deviceHasRoom(d, req.extentBytes, req.thick)) continue;
      const fill = (d.assignedBytes + req.extentBytes) / d.capacityBytes;
      if (
        best === null ||
        fill < best.fill ||
        (fill === best.fill && (s.sdsId < best.sdsId || (s.sdsId === best.sdsId && d.deviceId < best.deviceId)))
      ) {
        best = { sdsId: s.sdsId, deviceId: d.deviceId, fill };
      }
    }
  }
  return best === null ? null : { sdsId: best.sdsId, deviceId: best.deviceId };
}

/** Account one more (or, with a negative count, one less) copy on a device of the view. */
export function addToDevice(sds: readonly SdsView[], deviceId: string, bytes: number, thick: boolean): void {
  for (const s of sds) {
    for (const d of s.devices) {
      if (d.deviceId !== deviceId) continue;
      d.assignedBytes += bytes;
      if (thick) d.thickAssignedBytes += bytes;
      return;
    }
  }
}
