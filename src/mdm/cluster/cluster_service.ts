// The internal cluster API's logic (src/proto/cluster_api.ts): SDS/SDC join, heartbeats (device
// states, rebuild reports handed to recovery.ts), SDS assignments with roles (primary,
// secondary, target, away; the primary's carries the sync target) and SDC maps (in-sync copies
// only). Invariants: an SDS join is idempotent by name (a restarted SDS gets its id back, and its
// devices theirs, matched by path); an SDC join is idempotent by guid; an SDS address change
// bumps mapVersion; assignments and maps list replicas primary first and never one SDS twice,
// and carry the SDS address list unless the node holds its current tag (sds_addresses.ts);
// heartbeats only touch sqlite when a device's state or usage changed or a copy finished (their
// IO counters go to the observe room's accounting, in memory); the
// lease handed out is the recovery config's (strictly shorter than the heartbeat timeout).

import { and, eq, inArray } from "drizzle-orm";
import { appendAudit } from "../core/audit.ts";
import consola from "consola";
import { formatBytes } from "../../proto/sizes.ts";
import type {
  ExtentAssignment,
  ExtentRole,
  HeartbeatResponse,
  MapWatchQuery,
  MapWatchResponse,
  SdcHeartbeatRequest,
  SdcJoinRequest,
  SdcJoinResponse,
  SdcMapsResponse,
  SdcMapsQuery,
  ExtentKey,
  DeviceCopyPolicy,
  SdsAssignmentsQuery,
  SdsAssignmentsResponse,
  SdsHeartbeatRequest,
  SdsJoinRequest,
  SdsJoinResponse,
  VolumeMap,
} from "../../proto/cluster_api.ts";
import { assert, PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import {
  deviceTable,
  faultSetTable,
  protectionDomainTable,
  sdcTable,
  sdsTable,
  storagePoolTable,
  type ExtentRow,
  type SdsRow,
} from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { applyFailedForwards, applyRebuildReports, forgetVolatileCopies } from "../recovery/recovery.ts";
import { extentFromRow, type ExtentState } from "../recovery/recovery_model.ts";
import { copiesHeldBy } from "../recovery/recovery_view.ts";
import { getSdc, getSds, unique } from "../core/lookup.ts";
import { allocateId, bumpMapVersion, currentMapVersion, getSystem } from "../core/system_state.ts";
import { copyPoliciesOfSds } from "../topology/io_priority.ts";
import { addDevice, DEFAULT_REBUILD_RATE_LIMIT_KBPS, DEFAULT_SPARE_PERCENTAGE } from "../topology/topology.ts";
import { NodeRole } from "../../proto/dataplane_auth.ts";
import { checkTlsJoin, sdcJoinSecrets, sdcMapsWithAccess, sdsDataPlane, sdsJoinSecrets } from "./node_access.ts";
import { approvedAtJoin } from "../topology/sdc_access.ts";
import { liveFences } from "../vtree/fence.ts";
import { noteLayerUsage } from "../vtree/layer_usage.ts";
import { graphSpecs } from "../vtree/vtree_store.ts";
import { writeThroughVolumes } from "../topology/write_cache.ts";
import { addressesFor } from "./sds_addresses.ts";
import { copyLogOf, MAPPED_COLUMNS, type CopyChanges, type MappedVolumeRow } from "./copy_log.ts";
import { sdcMayMap } from "../topology/sdc_access.ts";

// ---- SDS ----

function findOrCreatePd(ctx: MdmContext, name: string): string {
  const pd = ctx.store.db.select().from(protectionDomainTable).where(eq(protectionDomainTable.name, name)).get();
  if (pd) return pd.id;
  const id = allocateId(ctx, "ProtectionDomain");
  ctx.store.db.insert(protectionDomainTable).values({ id, name, state: "Active", createdAtMs: ctx.clock() }).run();
  consola.info(`mdm: created Protection Domain ${name} (${id}) for a joining SDS`);
  return id;
}

function findOrCreatePool(ctx: MdmContext, pdId: string, name: string): string {
  const pool = ctx.store.db
    .select()
    .from(storagePoolTable)
    .where(and(eq(storagePoolTable.pdId, pdId), eq(storagePoolTable.name, name)))
    .get();
  if (pool) return pool.id;
  const id = allocateId(ctx, "StoragePool");
  ctx.store.db
    .insert(storagePoolTable)
    .values({
      id,
      pdId,
      name,
      mediaType: "HDD",
      extentBytes: Limits.defaultExtentBytes,
      granularityBytes: Limits.defaultAllocationGranularityBytes,
      sparePercentage: DEFAULT_SPARE_PERCENTAGE,
      defaultThin: false,
      rebuildRateLimitKbps: DEFAULT_REBUILD_RATE_LIMIT_KBPS,
      rebuildEnabled: true,
      rebalanceEnabled: true,
      zeroPaddingEnabled: true,
      createdAtMs: ctx.clock(),
    })
    .run();
  consola.info(`mdm: created Storage Pool ${name} (${id}) for a joining SDS`);
  return id;
}

function findOrCreateFaultSet(ctx: MdmContext, pdId: string, name: string): string {
  const fs = ctx.store.db
    .select()
    .from(faultSetTable)
    .where(and(eq(faultSetTable.pdId, pdId), eq(faultSetTable.name, name)))
    .get();
  if (fs) return fs.id;
  const id = allocateId(ctx, "FaultSet");
  ctx.store.db.insert(faultSetTable).values({ id, pdId, name, createdAtMs: ctx.clock() }).run();
  return id;
}

function sdsHoldsExtents(ctx: MdmContext, sdsId: string): boolean {
  return copiesHeldBy(ctx, sdsId) > 0;
}

export function sdsJoin(ctx: MdmContext, req: SdsJoinRequest): SdsJoinResponse {
  const paths = req.devices.map((d) => d.path);
  if (new Set(paths).size !== paths.length) throw new PfError("BAD_REQUEST", "device paths of a join must be distinct");
  checkTlsJoin(ctx, NodeRole.SDS, req.name, req.tlsPublicKey);
  const sdsId = inTransaction(ctx, () => {
    const existing = ctx.store.db.select().from(sdsTable).where(eq(sdsTable.name, req.name)).get();
    const pdId = findOrCreatePd(ctx, req.protectionDomainName);
    const poolId = findOrCreatePool(ctx, pdId, req.storagePoolName);
    const faultSetId = req.faultSetName === undefined ? null : findOrCreateFaultSet(ctx, pdId, req.faultSetName);
    const sds = existing ? rejoinSds(ctx, existing, req, pdId, faultSetId) : newSds(ctx, req, pdId, faultSetId);
    for (const d of req.devices) {
      const dev = ctx.store.db
        .select()
        .from(deviceTable)
        .where(and(eq(deviceTable.sdsId, sds.id), eq(deviceTable.path, d.path)))
        .get();
      if (!dev) {
        // a device added live and removed while its SDS was down: not registered again (the
        // answer leaves it out, and the SDS drops it from its list)
        if (d.added === true) {
          consola.info(`mdm: SDS ${sds.name} names device ${d.path}, added earlier and removed since; it is not registered again`);
          continue;
        }
        addDevice(ctx, sds, { path: d.path, poolId, name: d.name, capacityBytes: d.capacityBytes });
        continue;
      }
      if (dev.capacityBytes !== d.capacityBytes) {
        if (d.capacityBytes < dev.assignedBytes) {
          consola.warn(`mdm: device ${dev.id} (${d.path}) of SDS ${sds.name} now reports ${d.capacityBytes} bytes, less than the ${dev.assignedBytes} bytes assigned to it`);
        }
        ctx.store.db.update(deviceTable).set({ capacityBytes: d.capacityBytes }).where(eq(deviceTable.id, dev.id)).run();
      }
    }
    failDevicesLeftOut(ctx, sds, paths);
    return sds.id;
  });
  if (req.hostRebooted) forgetVolatileCopies(ctx, sdsId);
  ctx.health.sdsSeen(sdsId, 0);
  const devices = ctx.store.db
    .select({ deviceId: deviceTable.id, path: deviceTable.path })
    .from(deviceTable)
    .where(and(eq(deviceTable.sdsId, sdsId), inArray(deviceTable.path, paths)))
    .all();
  const sys = getSystem(ctx);
  return { sdsId, systemId: sys.id, ...sdsJoinSecrets(ctx, sdsId, req.tlsPublicKey), leaseMs: ctx.recovery.config.leaseMs, heartbeatMs: Limits.heartbeatIntervalMs, devices };
}

/**
 * A join names every device the SDS opened (its configured ones and those added while it ran:
 * src/sds/live_devices.ts). A Normal device of this SDS that it opened before (it has a
 * capacity) and now leaves out (gone from its configuration, or its disk is gone) can serve
 * nothing: it is marked Failed, so its copies are rebuilt from their other copies and nothing new
 * is placed on it. It comes back by itself when a later join lists it again (the SDS's heartbeat
 * reports it Normal); an empty one can be removed (removeDevice). A registered device never
 * opened yet (no capacity) is left as it is: the heartbeat answers ask the SDS to open it.
 */
function failDevicesLeftOut(ctx: MdmContext, sds: SdsRow, paths: string[]): void {
  const listed = new Set(paths);
  const rows = ctx.store.db.select().from(deviceTable).where(eq(deviceTable.sdsId, sds.id)).all();
  for (const dev of rows) {
    if (listed.has(dev.path) || dev.state !== "Normal" || dev.capacityBytes === 0) continue;
    ctx.store.db.update(deviceTable).set({ state: "Failed" }).where(eq(deviceTable.id, dev.id)).run();
    ctx.health.noteDeviceError(dev.id, `SDS ${sds.name} joined without it: gone from its configuration, or it did not open at the SDS's start (see the SDS's log)`);
    const held = dev.assignedBytes > 0 ? `; the ${formatBytes(dev.assignedBytes)} assigned to it are rebuilt from their other copies` : "";
    consola.warn(`mdm: SDS ${sds.name} joined without its device ${dev.id} (${dev.path}): marked Failed${held}. Add the path to the SDS's devices and restart it, or remove the device`);
  }
}

function newSds(ctx: MdmContext, req: SdsJoinRequest, pdId: string, faultSetId: string | null): SdsRow {
  const taken = ctx.store.db.select().from(sdsTable).where(and(eq(sdsTable.host, req.host), eq(sdsTable.dataPort, req.dataPort))).get();
  if (taken) throw new PfError("ALREADY_EXISTS", `SDS ${taken.name} (${taken.id}) already serves ${req.host}:${req.dataPort}`);
  const id = allocateId(ctx, "Sds");
  const row: SdsRow = {
    id,
    name: req.name,
    pdId,
    faultSetId,
    ipList: JSON.stringify([{ ip: req.host, role: "all" }]),
    host: req.host,
    dataPort: req.dataPort,
    state: "Normal",
    createdAtMs: ctx.clock(),
  };
  unique(`An SDS named ${req.name} already exists`, () => ctx.store.db.insert(sdsTable).values(row).run());
  bumpMapVersion(ctx);
  consola.info(`mdm: SDS ${req.name} (${id}) joined from ${req.host}:${req.dataPort}`);
  return row;
}

function rejoinSds(ctx: MdmContext, sds: SdsRow, req: SdsJoinRequest, pdId: string, faultSetId: string | null): SdsRow {
  if (sds.pdId !== pdId) {
    throw new PfError("INVALID_STATE", `SDS ${sds.name} (${sds.id}) belongs to another Protection Domain than ${req.protectionDomainName}`);
  }
  const next: SdsRow = { ...sds };
  if (faultSetId !== null && sds.faultSetId !== faultSetId) {
    if (sdsHoldsExtents(ctx, sds.id)) {
      throw new PfError("INVALID_STATE", `SDS ${sds.name} holds data; it cannot move to Fault Set ${req.faultSetName}`);
    }
    next.faultSetId = faultSetId;
  }
  const addressChanged = sds.host !== req.host || sds.dataPort !== req.dataPort;
  if (addressChanged) {
    next.host = req.host;
    next.dataPort = req.dataPort;
    const ips = JSON.parse(sds.ipList) as { ip: string; role: string }[];
    if (!ips.some((x) => x.ip === req.host)) next.ipList = JSON.stringify([{ ip: req.host, role: "all" }, ...ips.filter((x) => x.role === "sdcOnly")]);
  }
  if (addressChanged || next.faultSetId !== sds.faultSetId) {
    ctx.store.db
      .update(sdsTable)
      .set({ host: next.host, dataPort: next.dataPort, ipList: next.ipList, faultSetId: next.faultSetId })
      .where(eq(sdsTable.id, sds.id))
      .run();
    bumpMapVersion(ctx);
  }
  consola.info(`mdm: SDS ${sds.name} (${sds.id}) rejoined from ${req.host}:${req.dataPort}`);
  return next;
}

/** One audit record per heartbeat that reported refused handshakes, grants or IO (counts are whole, lines a sample). */
function auditDataPlaneRefusals(ctx: MdmContext, sdsId: string, name: string | null, r: NonNullable<SdsHeartbeatRequest["refusals"]>): void {
  const total = Object.values(r.counts).reduce((a, b) => a + b, 0);
  appendAudit(ctx, {
    kind: "dataplane",
    actor: `sds ${name ?? sdsId}`,
    role: "SDS",
    src: "",
    objectType: "Sds",
    objectId: sdsId,
    action: "refusals",
    params: r.counts,
    result: "refused",
    detail: `${total} refused on the data plane since the last heartbeat; ${r.samples.join(" | ")}`,
  });
}

/** Devices of one SDS as a heartbeat compares them (cached statement: every heartbeat reads it). */
function heartbeatDevices(ctx: MdmContext, sdsId: string): Map<string, { id: string; path: string; state: string; usedBytes: number; capacityBytes: number }> {
  const rows = ctx.store.sqlite
    .query<{ id: string; path: string; state: string; usedBytes: number; capacityBytes: number }, [string]>(
      "SELECT id, path, state, used_bytes AS usedBytes, capacity_bytes AS capacityBytes FROM device WHERE sds_id = ?",
    )
    .all(sdsId);
  return new Map(rows.map((d) => [d.id, d]));
}

/** Like getSds, for the heartbeat paths: one cached statement instead of a query built per call. */
function checkNodeExists(ctx: MdmContext, table: "sds" | "sdc", id: string): void {
  const row = ctx.store.sqlite.query<{ one: number }, [string]>(`SELECT 1 AS one FROM ${table} WHERE id = ?`).get(id);
  if (!row) throw new PfError("NOT_FOUND", `Could not find ${table === "sds" ? "SDS" : "SDC"} ${id}`);
}

/**
 * The mapWatch long poll: wait (at most q.waitMs) until a map change concerns the node, unless
 * one already does, then answer the version its next heartbeat would be told. Liveness is not
 * touched: only heartbeats count as seen.
 */
export async function mapWatch(ctx: MdmContext, kind: "sds" | "sdc", nodeId: string, q: MapWatchQuery): Promise<MapWatchResponse> {
  checkNodeExists(ctx, kind, nodeId);
  if (q.waitMs > 0 && ctx.health.caughtUp(kind, nodeId, q.after, currentMapVersion(ctx))) await ctx.health.waitForMapChange(kind, nodeId, q.waitMs);
  return { mapVersion: ctx.health.mapVersionFor(kind, nodeId, q.after, currentMapVersion(ctx)) };
}

export function sdsHeartbeat(ctx: MdmContext, sdsId: string, req: SdsHeartbeatRequest): HeartbeatResponse {
  const mine = heartbeatDevices(ctx, sdsId);
  // devices exist only with their SDS: one read fewer per beat (an SDS without devices is checked)
  if (mine.size === 0) checkNodeExists(ctx, "sds", sdsId);
  if (req.refusals && Object.keys(req.refusals.counts).length > 0) auditDataPlaneRefusals(ctx, sdsId, getSds(ctx, sdsId).name, req.refusals);
  // a device the MDM no longer has (removed): the SDS closes it
  let closeDevices: string[] | undefined;
  const changed = req.devices.filter((r) => {
    const dev = mine.get(r.deviceId);
    if (!dev) {
      (closeDevices ??= []).push(r.deviceId);
      ctx.health.noteDeviceError(r.deviceId, undefined);
    } else if (r.state === "Failed") ctx.health.noteDeviceError(r.deviceId, r.error ?? "the SDS reports it Failed (an SDS of an older build says no more; see its log)");
    else if (dev.state === "Failed") ctx.health.noteDeviceError(r.deviceId, undefined);
    return dev !== undefined && (dev.state !== r.state || dev.usedBytes !== r.usedBytes || opensNow(dev, r));
  });
  // a beat that changes nothing (the usual one) writes nothing and opens no transaction
  if (changed.length > 0) {
    inTransaction(ctx, () => {
      for (const r of changed) {
        const dev = mine.get(r.deviceId)!;
        if (dev.state !== r.state) consola.warn(`mdm: device ${dev.id} (${dev.path}) of SDS ${sdsId} is now ${r.state}${r.error === undefined ? "" : `: ${r.error}`}`);
        const opened = opensNow(dev, r);
        if (opened) consola.info(`mdm: SDS ${sdsId} opened device ${dev.id} (${dev.path}): ${formatBytes(r.capacityBytes!)}; it takes data from now on`);
        ctx.store.db
          .update(deviceTable)
          .set({ state: r.state, usedBytes: r.usedBytes, ...(opened ? { capacityBytes: r.capacityBytes! } : {}) })
          .where(eq(deviceTable.id, dev.id))
          .run();
      }
    });
  }
  ctx.health.sdsSeen(sdsId, req.appliedMapVersion);
  if (req.io) ctx.observe.io.ingestSds(sdsId, req.io, ctx.clock());
  applyRebuildReports(ctx, sdsId, req.rebuilds);
  applyFailedForwards(ctx, sdsId, req.failedForwards);
  noteLayerUsage(ctx, sdsId, req.layerChunks);
  // unchanged when no change since the SDS's version concerns it (health.ts mapVersionFor)
  const answer: HeartbeatResponse = { mapVersion: ctx.health.mapVersionFor("sds", sdsId, req.appliedMapVersion, currentMapVersion(ctx)), leaseMs: ctx.recovery.config.leaseMs };
  // both bounded by what the answer carries (the rest follow on later beats)
  const openDevices = devicesToOpen(mine, req.devices);
  if (openDevices !== undefined) answer.openDevices = openDevices.slice(0, Limits.maxDevicesPerSds);
  if (closeDevices !== undefined) answer.closeDevices = closeDevices.slice(0, Limits.maxDevicesPerSds);
  return answer;
}

/**
 * A registered device that has never held data (no capacity yet: topology.ts createDevice) and
 * that the SDS now reports open, with its size: from now on placement may use it.
 */
function opensNow(dev: { capacityBytes: number }, r: { capacityBytes?: number | undefined; state: string }): boolean {
  return dev.capacityBytes === 0 && r.state === "Normal" && r.capacityBytes !== undefined && r.capacityBytes > 0;
}

/**
 * Devices registered for this SDS (no capacity yet, Normal) that its beat does not report: it is
 * to open them. One that it cannot open comes back reported Failed, and so is not asked again.
 * Only a comparison of rows the beat already read: nothing per beat in the usual case.
 */
function devicesToOpen(mine: Map<string, { id: string; path: string; state: string; capacityBytes: number }>, reported: readonly { deviceId: string }[]): { deviceId: string; path: string }[] | undefined {
  let out: { deviceId: string; path: string }[] | undefined;
  for (const dev of mine.values()) {
    if (dev.capacityBytes !== 0 || dev.state !== "Normal") continue;
    if (reported.some((r) => r.deviceId === dev.id)) continue;
    (out ??= []).push({ deviceId: dev.id, path: dev.path });
  }
  return out;
}

/** Epoch and in-sync replicas (primary first) of every extent of a V-Tree (by owner id), indexed by extent. */
export function inSyncExtents(ctx: MdmContext, ownerId: string): { epoch: number; replicas: string[] }[] {
  const rows = ctx.store.sqlite
    .query<{ idx: number; epoch: number; primary_sds_id: string; secondary_sds_id: string | null }, [string]>(
      "SELECT idx, epoch, primary_sds_id, secondary_sds_id FROM extent WHERE volume_id = ? ORDER BY idx",
    )
    .all(ownerId);
  return rows.map((r, i) => {
    assert(r.idx === i, "extent indexes are dense");
    const replicas = r.secondary_sds_id === null ? [r.primary_sds_id] : [r.primary_sds_id, r.secondary_sds_id];
    assert(replicas[0] !== replicas[1], "two copies never on one SDS");
    return { epoch: r.epoch, replicas };
  });
}

/** Addresses of every SDS (clients connect by id). */
/** The SDS's role for an extent row, with the device holding its copy (null: no copy there). */
function roleOf(e: ExtentState, sdsId: string): { role: ExtentRole; deviceId: string } | null {
  const i = e.inSync.findIndex((c) => c.sdsId === sdsId);
  if (i >= 0) return { role: i === 0 ? "primary" : "secondary", deviceId: e.inSync[i]!.deviceId };
  if (e.target?.sdsId === sdsId) return { role: "target", deviceId: e.target.deviceId };
  if (e.away?.sdsId === sdsId) return { role: "away", deviceId: e.away.deviceId };
  return null;
}

/**
 * The rebuild rate limit for an SDS (bytes/s; 0 = unlimited): the lowest rebuild bandwidth among
 * its devices' policies (unlimited counts as none). Only an SDS that predates copyPolicies uses it
 * (it throttles all its copies with it).
 */
function legacyRebuildRate(policies: readonly DeviceCopyPolicy[]): number {
  let min = 0;
  for (const { rebuild: r } of policies) {
    const bytes = r.policy === "unlimited" ? 0 : r.bwLimitBytesPerSec;
    if (bytes > 0 && (min === 0 || bytes < min)) min = bytes;
  }
  return min;
}

/**
 * Every extent copy the SDS must hold, with its role: primary/secondary for in-sync copies,
 * target for a copy being built, away for a stale copy kept during the grace period. Only the
 * primary's assignment carries the sync target. An extent not listed is one the SDS may free.
 * With q.since and q.log of the current copy log (copy_log.ts) the answer is a delta: only the
 * copies that changed since, and those taken away (proto/assignments_delta.ts).
 */
export function sdsAssignments(ctx: MdmContext, sdsId: string, q: SdsAssignmentsQuery = {}): SdsAssignmentsResponse {
  getSds(ctx, sdsId);
  return ctx.store.sqlite.transaction(() => {
    const mapVersion = currentMapVersion(ctx);
    const log = copyLogOf(ctx);
    log.maybeTrim();
    // this log's answers, or the previous MDM life's after a clean stop (copy_log.ts)
    const changes = log.changesSince(q.log, sdsId, q.since, mapVersion);
    let extents: HeldExtentRow[];
    let removed: ExtentKey[] | undefined;
    if (changes === null) {
      extents = extentsHeldBy(ctx, sdsId);
    } else {
      ({ extents, removed } = changedCopies(ctx, sdsId, changes));
    }
    const volumes = new Map<string, { extentBytes: number; thick: boolean }>();
    const out: ExtentAssignment[] = [];
    for (const row of extents) {
      if (!volumes.has(row.volumeId)) volumes.set(row.volumeId, { extentBytes: row.extentBytes, thick: row.volumeType === "ThickProvisioned" });
      const e = extentFromRow(row);
      const mine = roleOf(e, sdsId);
      assert(mine !== null, "a listed extent has a copy on the SDS");
      out.push({
        volumeId: e.volumeId,
        extentIndex: e.idx,
        epoch: e.epoch,
        replicas: e.inSync.map((c) => c.sdsId),
        deviceId: mine.deviceId,
        thick: row.volumeType === "ThickProvisioned",
        role: mine.role,
        syncTarget: mine.role === "primary" && e.target ? { sdsId: e.target.sdsId, mode: e.target.mode } : null,
      });
    }
    const volumeIds = [...volumes.keys()];
    const extentSizeBytesByVolume: Record<string, number> = {};
    for (const [id, v] of volumes) extentSizeBytesByVolume[id] = v.extentBytes;
    const copyPolicies = copyPoliciesOfSds(ctx, sdsId);
    return {
      mapVersion,
      dataPlane: sdsDataPlane(ctx),
      dataPlaneTls: ctx.dataPlaneTls !== undefined,
      rebuildRateBytesPerSec: legacyRebuildRate(copyPolicies),
      copyPolicies,
      extentSizeBytesByVolume,
      extents: out,
      ...addressesFor(ctx, q.addresses),
      vtrees: graphSpecs(ctx, volumeIds),
      liveFences: liveFences(ctx),
      writeThroughVolumes: writeThroughVolumes(ctx, volumeIds),
      copyLog: log.id,
      ...(changes === null ? {} : { since: q.since, removed }),
    };
  })();
}

/**
 * The rows of a delta: each logged extent that still has a copy on the SDS (whole row), every
 * copy the SDS holds of a V-Tree whose graph changed, and the logged extents it no longer holds.
 */
function changedCopies(ctx: MdmContext, sdsId: string, changes: CopyChanges): { extents: HeldExtentRow[]; removed: ExtentKey[] } {
  const rows = new Map<string, HeldExtentRow>();
  const one = ctx.store.sqlite.query<HeldExtentRow, [string, number]>(`SELECT ${HELD_COLUMNS} FROM extent e JOIN vtree v ON v.owner_id = e.volume_id WHERE e.volume_id = ? AND e.idx = ?`);
  const removed: ExtentKey[] = [];
  for (const k of changes.keys) {
    const r = one.get(k.volumeId, k.idx);
    if (r !== null && holdsCopy(r, sdsId)) rows.set(`${r.volumeId}/${r.idx}`, r);
    else removed.push({ volumeId: k.volumeId, extentIndex: k.idx });
  }
  if (changes.owners.length > 0) {
    const ofOwner = ctx.store.sqlite.query<HeldExtentRow, [string, string]>(
      `SELECT ${HELD_COLUMNS} FROM extent e JOIN vtree v ON v.owner_id = e.volume_id WHERE e.volume_id = ?1 AND ?2 IN (e.primary_sds_id, e.secondary_sds_id, e.target_sds_id, e.away_sds_id)`,
    );
    for (const owner of changes.owners) for (const r of ofOwner.all(owner, sdsId)) rows.set(`${r.volumeId}/${r.idx}`, r);
  }
  return { extents: [...rows.values()], removed };
}

function holdsCopy(r: ExtentRow, sdsId: string): boolean {
  return r.primarySdsId === sdsId || r.secondarySdsId === sdsId || r.targetSdsId === sdsId || r.awaySdsId === sdsId;
}

type HeldExtentRow = ExtentRow & { extentBytes: number; volumeType: string };

const HELD_COLUMNS = `e.volume_id AS volumeId, e.idx, e.epoch, e.primary_sds_id AS primarySdsId, e.primary_device_id AS primaryDeviceId,
  e.secondary_sds_id AS secondarySdsId, e.secondary_device_id AS secondaryDeviceId, e.target_sds_id AS targetSdsId,
  e.target_device_id AS targetDeviceId, e.target_mode AS targetMode, e.target_started_ms AS targetStartedMs,
  e.target_replaces_sds_id AS targetReplacesSdsId, e.away_sds_id AS awaySdsId, e.away_device_id AS awayDeviceId,
  e.away_since_ms AS awaySinceMs, v.extent_bytes AS extentBytes, v.volume_type AS volumeType`;

/**
 * Every extent row with a copy (in-sync, target, away) on the SDS, with its V-Tree's extent size
 * and type: one cached statement per copy column (each uses its index), no query built per call.
 * An SDS refetches this whenever a change concerns it, so it is the MDM's largest steady cost.
 */
function extentsHeldBy(ctx: MdmContext, sdsId: string): HeldExtentRow[] {
  const rows = new Map<string, HeldExtentRow>();
  for (const col of ["primary_sds_id", "secondary_sds_id", "target_sds_id", "away_sds_id"] as const) {
    const list = ctx.store.sqlite
      .query<HeldExtentRow, [string]>(`SELECT ${HELD_COLUMNS} FROM extent e JOIN vtree v ON v.owner_id = e.volume_id WHERE e.${col} = ?`)
      .all(sdsId);
    for (const r of list) rows.set(`${r.volumeId}/${r.idx}`, r);
  }
  return [...rows.values()];
}

// ---- SDC ----

export function sdcJoin(ctx: MdmContext, req: SdcJoinRequest): SdcJoinResponse {
  checkTlsJoin(ctx, NodeRole.SDC, req.name ?? req.guid, req.tlsPublicKey);
  const sdcId = inTransaction(ctx, () => {
    const existing = ctx.store.db.select().from(sdcTable).where(eq(sdcTable.guid, req.guid)).get();
    if (existing) {
      const name = req.name ?? existing.name;
      if (existing.host !== req.host || existing.name !== name) {
        unique(`An SDC named ${req.name} already exists`, () =>
          ctx.store.db.update(sdcTable).set({ host: req.host, name }).where(eq(sdcTable.id, existing.id)).run(),
        );
      }
      return existing.id;
    }
    const id = allocateId(ctx, "Sdc");
    unique(`An SDC named ${req.name} already exists`, () =>
      ctx.store.db
        .insert(sdcTable)
        .values({ id, guid: req.guid, name: req.name ?? null, host: req.host, approved: approvedAtJoin(ctx), createdAtMs: ctx.clock() })
        .run(),
    );
    consola.info(`mdm: SDC ${req.name ?? req.guid} (${id}) joined from ${req.host}`);
    return id;
  });
  ctx.health.sdcSeen(sdcId, 0);
  const sys = getSystem(ctx);
  return { sdcId, systemId: sys.id, ...sdcJoinSecrets(ctx, sdcId, req.tlsPublicKey), heartbeatMs: Limits.heartbeatIntervalMs };
}

export function sdcHeartbeat(ctx: MdmContext, sdcId: string, req: SdcHeartbeatRequest): HeartbeatResponse {
  checkNodeExists(ctx, "sdc", sdcId);
  ctx.health.sdcSeen(sdcId, req.appliedMapVersion);
  if (req.io) ctx.observe.io.ingestSdc(sdcId, req.io, ctx.clock());
  return { mapVersion: ctx.health.mapVersionFor("sdc", sdcId, req.appliedMapVersion, currentMapVersion(ctx)), leaseMs: ctx.recovery.config.leaseMs };
}

/**
 * An SDC's map: every volume mapped to it with its in-sync copies (primary first) per extent.
 * With q.since and q.log of the current log (copy_log.ts: it logs SDC map changes too) the
 * answer is a delta: the whole entry of each mapped volume changed since, and the ids of all
 * mapped now (proto/maps_delta.ts). Anything the log cannot vouch for gets the whole map: no
 * since, another log (MDM restart without a clean hand-off, HA takeover), since above the current
 * version or below the trimmed floor, a barrier (approval, restricted mode), or an SDC that may
 * not map (its whole map is empty).
 */
export function sdcMaps(ctx: MdmContext, sdcId: string, q: SdcMapsQuery = {}): SdcMapsResponse {
  const sdc = getSdc(ctx, sdcId);
  return ctx.store.sqlite.transaction(() => {
    const mapVersion = currentMapVersion(ctx);
    const log = copyLogOf(ctx);
    log.maybeTrim();
    const delta = sdcMayMap(ctx, sdc) && log.mapsDeltaFrom(q.log, q.since, mapVersion);
    let rows: MappedVolumeRow[];
    let volumeIds: string[] | undefined;
    if (delta) {
      const all = log.mappedSince(sdcId, q.since!);
      volumeIds = all.map((r) => r.volumeId);
      rows = all.filter((r) => r.changed === 1);
    } else {
      rows = ctx.store.sqlite
        .query<MappedVolumeRow, [string]>(`SELECT ${MAPPED_COLUMNS} FROM volume_mapping m JOIN volume vol ON vol.id = m.volume_id WHERE m.sdc_id = ? ORDER BY vol.id`)
        .all(sdcId);
    }
    const volumes: VolumeMap[] = rows.map((m) => {
      // the V-Tree has at least as many extents as its largest member needs
      const extents = inSyncExtents(ctx, m.ownerId).slice(0, m.sizeBytes / m.extentBytes);
      assert(extents.length === m.sizeBytes / m.extentBytes, "a volume's V-Tree has size/extentBytes extents");
      return {
        limitIops: m.limitIops,
        limitBwKbps: m.limitBwKbps,
        volumeId: m.volumeId,
        name: m.name ?? m.volumeId,
        sizeBytes: m.sizeBytes,
        accessMode: m.accessMode === "ReadOnly" ? "ReadOnly" : "ReadWrite",
        extentSizeBytes: m.extentBytes,
        extents,
      };
    });
    const answer = sdcMapsWithAccess(ctx, sdcId, { mapVersion, volumes, ...addressesFor(ctx, q.addresses) });
    return { ...answer, mapLog: log.id, ...(delta ? { since: q.since, volumeIds } : {}) };
  })();
}
