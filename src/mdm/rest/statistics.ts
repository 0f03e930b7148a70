// Statistics objects of the PowerFlex REST API (GET …/relationships/Statistics and
// querySelectedStatistics): capacity in KiB from the pool capacity math, object counts, recovery
// figures (degraded/pending/active rebuild and rebalance capacity, and for a pool the whole
// RebuildStatus: state, progress, rate, ETA, stall flag), and the IO Bwc triplets of the
// observe room (observe/io_rollup.ts: user IO per volume and SDC summed into pools, protection
// domains and the system; primary, secondary, total and copy IO per SDS; device IO), over a 5 s
// window refreshed by every heartbeat.
// Invariants: capacity fields of a protection domain and of the system are sums over their
// pools; a Bwc always has numSeconds 5 (idle: zero counts, never numSeconds 0 with counts);
// an unknown id is NOT_FOUND; nothing here writes.

import { eq, inArray, sql } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { PowerFlexType, RebuildStatus } from "../../proto/powerflex_api.ts";
import { recoveryStatus } from "../recovery/recovery.ts";
import {
  deviceTable,
  faultSetTable,
  protectionDomainTable,
  sdcTable,
  sdsTable,
  storagePoolTable,
  volumeMappingTable,
  volumeTable,
  vtreeTable,
  type DeviceRow,
  type StoragePoolRow,
} from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { getDevice, getPd, getPool, getSdc, getSds, getVolume } from "../core/lookup.ts";
import { poolCapacityOf } from "../topology/volumes.ts";
import { clientBwcs, deviceFigures, IoRollup, sdsBwcs } from "../observe/io_rollup.ts";
import { SDS_CHANNELS } from "../observe/io_channels.ts";
import { poolSnapBytes, vtreeCapacity } from "../vtree/layer_usage.ts";
import { descendantsOf } from "../vtree/snapshots.ts";
import { getVTree, membersOf } from "../vtree/vtree_store.ts";

export type Stats = Record<string, unknown>;

const kb = (bytes: number) => Math.floor(bytes / 1024);

interface CapacityFigures {
  maxCapacityInKb: number;
  capacityLimitInKb: number;
  spareCapacityInKb: number;
  capacityInUseInKb: number;
  thickCapacityInUseInKb: number;
  thinCapacityInUseInKb: number;
  snapCapacityInUseInKb: number;
  snapCapacityInUseOccupiedInKb: number;
  thinCapacityAllocatedInKm: number;
  thinCapacityAllocatedInKb: number;
  unusedCapacityInKb: number;
  capacityAvailableForVolumeAllocationInKb: number;
  volumeAllocationLimitInKb: number;
  protectedCapacityInKb: number;
  degradedHealthyCapacityInKb: number;
  degradedFailedCapacityInKb: number;
  failedCapacityInKb: number;
  inMaintenanceCapacityInKb: number;
}

function zeroCapacity(): CapacityFigures {
  return {
    maxCapacityInKb: 0,
    capacityLimitInKb: 0,
    spareCapacityInKb: 0,
    capacityInUseInKb: 0,
    thickCapacityInUseInKb: 0,
    thinCapacityInUseInKb: 0,
    snapCapacityInUseInKb: 0,
    snapCapacityInUseOccupiedInKb: 0,
    thinCapacityAllocatedInKm: 0,
    thinCapacityAllocatedInKb: 0,
    unusedCapacityInKb: 0,
    capacityAvailableForVolumeAllocationInKb: 0,
    volumeAllocationLimitInKb: 0,
    protectedCapacityInKb: 0,
    degradedHealthyCapacityInKb: 0,
    degradedFailedCapacityInKb: 0,
    failedCapacityInKb: 0,
    inMaintenanceCapacityInKb: 0,
  };
}

function addCapacity(a: CapacityFigures, b: CapacityFigures): CapacityFigures {
  const out = zeroCapacity();
  for (const k of Object.keys(out) as (keyof CapacityFigures)[]) out[k] = a[k] + b[k];
  return out;
}

function poolCapacityFigures(ctx: MdmContext, pool: StoragePoolRow, devices: DeviceRow[]): CapacityFigures {
  const cap = poolCapacityOf(ctx, pool);
  const thinAllocated = ctx.store.db
    .select({ bytes: sql<number>`coalesce(sum(${volumeTable.sizeBytes}), 0)` })
    .from(volumeTable)
    .where(sql`${volumeTable.poolId} = ${pool.id} AND ${volumeTable.volumeType} = 'ThinProvisioned'`)
    .get();
  let thinUsedRaw = 0;
  let failedRaw = 0;
  for (const d of devices) {
    thinUsedRaw += Math.max(0, d.usedBytes - d.thickAssignedBytes);
    if (d.state === "Failed") failedRaw += d.capacityBytes;
  }
  return {
    maxCapacityInKb: kb(cap.rawBytes + failedRaw),
    capacityLimitInKb: kb(cap.rawBytes),
    spareCapacityInKb: kb(cap.spareBytes),
    capacityInUseInKb: kb(cap.inUseRawBytes),
    thickCapacityInUseInKb: kb(cap.thickReservedRawBytes),
    thinCapacityInUseInKb: kb(thinUsedRaw),
    snapCapacityInUseInKb: kb(poolSnapBytes(ctx, pool.id)),
    snapCapacityInUseOccupiedInKb: kb(poolSnapBytes(ctx, pool.id)),
    thinCapacityAllocatedInKm: kb(thinAllocated?.bytes ?? 0),
    thinCapacityAllocatedInKb: kb(thinAllocated?.bytes ?? 0),
    unusedCapacityInKb: kb(Math.max(0, cap.usableRawBytes - cap.inUseRawBytes)),
    capacityAvailableForVolumeAllocationInKb: kb(cap.availableForVolumeAllocationBytes),
    volumeAllocationLimitInKb: kb(Limits.maxVolumeBytes),
    protectedCapacityInKb: kb(cap.inUseRawBytes),
    degradedHealthyCapacityInKb: 0,
    degradedFailedCapacityInKb: 0,
    failedCapacityInKb: kb(failedRaw),
    inMaintenanceCapacityInKb: 0,
  };
}

function volumeCounts(ctx: MdmContext, poolIds: string[] | null): { numOfVolumes: number; numOfThickBaseVolumes: number; numOfThinBaseVolumes: number; numOfSnapshots: number } {
  const rows = ctx.store.db
    .select({ poolId: volumeTable.poolId, type: volumeTable.volumeType, n: sql<number>`count(*)` })
    .from(volumeTable)
    .groupBy(volumeTable.poolId, volumeTable.volumeType)
    .all();
  let thick = 0;
  let thin = 0;
  let snaps = 0;
  for (const r of rows) {
    if (poolIds !== null && !poolIds.includes(r.poolId)) continue;
    if (r.type === "ThickProvisioned") thick += r.n;
    else if (r.type === "Snapshot") snaps += r.n;
    else thin += r.n;
  }
  return { numOfVolumes: thick + thin + snaps, numOfThickBaseVolumes: thick, numOfThinBaseVolumes: thin, numOfSnapshots: snaps };
}

/** Recovery figures summed over pools, in the PowerFlex Statistics names (KiB). */
function recoveryStats(statuses: RebuildStatus[]): Stats {
  let pendingRebuild = 0;
  let activeRebuild = 0;
  let pendingRebalance = 0;
  let activeRebalance = 0;
  let degradedHealthy = 0;
  let degradedFailed = 0;
  for (const s of statuses) {
    pendingRebuild += s.pendingRebuildCapacityInKb;
    activeRebuild += s.activeRebuildCapacityInKb;
    pendingRebalance += s.pendingRebalanceCapacityInKb;
    activeRebalance += s.activeRebalanceCapacityInKb;
    degradedFailed += s.unavailableCapacityInKb;
    degradedHealthy += s.degradedCapacityInKb - s.unavailableCapacityInKb;
  }
  return {
    pendingRebuildCapacityInKb: pendingRebuild,
    activeRebuildCapacityInKb: activeRebuild,
    pendingRebalanceCapacityInKb: pendingRebalance,
    activeRebalanceCapacityInKb: activeRebalance,
    degradedHealthyCapacityInKb: degradedHealthy,
    degradedFailedCapacityInKb: degradedFailed,
  };
}

function poolsStats(ctx: MdmContext, pools: StoragePoolRow[], io: Stats): Stats {
  const statusById = recoveryStatus(ctx, pools.map((p) => p.id));
  const devices = ctx.store.db.select().from(deviceTable).all();
  let cap = zeroCapacity();
  for (const p of pools) cap = addCapacity(cap, poolCapacityFigures(ctx, p, devices.filter((d) => d.poolId === p.id)));
  const poolIds = pools.map((p) => p.id);
  const counts = volumeCounts(ctx, poolIds);
  const poolDevices = devices.filter((d) => poolIds.includes(d.poolId));
  return {
    ...cap,
    ...counts,
    numOfVtrees: poolIds.length === 0 ? 0 : (ctx.store.db.select({ n: sql<number>`count(*)` }).from(vtreeTable).where(inArray(vtreeTable.poolId, poolIds)).get()?.n ?? 0),
    numOfDevices: poolDevices.length,
    numOfFailedDevices: poolDevices.filter((d) => d.state === "Failed").length,
    numOfMappedToAllVolumes: 0,
    rebuildWaitSendQLength: 0,
    rebalanceWaitSendQLength: 0,
    ...io,
    ...recoveryStats([...statusById.values()]),
  };
}

/** Statistics of one object; pass one IoRollup to many calls of one request (it reads the topology once). */
export function statisticsOf(ctx: MdmContext, type: PowerFlexType, id: string, roll: IoRollup = new IoRollup(ctx)): Stats {
  switch (type) {
    case "System": {
      if (id !== ctx.systemId) throw new PfError("NOT_FOUND", `Could not find the System ${id}`);
      const pools = ctx.store.db.select().from(storagePoolTable).all();
      return {
        ...poolsStats(ctx, pools, roll.groupBwcs(null)),
        numOfProtectionDomains: ctx.store.db.select({ n: sql<number>`count(*)` }).from(protectionDomainTable).get()?.n ?? 0,
        numOfStoragePools: pools.length,
        numOfFaultSets: ctx.store.db.select({ n: sql<number>`count(*)` }).from(faultSetTable).get()?.n ?? 0,
        numOfSds: ctx.store.db.select({ n: sql<number>`count(*)` }).from(sdsTable).get()?.n ?? 0,
        numOfSdc: ctx.store.db.select({ n: sql<number>`count(*)` }).from(sdcTable).get()?.n ?? 0,
      };
    }
    case "ProtectionDomain": {
      getPd(ctx, id);
      const pools = ctx.store.db.select().from(storagePoolTable).where(eq(storagePoolTable.pdId, id)).all();
      return {
        ...poolsStats(ctx, pools, roll.groupBwcs(roll.pdFilter(id))),
        numOfStoragePools: pools.length,
        numOfSds: ctx.store.db.select({ n: sql<number>`count(*)` }).from(sdsTable).where(eq(sdsTable.pdId, id)).get()?.n ?? 0,
        numOfFaultSets: ctx.store.db.select({ n: sql<number>`count(*)` }).from(faultSetTable).where(eq(faultSetTable.pdId, id)).get()?.n ?? 0,
      };
    }
    case "StoragePool": {
      const pool = getPool(ctx, id);
      const sdsIds = new Set(ctx.store.db.select({ s: deviceTable.sdsId }).from(deviceTable).where(eq(deviceTable.poolId, id)).all().map((r) => r.s));
      const { storagePoolId: _id, ...recovery } = recoveryStatus(ctx, [pool.id]).get(pool.id)!;
      return { ...poolsStats(ctx, [pool], roll.groupBwcs(roll.poolFilter(id))), ...recovery, numOfSds: sdsIds.size };
    }
    case "FaultSet": {
      if (!ctx.store.db.select({ id: faultSetTable.id }).from(faultSetTable).where(eq(faultSetTable.id, id)).get()) {
        throw new PfError("NOT_FOUND", `Could not find the Fault Set ${id}`);
      }
      const sds = ctx.store.db.select({ id: sdsTable.id }).from(sdsTable).where(eq(sdsTable.faultSetId, id)).all();
      const sum = new Float64Array(SDS_CHANNELS);
      for (const s of sds) roll.sds(s.id).forEach((v, i) => (sum[i] = (sum[i] ?? 0) + v));
      return { numOfSds: sds.length, ...sdsBwcs(sum) };
    }
    case "Sds": {
      getSds(ctx, id);
      const devices = ctx.store.db.select().from(deviceTable).where(eq(deviceTable.sdsId, id)).all();
      return { ...deviceSums(devices), numOfDevices: devices.length, ...sdsBwcs(roll.sds(id)) };
    }
    case "Device":
      return { ...deviceSums([getDevice(ctx, id)]), ...deviceFigures(roll.device(id)) };
    case "Sdc": {
      getSdc(ctx, id);
      const mapped = ctx.store.db.select({ v: volumeMappingTable.volumeId }).from(volumeMappingTable).where(eq(volumeMappingTable.sdcId, id)).all();
      return { numOfMappedVolumes: mapped.length, volumeIds: mapped.map((m) => m.v), ...clientBwcs(roll.sdc(id)) };
    }
    case "Volume": {
      const vol = getVolume(ctx, id);
      const mapped = ctx.store.db.select({ s: volumeMappingTable.sdcId }).from(volumeMappingTable).where(eq(volumeMappingTable.volumeId, id)).all();
      const members = membersOf(ctx, vol.ownerId);
      const children = members.filter((m) => m.ancestorVolumeId === vol.id).map((m) => m.id);
      const descendants = descendantsOf(vol.id, members);
      return {
        numOfMappedSdcs: mapped.length,
        mappedSdcIds: mapped.map((m) => m.s),
        numOfChildVolumes: children.length,
        numOfDescendantVolumes: descendants.length,
        childVolumeIds: children,
        descendantVolumeIds: descendants,
        sizeInKb: kb(vol.sizeBytes),
        ...clientBwcs(roll.volume(id)),
      };
    }
    case "VTree": {
      const vt = getVTree(ctx, id);
      const members = membersOf(ctx, vt.ownerId);
      const cap = vtreeCapacity(ctx, vt.ownerId);
      // net = one copy (every extent has two)
      return {
        numOfVolumes: members.length,
        numOfSnapshots: members.filter((m) => m.volumeType === "Snapshot").length,
        baseNetCapacityInUseInKb: kb(cap.baseBytes / 2),
        snapNetCapacityInUseInKb: kb(cap.snapBytes / 2),
        netCapacityInUseInKb: kb((cap.baseBytes + cap.snapBytes) / 2),
        ...clientBwcs(roll.volumes(members.map((m) => m.id))),
      };
    }
    default: {
      const never: never = type;
      throw new PfError("BAD_REQUEST", `no statistics for type ${String(never)}`);
    }
  }
}

function deviceSums(devices: DeviceRow[]): Stats {
  let max = 0;
  let used = 0;
  let thick = 0;
  let failed = 0;
  for (const d of devices) {
    max += d.capacityBytes;
    used += d.usedBytes;
    thick += d.thickAssignedBytes;
    if (d.state === "Failed") failed += d.capacityBytes;
  }
  return {
    maxCapacityInKb: kb(max),
    capacityLimitInKb: kb(max - failed),
    capacityInUseInKb: kb(used),
    thickCapacityInUseInKb: kb(thick),
    thinCapacityInUseInKb: kb(Math.max(0, used - thick)),
    unusedCapacityInKb: kb(Math.max(0, max - failed - used)),
    failedCapacityInKb: kb(failed),
    numOfFailedDevices: devices.filter((d) => d.state === "Failed").length,
  };
}

/** Pick properties of a statistics object (unknown names are simply absent, as on PowerFlex). */
export function selectProperties(stats: Stats, properties: string[]): Stats {
  const out: Stats = {};
  for (const p of properties) if (p in stats) out[p] = stats[p];
  return out;
}
