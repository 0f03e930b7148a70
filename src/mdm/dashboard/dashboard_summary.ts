// The dashboard's one-second snapshot (GET /dashboard/api/summary): system, inventory, pool
// capacity (the capacity alerts' own figures, observe/pool_usage.ts) and recovery progress,
// SDS/device/SDC state with liveness, volumes and mappings, and the health checks (the MDM's
// active alerts), read in one pass so every page of the browser sees one instant.
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
} from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { getSystem } from "../core/system_state.ts";
import { recoveryStatus } from "../recovery/recovery.ts";
import { parseIpList } from "../topology/topology.ts";
import { poolUsages } from "../observe/pool_usage.ts";
import { healthOf, type NameOf } from "./dashboard_health.ts";
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

/** Volume count per pool, in one query. */
function volumeTotals(ctx: MdmContext): Map<string, { volumes: number }> {
  const rows = ctx.store.db.select({ poolId: volumeTable.poolId, n: sql<number>`count(*)` }).from(volumeTable).groupBy(volumeTable.poolId).all();
  return new Map(rows.map((r) => [r.poolId, { volumes: r.n }]));
}

function dashPools(ctx: MdmContext): DashPool[] {
  const pools = new Map(ctx.store.db.select().from(storagePoolTable).all().map((p) => [p.id, p]));
  const status = recoveryStatus(ctx, [...pools.keys()]);
  const totals = volumeTotals(ctx);
  const out: DashPool[] = [];
  for (const u of poolUsages(ctx)) {
    const p = pools.get(u.poolId);
    if (!p) continue; // removed between the two reads
    out.push({
      id: p.id,
      name: p.name,
      pdId: p.pdId,
      mediaType: p.mediaType,
      sparePercentage: p.sparePercentage,
      extentBytes: p.extentBytes,
      rebuildRateLimitKbps: p.rebuildIoPolicy === "unlimited" ? 0 : p.rebuildRateLimitKbps,
      rebuildIoPolicy: p.rebuildIoPolicy,
      rebuildIoConcurrency: p.rebuildIoConcurrency,
      rawBytes: u.rawBytes,
      failedBytes: u.failedBytes,
      spareBytes: u.spareBytes,
      usableRawBytes: u.usableRawBytes,
      usedRawBytes: u.usedRawBytes,
      inUseRawBytes: u.inUseRawBytes,
      utilizationPct: 100 * u.utilizationRatio,
      highThresholdPct: u.highThresholdPct,
      criticalThresholdPct: u.criticalThresholdPct,
      availableForVolumeBytes: u.availableForVolumeAllocationBytes,
      provisionedBytes: u.provisionedNetBytes,
      volumes: totals.get(p.id)?.volumes ?? 0,
      rebuild: dashRebuild(status.get(p.id)),
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
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
  const storagePools = dashPools(ctx);
  const sdcs = db
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
    }));
  const system = dashSystem(ctx);
  const nameOf: NameOf = (type, id) => {
    switch (type) {
      case "Sds":
        return sds.find((x) => x.id === id)?.name ?? id;
      case "Sdc": {
        const c = sdcs.find((x) => x.id === id);
        return c ? (c.name ?? c.ip) : id;
      }
      case "Device": {
        const d = devices.find((x) => x.id === id);
        return d ? (d.name ?? d.path) : id;
      }
      case "StoragePool":
        return storagePools.find((x) => x.id === id)?.name ?? id;
      case "System":
        return system.name ?? id;
      default:
        return id;
    }
  };
  return {
    tMs: ctx.clock(),
    user: dashUser(ctx, userName),
    system,
    health: healthOf([...ctx.observe.activeAlerts.values()], nameOf),
    protectionDomains: db
      .select()
      .from(protectionDomainTable)
      .orderBy(protectionDomainTable.name)
      .all()
      .map((p) => ({ id: p.id, name: p.name, state: p.state })),
    storagePools,
    faultSets: db
      .select()
      .from(faultSetTable)
      .orderBy(faultSetTable.name)
      .all()
      .map((f) => ({ id: f.id, name: f.name, pdId: f.pdId })),
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
    sdcs,
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
    mappings: db
      .select()
      .from(volumeMappingTable)
      .all()
      .map((m) => ({ volumeId: m.volumeId, sdcId: m.sdcId, accessMode: m.accessMode })),
  };
}
