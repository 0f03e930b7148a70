// Topology changes made through REST: protection domains, storage pools, fault sets, SDS and
// device records, renames and removals. Each change is one transaction; validation happens
// before any write, so a refused request leaves the MDM state unchanged.
// Invariants: a device belongs to one SDS and one pool of the SDS's protection domain; an
// SDS's fault set is in its protection domain; nothing holding extents or children is removed;
// an SDS address change bumps mapVersion (clients cache addresses).

import consola from "consola";
import { and, count, eq, or } from "drizzle-orm";
import { PfError } from "../../proto/errors.ts";
import { Limits, Units } from "../../proto/limits.ts";
import type { CreateDevice, CreateFaultSet, CreateProtectionDomain, CreateSds, CreateStoragePool, SdsIpEntry } from "../../proto/powerflex_api.ts";
import {
  deviceTable,
  extentTable,
  faultSetTable,
  protectionDomainTable,
  sdcTable,
  sdsTable,
  storagePoolTable,
  volumeMappingTable,
  volumeTable,
  type SdsRow,
} from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { getDevice, getFaultSet, getPd, getPool, getSdc, getSds, unique } from "../core/lookup.ts";
import { allocateId, bumpMapVersion } from "../core/system_state.ts";
import { poolCapacityOf } from "./volumes.ts";
import { formatBytes } from "../../proto/sizes.ts";

export const DEFAULT_SDS_PORT = 7072;
export const DEFAULT_SPARE_PERCENTAGE = 10;
export const DEFAULT_REBUILD_RATE_LIMIT_KBPS = 10240;

// ---- protection domains ----

export function createProtectionDomain(ctx: MdmContext, body: CreateProtectionDomain): string {
  return inTransaction(ctx, () => {
    const id = allocateId(ctx, "ProtectionDomain");
    unique(`A Protection Domain named ${body.name} already exists`, () =>
      ctx.store.db.insert(protectionDomainTable).values({ id, name: body.name, state: "Active", createdAtMs: ctx.clock() }).run(),
    );
    return id;
  });
}

export function renameProtectionDomain(ctx: MdmContext, id: string, name: string): void {
  getPd(ctx, id);
  unique(`A Protection Domain named ${name} already exists`, () =>
    ctx.store.db.update(protectionDomainTable).set({ name }).where(eq(protectionDomainTable.id, id)).run(),
  );
}

export function removeProtectionDomain(ctx: MdmContext, id: string): void {
  inTransaction(ctx, () => {
    getPd(ctx, id);
    const pools = countOf(ctx, storagePoolTable, eq(storagePoolTable.pdId, id));
    const sds = countOf(ctx, sdsTable, eq(sdsTable.pdId, id));
    if (pools > 0 || sds > 0) {
      throw new PfError("IN_USE", `Protection Domain ${id} still has ${pools} storage pool(s) and ${sds} SDS(s); remove them first`);
    }
    ctx.store.db.delete(faultSetTable).where(eq(faultSetTable.pdId, id)).run();
    ctx.store.db.delete(protectionDomainTable).where(eq(protectionDomainTable.id, id)).run();
  });
}

// ---- storage pools ----

export interface PoolSettings {
  extentBytes: number;
  granularityBytes: number;
}

function checkPoolGeometry(s: PoolSettings): void {
  if (s.extentBytes % Limits.thinChunkBytes !== 0 || s.extentBytes > Limits.maxExtentBytes) {
    throw new PfError(
      "BAD_REQUEST",
      `extent size ${s.extentBytes} bytes must be a multiple of ${Limits.thinChunkBytes} and at most ${Limits.maxExtentBytes}`,
    );
  }
  if (s.granularityBytes % s.extentBytes !== 0) {
    throw new PfError("BAD_REQUEST", `allocation granularity ${s.granularityBytes} bytes must be a multiple of the extent size ${s.extentBytes}`);
  }
}

export function createStoragePool(ctx: MdmContext, body: CreateStoragePool): string {
  const geometry: PoolSettings = {
    extentBytes: body.extentSizeInKb !== undefined ? body.extentSizeInKb * Units.KiB : Limits.defaultExtentBytes,
    granularityBytes:
      body.allocationGranularityInKb !== undefined ? body.allocationGranularityInKb * Units.KiB : Limits.defaultAllocationGranularityBytes,
  };
  checkPoolGeometry(geometry);
  return inTransaction(ctx, () => {
    getPd(ctx, body.protectionDomainId);
    const id = allocateId(ctx, "StoragePool");
    unique(`A Storage Pool named ${body.name} already exists in this Protection Domain`, () =>
      ctx.store.db
        .insert(storagePoolTable)
        .values({
          id,
          pdId: body.protectionDomainId,
          name: body.name,
          mediaType: body.mediaType ?? "HDD",
          extentBytes: geometry.extentBytes,
          granularityBytes: geometry.granularityBytes,
          sparePercentage: body.sparePercentage ?? DEFAULT_SPARE_PERCENTAGE,
          defaultThin: body.defaultVolumeType === "ThinProvisioned",
          rebuildRateLimitKbps: body.rebuildRateLimitInKbps ?? DEFAULT_REBUILD_RATE_LIMIT_KBPS,
          // a rate limit of 0 has always meant an unthrottled rebuild (io_priority.ts)
          ...(body.rebuildRateLimitInKbps === 0 ? { rebuildIoPolicy: "unlimited" as const } : {}),
          rebuildEnabled: body.rebuildEnabled ?? true,
          rebalanceEnabled: body.rebalanceEnabled ?? true,
          zeroPaddingEnabled: body.zeroPaddingEnabled ?? true,
          writeCache: body.writeCache ?? "writeBack",
          createdAtMs: ctx.clock(),
        })
        .run(),
    );
    return id;
  });
}

export function renameStoragePool(ctx: MdmContext, id: string, name: string): void {
  getPool(ctx, id);
  unique(`A Storage Pool named ${name} already exists in this Protection Domain`, () =>
    ctx.store.db.update(storagePoolTable).set({ name }).where(eq(storagePoolTable.id, id)).run(),
  );
}

export function removeStoragePool(ctx: MdmContext, id: string): void {
  inTransaction(ctx, () => {
    getPool(ctx, id);
    const volumes = countOf(ctx, volumeTable, eq(volumeTable.poolId, id));
    const devices = countOf(ctx, deviceTable, eq(deviceTable.poolId, id));
    if (volumes > 0 || devices > 0) {
      throw new PfError("IN_USE", `Storage Pool ${id} still has ${volumes} volume(s) and ${devices} device(s); remove them first`);
    }
    ctx.store.db.delete(storagePoolTable).where(eq(storagePoolTable.id, id)).run();
  });
}

/** Change the spare reserve; refused when the thick reservations would no longer fit beside it. */
export function setSparePercentage(ctx: MdmContext, id: string, sparePercentage: number): void {
  inTransaction(ctx, () => {
    const pool = getPool(ctx, id);
    const cap = poolCapacityOf(ctx, { ...pool, sparePercentage });
    if (cap.thickReservedRawBytes > cap.usableRawBytes) {
      throw new PfError(
        "NO_SPACE",
        `a spare reserve of ${sparePercentage}% would leave ${formatBytes(cap.usableRawBytes)} usable raw capacity, less than the ${formatBytes(cap.thickReservedRawBytes)} raw that thick volumes reserve`,
      );
    }
    ctx.store.db.update(storagePoolTable).set({ sparePercentage }).where(eq(storagePoolTable.id, id)).run();
  });
}

export function setPoolFlags(ctx: MdmContext, id: string, flags: { rebuildEnabled?: boolean; rebalanceEnabled?: boolean }): void {
  getPool(ctx, id);
  const set: { rebuildEnabled?: boolean; rebalanceEnabled?: boolean } = {};
  if (flags.rebuildEnabled !== undefined) set.rebuildEnabled = flags.rebuildEnabled;
  if (flags.rebalanceEnabled !== undefined) set.rebalanceEnabled = flags.rebalanceEnabled;
  if (Object.keys(set).length === 0) throw new PfError("BAD_REQUEST", "nothing to set");
  ctx.store.db.update(storagePoolTable).set(set).where(eq(storagePoolTable.id, id)).run();
}

// ---- fault sets ----

export function createFaultSet(ctx: MdmContext, body: CreateFaultSet): string {
  return inTransaction(ctx, () => {
    getPd(ctx, body.protectionDomainId);
    const id = allocateId(ctx, "FaultSet");
    unique(`A Fault Set named ${body.name} already exists in this Protection Domain`, () =>
      ctx.store.db.insert(faultSetTable).values({ id, pdId: body.protectionDomainId, name: body.name, createdAtMs: ctx.clock() }).run(),
    );
    return id;
  });
}

export function renameFaultSet(ctx: MdmContext, id: string, name: string): void {
  getFaultSet(ctx, id);
  unique(`A Fault Set named ${name} already exists in this Protection Domain`, () =>
    ctx.store.db.update(faultSetTable).set({ name }).where(eq(faultSetTable.id, id)).run(),
  );
}

export function removeFaultSet(ctx: MdmContext, id: string): void {
  inTransaction(ctx, () => {
    getFaultSet(ctx, id);
    const sds = countOf(ctx, sdsTable, eq(sdsTable.faultSetId, id));
    if (sds > 0) throw new PfError("IN_USE", `Fault Set ${id} still has ${sds} SDS(s); remove them first`);
    ctx.store.db.delete(faultSetTable).where(eq(faultSetTable.id, id)).run();
  });
}

// ---- SDS and devices ----

/** The data-plane address of an SDS: the first IP whose role carries SDS traffic. */
export function dataHostOf(ipList: SdsIpEntry[]): string {
  const ip = ipList.find((x) => x.role !== "sdcOnly") ?? ipList[0];
  if (!ip) throw new PfError("BAD_REQUEST", "sdsIpList needs at least one IP");
  return ip.ip;
}

export function parseIpList(json: string): SdsIpEntry[] {
  return JSON.parse(json) as SdsIpEntry[];
}

function checkIpsFree(ctx: MdmContext, ips: string[], exceptSdsId: string | null): void {
  for (const other of ctx.store.db.select().from(sdsTable).all()) {
    if (other.id === exceptSdsId) continue;
    const taken = parseIpList(other.ipList).find((x) => ips.includes(x.ip));
    if (taken) throw new PfError("ALREADY_EXISTS", `SDS ${other.name} (${other.id}) already uses IP ${taken.ip}`);
  }
}

export function createSds(ctx: MdmContext, body: CreateSds): string {
  return inTransaction(ctx, () => {
    getPd(ctx, body.protectionDomainId);
    if (body.faultSetId !== undefined) {
      const fs = getFaultSet(ctx, body.faultSetId);
      if (fs.pdId !== body.protectionDomainId) throw new PfError("BAD_REQUEST", `Fault Set ${fs.id} is not in Protection Domain ${body.protectionDomainId}`);
    }
    const host = dataHostOf(body.sdsIpList);
    checkIpsFree(
      ctx,
      body.sdsIpList.map((x) => x.ip),
      null,
    );
    const id = allocateId(ctx, "Sds");
    const name = body.name ?? `SDS_${host}`.slice(0, Limits.maxNameLength);
    unique(`An SDS named ${name} already exists`, () =>
      ctx.store.db
        .insert(sdsTable)
        .values({
          id,
          name,
          pdId: body.protectionDomainId,
          faultSetId: body.faultSetId ?? null,
          ipList: JSON.stringify(body.sdsIpList),
          host,
          dataPort: body.sdsPort ?? DEFAULT_SDS_PORT,
          state: "Normal",
          createdAtMs: ctx.clock(),
        })
        .run(),
    );
    const sds = getSds(ctx, id);
    for (const d of body.deviceInfoList ?? []) {
      addDevice(ctx, sds, {
        path: d.devicePath,
        poolId: d.storagePoolId,
        name: d.deviceName,
        mediaType: d.mediaType,
        // as createDevice: no room until the SDS has opened it and its join reported the size
        capacityBytes: 0,
      });
    }
    bumpMapVersion(ctx);
    return id;
  });
}

export interface NewDevice {
  path: string;
  poolId: string;
  name?: string | undefined;
  mediaType?: string | undefined;
  capacityBytes: number;
}

/** Insert one device of an SDS; call inside a transaction. */
export function addDevice(ctx: MdmContext, sds: SdsRow, d: NewDevice): string {
  const pool = getPool(ctx, d.poolId);
  if (pool.pdId !== sds.pdId) {
    throw new PfError("BAD_REQUEST", `Storage Pool ${pool.id} is not in the Protection Domain of SDS ${sds.id}`);
  }
  const held = ctx.store.sqlite.query<{ n: number }, [string]>("SELECT COUNT(*) AS n FROM device WHERE sds_id = ?").get(sds.id)?.n ?? 0;
  if (held >= Limits.maxDevicesPerSds) {
    throw new PfError("TOO_BIG", `SDS ${sds.name} already has ${held} devices, the most one SDS serves (its join and heartbeats carry at most ${Limits.maxDevicesPerSds}); remove one first or put the disk on another SDS`);
  }
  const id = allocateId(ctx, "Device");
  unique(`SDS ${sds.name} already has a device with path ${d.path}${d.name ? ` or name ${d.name}` : ""}`, () =>
    ctx.store.db
      .insert(deviceTable)
      .values({
        id,
        sdsId: sds.id,
        poolId: pool.id,
        name: d.name ?? null,
        path: d.path,
        mediaType: d.mediaType ?? pool.mediaType,
        capacityBytes: d.capacityBytes,
        usedBytes: 0,
        state: "Normal",
        assignedBytes: 0,
        thickAssignedBytes: 0,
        createdAtMs: ctx.clock(),
      })
      .run(),
  );
  return id;
}

/**
 * Register a device of an SDS through REST (scli --add_sds_device). It holds nothing until its
 * SDS has opened it: the row starts with no capacity (placement, rebuild targets and moves need
 * room for a whole extent, so none lands on it); the SDS's heartbeat answers name it
 * (cluster_service.ts devicesToOpen), and the SDS's next beat, or its next join, reports the
 * size it opened. A body's capacityInKb is not trusted for that: a device the SDS never opened,
 * given room here, took extents the SDS could not serve (EIO on every IO to them).
 */
export function createDevice(ctx: MdmContext, body: CreateDevice): string {
  const path = body.deviceCurrentPathname ?? body.devicePath;
  if (path === undefined) throw new PfError("BAD_REQUEST", "deviceCurrentPathname is required");
  const id = inTransaction(ctx, () => {
    const sds = getSds(ctx, body.sdsId);
    return addDevice(ctx, sds, { path, poolId: body.storagePoolId, name: body.name, mediaType: body.mediaType, capacityBytes: 0 });
  });
  consola.info(`mdm: device ${id} (${path}) registered for SDS ${body.sdsId}: it takes data once that SDS has opened it`);
  return id;
}

export function renameDevice(ctx: MdmContext, id: string, name: string): void {
  const d = getDevice(ctx, id);
  unique(`SDS ${d.sdsId} already has a device named ${name}`, () => ctx.store.db.update(deviceTable).set({ name }).where(eq(deviceTable.id, id)).run());
}

export function removeDevice(ctx: MdmContext, id: string): void {
  inTransaction(ctx, () => {
    getDevice(ctx, id);
    const copies = countOf(
      ctx,
      extentTable,
      or(eq(extentTable.primaryDeviceId, id), eq(extentTable.secondaryDeviceId, id), eq(extentTable.targetDeviceId, id), eq(extentTable.awayDeviceId, id)),
    );
    if (copies > 0) throw new PfError("IN_USE", `Device ${id} holds ${copies} extent copies; moving data off a device is not implemented yet`);
    ctx.store.db.delete(deviceTable).where(eq(deviceTable.id, id)).run();
  });
}

export function renameSds(ctx: MdmContext, id: string, name: string): void {
  getSds(ctx, id);
  unique(`An SDS named ${name} already exists`, () => ctx.store.db.update(sdsTable).set({ name }).where(eq(sdsTable.id, id)).run());
}

// ---- SDC ----

export function renameSdc(ctx: MdmContext, id: string, name: string): void {
  getSdc(ctx, id);
  unique(`An SDC named ${name} already exists`, () => ctx.store.db.update(sdcTable).set({ name }).where(eq(sdcTable.id, id)).run());
}

export function removeSdc(ctx: MdmContext, id: string): void {
  inTransaction(ctx, () => {
    getSdc(ctx, id);
    const mapped = countOf(ctx, volumeMappingTable, eq(volumeMappingTable.sdcId, id));
    if (mapped > 0) throw new PfError("IN_USE", `SDC ${id} has ${mapped} mapped volume(s); unmap them first`);
    ctx.store.db.delete(sdcTable).where(eq(sdcTable.id, id)).run();
  });
  ctx.health.forgetSdc(id);
}

// ---- helpers ----

type CountableTable =
  | typeof storagePoolTable
  | typeof sdsTable
  | typeof volumeTable
  | typeof deviceTable
  | typeof extentTable
  | typeof volumeMappingTable
  | typeof faultSetTable;

export function countOf(ctx: MdmContext, table: CountableTable, where: ReturnType<typeof and>): number {
  return ctx.store.db.select({ n: count() }).from(table).where(where).get()?.n ?? 0;
}
