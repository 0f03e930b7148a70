// The dashboard's one-second snapshot (GET /dashboard/api/summary): system, inventory, pool
// capacity and recovery progress, SDS/device/SDC state with liveness, volumes and mappings, and
// the derived health checks, read in one pass so every page of the browser sees one instant.
// Read-only; sizes in bytes (the PowerFlex REST objects use KiB), rates in bytes per second.

import { eq, sql } from "drizzle-orm";
import { POWERFLEX_API_VERSION, POWERFLEX_SYSTEM_VERSION_NAME, type RebuildStatus } from "../../proto/powerflex_api.ts";
import {
  deviceTable,
  faultSetTable,
  protectionDomainTable,
  sdcTable,
  sdsTable,
  storagePoolTable,
  userTable,
  volumeMappingTable,
  volumeTable,
  type StoragePoolRow,
} from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { getSystem } from "../core/system_state.ts";
import { recoveryStatus } from "../recovery/recovery.ts";
import { parseIpList } from "../topology/topology.ts";
import { poolCapacityOf } from "../topology/volumes.ts";
import { healthOf } from "./dashboard_health.ts";
import type { DashPool, DashRebuild, DashSds, DashSummary, DashUser, DashSystem } from "./dashboard_model.ts";

const KiB = 1024;

/** PowerFlex roles allowed to change volumes and mappings (Monitor, Security and the like are not). */
const MODIFYING_ROLES: readonly string[] = ["SuperUser", "Administrator", "Configure", "FrontendConfig"];

export function dashUser(ctx: MdmContext, userName: string): DashUser {
  const row = ctx.store.db.select({ role: userTable.role }).from(userTable).where(eq(userTable.name, userName)).get();
  const role = row?.role ?? "Monitor";
  return { name: userName, role, canModify: MODIFYING_ROLES.includes(role) };
}

function dashSystem(ctx: MdmContext): DashSystem {
  const sys = getSystem(ctx);
  return {
    id: sys.id,
    name: sys.name,
    versionName: POWERFLEX_SYSTEM_VERSION_NAME,
    apiVersion: POWERFLEX_API_VERSION,
    mdmClusterMode: "OneNode",
    mdmClusterState: "ClusteredNormal",
    capacityAlertHighPct: sys.capacityAlertHighPct,
    capacityAlertCriticalPct: sys.capacityAlertCriticalPct,
    heartbeatTimeoutMs: ctx.health.heartbeatTimeoutMs,
  };
}

export function dashRebuild(s: RebuildStatus | undefined): DashRebuild {
  return {
    poolState: s?.storagePoolState ?? "Normal",
    activity: s?.rebuildState ?? "Idle",
    stalled: s?.rebuildStalled ?? false,
    degradedExtents: s?.numOfDegradedExtents ?? 0,
    degradedBytes: (s?.degradedCapacityInKb ?? 0) * KiB,
    unavailableExtents: s?.numOfUnavailableExtents ?? 0,
    waitingExtents: s?.numOfWaitingExtents ?? 0,
    pendingRebuildExtents: s?.numOfPendingRebuildExtents ?? 0,
    pendingRebuildBytes: (s?.pendingRebuildCapacityInKb ?? 0) * KiB,
    activeRebuildExtents: s?.numOfActiveRebuildExtents ?? 0,
    activeResyncExtents: s?.numOfActiveResyncExtents ?? 0,
    activeMoveExtents: s?.numOfActiveMoveExtents ?? 0,
    pendingRebalanceBytes: (s?.pendingRebalanceCapacityInKb ?? 0) * KiB,
    copiedBytes: (s?.copiedInKb ?? 0) * KiB,
    remainingBytes: (s?.remainingInKb ?? 0) * KiB,
    progressPercent: s?.rebuildProgressPercent ?? 100,
    rateBytesPerSec: (s?.rebuildRateInKbps ?? 0) * KiB,
    etaSeconds: s?.rebuildEtaSeconds ?? null,
    noProgressSeconds: s?.noProgressSeconds ?? 0,
  };
}

/** Volume count and provisioned bytes per pool, in one query. */
function volumeTotals(ctx: MdmContext): Map<string, { volumes: number; bytes: number }> {
  const rows = ctx.store.db
    .select({ poolId: volumeTable.poolId, n: sql<number>`count(*)`, bytes: sql<number>`coalesce(sum(${volumeTable.sizeBytes}), 0)` })
    .from(volumeTable)
    .groupBy(volumeTable.poolId)
    .all();
  return new Map(rows.map((r) => [r.poolId, { volumes: r.n, bytes: r.bytes }]));
}

function dashPools(ctx: MdmContext, pools: StoragePoolRow[]): DashPool[] {
  const status = recoveryStatus(ctx, pools.map((p) => p.id));
  const totals = volumeTotals(ctx);
  return pools.map((p) => {
    const cap = poolCapacityOf(ctx, p);
    return {
      id: p.id,
      name: p.name,
      pdId: p.pdId,
      mediaType: p.mediaType,
      sparePercentage: p.sparePercentage,
      extentBytes: p.extentBytes,
      rebuildRateLimitKbps: p.rebuildRateLimitKbps,
      rawBytes: cap.rawBytes,
      spareBytes: cap.spareBytes,
      inUseRawBytes: cap.inUseRawBytes,
      thickReservedRawBytes: cap.thickReservedRawBytes,
      availableForVolumeBytes: cap.availableForVolumeAllocationBytes,
      provisionedBytes: totals.get(p.id)?.bytes ?? 0,
      volumes: totals.get(p.id)?.volumes ?? 0,
      rebuild: dashRebuild(status.get(p.id)),
    };
  });
}

/** Extent copies (in-sync, being built, kept away) per SDS, in one query. */
function copiesBySds(ctx: MdmContext): Map<string, number> {
  const rows = ctx.store.sqlite
    .query<{ id: string; n: number }, []>(
      `SELECT id, SUM(n) AS n FROM (
         SELECT primary_sds_id AS id, COUNT(*) AS n FROM extent GROUP BY 1
         UNION ALL SELECT secondary_sds_id, COUNT(*) FROM extent WHERE secondary_sds_id IS NOT NULL GROUP BY 1
         UNION ALL SELECT target_sds_id, COUNT(*) FROM extent WHERE target_sds_id IS NOT NULL GROUP BY 1
         UNION ALL SELECT away_sds_id, COUNT(*) FROM extent WHERE away_sds_id IS NOT NULL GROUP BY 1
       ) GROUP BY id`,
    )
    .all();
  return new Map(rows.map((r) => [r.id, r.n]));
}

export function dashboardSummary(ctx: MdmContext, userName: string): DashSummary {
  const db = ctx.store.db;
  const pools = db.select().from(storagePoolTable).orderBy(storagePoolTable.name).all();
  const devices = db.select().from(deviceTable).orderBy(deviceTable.sdsId, deviceTable.path).all();
  const copies = copiesBySds(ctx);
  const sds: DashSds[] = db
    .select()
    .from(sdsTable)
    .orderBy(sdsTable.name)
    .all()
    .map((s) => {
      const own = devices.filter((d) => d.sdsId === s.id);
      return {
        id: s.id,
        name: s.name,
        pdId: s.pdId,
        faultSetId: s.faultSetId,
        ips: parseIpList(s.ipList).map((x) => x.ip),
        port: s.dataPort,
        state: s.state,
        connection: ctx.health.sdsState(s.id),
        lastHeartbeatMs: ctx.health.sdsLastHeartbeatMs(s.id),
        extentCopies: copies.get(s.id) ?? 0,
        capacityBytes: own.reduce((n, d) => n + d.capacityBytes, 0),
        usedBytes: own.reduce((n, d) => n + d.usedBytes, 0),
      };
    });
  const parts = {
    system: dashSystem(ctx),
    storagePools: dashPools(ctx, pools),
    sds,
    devices: devices.map((d) => ({
      id: d.id,
      name: d.name,
      sdsId: d.sdsId,
      poolId: d.poolId,
      path: d.path,
      mediaType: d.mediaType,
      capacityBytes: d.capacityBytes,
      usedBytes: d.usedBytes,
      state: d.state,
    })),
    sdcs: db
      .select()
      .from(sdcTable)
      .orderBy(sdcTable.name)
      .all()
      .map((c) => ({
        id: c.id,
        name: c.name,
        guid: c.guid,
        ip: c.host,
        approved: c.approved,
        connection: ctx.health.sdcState(c.id),
        lastHeartbeatMs: ctx.health.sdcLastHeartbeatMs(c.id),
      })),
    mappings: db
      .select()
      .from(volumeMappingTable)
      .all()
      .map((m) => ({ volumeId: m.volumeId, sdcId: m.sdcId, accessMode: m.accessMode })),
  };
  return {
    tMs: ctx.clock(),
    user: dashUser(ctx, userName),
    health: healthOf(parts),
    protectionDomains: db
      .select()
      .from(protectionDomainTable)
      .orderBy(protectionDomainTable.name)
      .all()
      .map((p) => ({ id: p.id, name: p.name, state: p.state })),
    faultSets: db
      .select()
      .from(faultSetTable)
      .orderBy(faultSetTable.name)
      .all()
      .map((f) => ({ id: f.id, name: f.name, pdId: f.pdId })),
    volumes: db
      .select()
      .from(volumeTable)
      .orderBy(volumeTable.name)
      .all()
      .map((v) => ({
        id: v.id,
        name: v.name,
        poolId: v.poolId,
        sizeBytes: v.sizeBytes,
        volumeType: v.volumeType,
        extentBytes: v.extentBytes,
        creationTimeS: v.creationTimeS,
      })),
    ...parts,
  };
}
