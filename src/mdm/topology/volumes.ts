// Volumes: create (thin or thick, extents placed at creation), extend, rename, remove, and
// SDC mappings. One transaction per call; every check runs before the first write, so a
// refused call changes nothing.
// Invariants: size is a positive multiple of the pool's allocation granularity, at most
// Limits.maxVolumeBytes, and only grows; a volume has exactly size/extentBytes extent rows,
// each created with two copies on two SDSs (two fault sets when the pool has them), primary
// first (recovery may later degrade, rebuild and move them: recovery.ts);
// device.assigned_bytes / thick_assigned_bytes equal the sums over the extent rows' copies
// (in-sync, target and away); a thick
// volume is created or grown only if the pool still fits it after its spare reserve; a
// volume maps to a second SDC only with allowMultipleMappings; every change bumps mapVersion.
// Extents belong to the volume's V-Tree (0002_snapshots): keyed by the V-Tree's owner id (the base
// volume's id); a V-Tree has as many extents as its largest member needs. A new volume is a new
// plain V-Tree (one layer, the owner id). Removal lives in src/mdm/vtree/ (descendants, layers).

import { and, eq, inArray, sql } from "drizzle-orm";
import { assert, PfError } from "../../proto/errors.ts";
import { Limits, Units } from "../../proto/limits.ts";
import type { AccessMode, CreateVolume, VolumeType } from "../../proto/powerflex_api.ts";
import {
  deviceTable,
  extentTable,
  storagePoolTable,
  volumeMappingTable,
  volumeTable,
  vtreeTable,
  type StoragePoolRow,
} from "../../store/mdm_schema.ts";
import { checkThickFits, poolCapacity, roundUpToGranularity, type PoolCapacity } from "./capacity.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { getPool, getSdcByIdOrGuid, getVolume, unique } from "../core/lookup.ts";
import { placeExtents, type PlacementSds, type ReplicaSlot } from "./placement.ts";
import { placementViewOf } from "./placement_view.ts";
import { allocateId, bumpMapVersion } from "../core/system_state.ts";
import { revokeGrants } from "./grant_floors.ts";
import { checkSdcMayMap } from "./sdc_access.ts";

/** Inputs of the capacity math for one pool, read from the database. */
export function poolCapacityOf(ctx: MdmContext, pool: StoragePoolRow): PoolCapacity {
  const devices = ctx.store.db.select().from(deviceTable).where(eq(deviceTable.poolId, pool.id)).all();
  const thick = ctx.store.db
    .select({ bytes: sql<number>`coalesce(sum(${volumeTable.sizeBytes}), 0)` })
    .from(volumeTable)
    .where(and(eq(volumeTable.poolId, pool.id), eq(volumeTable.volumeType, "ThickProvisioned")))
    .get();
  // A device's usedBytes counts everything the SDS allocated on it; thick copies are reserved
  // in full by the MDM, so only what exceeds a device's thick share is thin data (raw).
  let thinUsedRaw = 0;
  for (const d of devices) thinUsedRaw += Math.max(0, d.usedBytes - d.thickAssignedBytes);
  return poolCapacity(
    {
      devices: devices.map((d) => ({ capacityBytes: d.capacityBytes, usedBytes: d.usedBytes, state: d.state === "Failed" ? "Failed" : "Normal" })),
      sparePercentage: pool.sparePercentage,
      thickReservedBytes: thick?.bytes ?? 0,
      thinUsedBytes: Math.floor(thinUsedRaw / 2),
    },
    pool.granularityBytes,
  );
}

/**
 * SDSs and devices of a pool as placement sees them. A thick extent must really fit: a device
 * holds its thick reservations plus the thin data written beyond them, so that is its assigned
 * figure. Thin extents take space only as written: they are balanced by all extents assigned and
 * may overcommit a device up to Limits.maxThinOvercommitRatio times its capacity.
 */
export function placementSdsOf(ctx: MdmContext, pool: StoragePoolRow, thick: boolean): PlacementSds[] {
  // from the in-memory placement view (placement_view.ts): reading every device row per create
  // was 9-20 ms at 1,000 SDSs x 8 devices
  return placementViewOf(ctx).placementSds(pool.id, pool.pdId, thick, (sdsId) => ctx.health.sdsConnected(sdsId));
}

function sizeBytesOf(body: { volumeSizeInKb?: number | undefined; volumeSizeInGb?: number | undefined }): number {
  if (body.volumeSizeInKb !== undefined) return body.volumeSizeInKb * Units.KiB;
  if (body.volumeSizeInGb !== undefined) return body.volumeSizeInGb * Units.GiB;
  throw new PfError("BAD_REQUEST", "volumeSizeInKb or volumeSizeInGb is required");
}

/** Round a requested size to the pool's granularity and check it against the limits. */
export function checkedVolumeSize(requestedBytes: number, pool: StoragePoolRow): number {
  if (!Number.isFinite(requestedBytes) || requestedBytes <= 0) {
    throw new PfError("BAD_REQUEST", `volume size must be positive (got ${requestedBytes} bytes)`);
  }
  if (!Number.isSafeInteger(requestedBytes) || requestedBytes > Limits.maxVolumeBytes) {
    throw new PfError("TOO_BIG", `volume size ${requestedBytes} bytes is over the limit of ${Limits.maxVolumeBytes} bytes (${Limits.maxVolumeBytes / Units.GiB} GiB)`);
  }
  const size = roundUpToGranularity(requestedBytes, pool.granularityBytes);
  if (size > Limits.maxVolumeBytes) {
    throw new PfError("TOO_BIG", `volume size rounded to ${size} bytes is over the limit of ${Limits.maxVolumeBytes} bytes`);
  }
  assert(size % pool.extentBytes === 0, "granularity is a multiple of the extent size");
  return size;
}

function resolvePool(ctx: MdmContext, body: CreateVolume): StoragePoolRow {
  if (body.storagePoolId !== undefined) {
    const pool = getPool(ctx, body.storagePoolId);
    if (body.protectionDomainId !== undefined && pool.pdId !== body.protectionDomainId) {
      throw new PfError("BAD_REQUEST", `Storage Pool ${pool.id} is not in Protection Domain ${body.protectionDomainId}`);
    }
    return pool;
  }
  if (body.protectionDomainId !== undefined) {
    const pools = ctx.store.db.select().from(storagePoolTable).where(eq(storagePoolTable.pdId, body.protectionDomainId)).all();
    if (pools.length === 1 && pools[0]) return pools[0];
    throw new PfError("BAD_REQUEST", `storagePoolId is required (Protection Domain ${body.protectionDomainId} has ${pools.length} pools)`);
  }
  throw new PfError("BAD_REQUEST", "storagePoolId is required");
}

/**
 * Place `count` new extents of a V-Tree (by owner id) starting at `firstIdx` and record them;
 * call inside a transaction. Returns the SDSs that got a copy.
 */
export function placeAndRecord(ctx: MdmContext, pool: StoragePoolRow, volume: { id: string; thick: boolean }, firstIdx: number, count: number): Set<string> {
  const holders = new Set<string>();
  if (count === 0) return holders;
  const slots = placeExtents({ sds: placementSdsOf(ctx, pool, volume.thick), extentCount: count, extentBytes: pool.extentBytes, random: ctx.random });
  assert(slots.length === count, "placement returned one replica set per extent");
  const perDevice = new Map<string, number>();
  const rows = slots.map((set, i) => {
    checkReplicaSet(set);
    const [p, s] = set as [ReplicaSlot, ReplicaSlot];
    perDevice.set(p.deviceId, (perDevice.get(p.deviceId) ?? 0) + 1);
    perDevice.set(s.deviceId, (perDevice.get(s.deviceId) ?? 0) + 1);
    holders.add(p.sdsId).add(s.sdsId);
    return {
      volumeId: volume.id,
      idx: firstIdx + i,
      epoch: 1,
      primarySdsId: p.sdsId,
      primaryDeviceId: p.deviceId,
      secondarySdsId: s.sdsId,
      secondaryDeviceId: s.deviceId,
    };
  });
  // one cached statement per row: drizzle built a multi-row INSERT text per call (prepared anew
  // per length) and ~14 % of a create at 1,000 SDSs went to it
  const insert = ctx.store.sqlite.query<never, [string, number, number, string, string, string, string]>(
    "INSERT INTO extent (volume_id, idx, epoch, primary_sds_id, primary_device_id, secondary_sds_id, secondary_device_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
  );
  for (const r of rows) insert.run(r.volumeId, r.idx, r.epoch, r.primarySdsId, r.primaryDeviceId, r.secondarySdsId, r.secondaryDeviceId);
  for (const [deviceId, copies] of perDevice) adjustDevice(ctx, deviceId, copies * pool.extentBytes, volume.thick);
  return holders;
}

function checkReplicaSet(set: ReplicaSlot[]): void {
  assert(set.length === 2, "two copies per extent");
  assert(set[0]?.sdsId !== set[1]?.sdsId, "two copies never on one SDS");
}

/** Add (or with a negative delta, remove) copies' bytes to a device's accounting; call inside a transaction. */
export function adjustDevice(ctx: MdmContext, deviceId: string, deltaBytes: number, thick: boolean): void {
  // a cached statement: drizzle built this UPDATE per device per call (a quarter of a create's
  // CPU at 1,000 SDSs, and every recovery step runs it per device touched)
  ctx.store.sqlite
    .query<never, [number, number, string]>("UPDATE device SET assigned_bytes = assigned_bytes + ?1, thick_assigned_bytes = thick_assigned_bytes + ?2 WHERE id = ?3")
    .run(deltaBytes, thick ? deltaBytes : 0, deviceId);
}

export function createVolume(ctx: MdmContext, body: CreateVolume): string {
  return inTransaction(ctx, () => {
    const pool = resolvePool(ctx, body);
    const sizeBytes = checkedVolumeSize(sizeBytesOf(body), pool);
    const volumeType: VolumeType = body.volumeType ?? (pool.defaultThin ? "ThinProvisioned" : "ThickProvisioned");
    const thick = volumeType === "ThickProvisioned";
    // cached statements for the name check and the three rows: drizzle built each text per call
    // (~0.5 ms of a create's CPU at 100,000 volumes: bench/mdm_rest_inproc.ts)
    const sq = ctx.store.sqlite;
    if (body.name !== undefined) {
      const taken = sq.query<{ id: string }, [string]>("SELECT id FROM volume WHERE name = ?").get(body.name);
      if (taken) throw new PfError("ALREADY_EXISTS", `A volume named ${body.name} already exists (${taken.id})`);
    }
    if (thick) checkThickFits(poolCapacityOf(ctx, pool), sizeBytes);
    const id = allocateId(ctx, "Volume");
    const vtreeId = allocateId(ctx, "VTree");
    unique(`A volume named ${body.name} already exists`, () =>
      sq
        .query<never, [string, string | null, string, string, number, number, string, string, number, string, string]>(
          "INSERT INTO volume (id, name, pool_id, volume_type, size_bytes, extent_bytes, vtree_id, access_mode_limit, creation_time_s, owner_id, open_layer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .run(id, body.name ?? null, pool.id, volumeType, sizeBytes, pool.extentBytes, vtreeId, "ReadWrite", Math.floor(ctx.clock() / 1000), id, id),
    );
    const now = ctx.clock();
    sq.query<never, [string, string, string, number, string, string | null, number, number]>(
      "INSERT INTO vtree (owner_id, id, pool_id, extent_bytes, volume_type, name, graph_version, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ).run(id, vtreeId, pool.id, pool.extentBytes, volumeType, body.name ?? null, 1, now);
    sq.query<never, [string, string, number]>("INSERT INTO vtree_layer (layer_id, owner_id, parent_layer_id, created_at_ms) VALUES (?, ?, NULL, ?)").run(id, id, now);
    const holders = placeAndRecord(ctx, pool, { id, thick }, 0, sizeBytes / pool.extentBytes);
    // a new volume is mapped to no SDC yet: only the SDSs holding its extents fetch anew
    bumpMapVersion(ctx, { sds: holders, sdc: [] });
    return id;
  });
}

/** setVolumeSize: grow to sizeInGB (rounded up to the granularity); shrinking is refused. */
export function setVolumeSize(ctx: MdmContext, volumeId: string, sizeInGB: number): void {
  inTransaction(ctx, () => {
    const vol = getVolume(ctx, volumeId);
    const pool = getPool(ctx, vol.poolId);
    const newSize = checkedVolumeSize(sizeInGB * Units.GiB, pool);
    if (newSize < vol.sizeBytes) {
      throw new PfError("INVALID_STATE", `volume ${vol.id} is ${vol.sizeBytes / Units.GiB} GiB; shrinking to ${newSize / Units.GiB} GiB is refused`);
    }
    if (newSize === vol.sizeBytes) return;
    const thick = vol.volumeType === "ThickProvisioned";
    if (thick) checkThickFits(poolCapacityOf(ctx, pool), newSize - vol.sizeBytes);
    // the V-Tree may already have the extents (another member is larger): add only what is missing
    const vt = ctx.store.db.select().from(vtreeTable).where(eq(vtreeTable.ownerId, vol.ownerId)).get();
    assert(vt !== undefined, "a volume's V-Tree exists");
    const have = ctx.store.sqlite.query<{ n: number }, [string]>("SELECT COUNT(*) AS n FROM extent WHERE volume_id = ?").get(vol.ownerId)?.n ?? 0;
    const need = newSize / vol.extentBytes;
    if (need > have) placeAndRecord(ctx, pool, { id: vol.ownerId, thick: vt.volumeType === "ThickProvisioned" }, have, need - have);
    ctx.store.db.update(volumeTable).set({ sizeBytes: newSize }).where(eq(volumeTable.id, vol.id)).run();
    bumpMapVersion(ctx);
  });
}

export function renameVolume(ctx: MdmContext, volumeId: string, newName: string): void {
  inTransaction(ctx, () => {
    const vol = getVolume(ctx, volumeId);
    if (vol.name === newName) return;
    const taken = ctx.store.db.select({ id: volumeTable.id }).from(volumeTable).where(eq(volumeTable.name, newName)).get();
    if (taken) throw new PfError("ALREADY_EXISTS", `A volume named ${newName} already exists (${taken.id})`);
    unique(`A volume named ${newName} already exists`, () => ctx.store.db.update(volumeTable).set({ name: newName }).where(eq(volumeTable.id, vol.id)).run());
    bumpMapVersion(ctx); // SDC maps carry the name
  });
}

/** Free the extents of a V-Tree (every copy's accounting); call inside the transaction that drops it. */
export function releaseExtents(ctx: MdmContext, owner: { ownerId: string; extentBytes: number; thick: boolean }): void {
  const copies = ctx.store.sqlite
    .query<{ device_id: string; n: number }, [string]>(
      `SELECT device_id, COUNT(*) AS n FROM (
         SELECT primary_device_id AS device_id FROM extent WHERE volume_id = ?1
         UNION ALL SELECT secondary_device_id FROM extent WHERE volume_id = ?1 AND secondary_device_id IS NOT NULL
         UNION ALL SELECT target_device_id FROM extent WHERE volume_id = ?1 AND target_device_id IS NOT NULL
         UNION ALL SELECT away_device_id FROM extent WHERE volume_id = ?1 AND away_device_id IS NOT NULL)
       GROUP BY device_id`,
    )
    .all(owner.ownerId);
  for (const c of copies) adjustDevice(ctx, c.device_id, -c.n * owner.extentBytes, owner.thick);
  ctx.store.db.delete(extentTable).where(eq(extentTable.volumeId, owner.ownerId)).run();
}

/** A V-Tree stops being thick (its thick base volume went, snapshots stay): its copies stop counting as thick. */
export function unthickExtents(ctx: MdmContext, owner: { ownerId: string; extentBytes: number }): void {
  const copies = ctx.store.sqlite
    .query<{ device_id: string; n: number }, [string]>(
      `SELECT device_id, COUNT(*) AS n FROM (
         SELECT primary_device_id AS device_id FROM extent WHERE volume_id = ?1
         UNION ALL SELECT secondary_device_id FROM extent WHERE volume_id = ?1 AND secondary_device_id IS NOT NULL
         UNION ALL SELECT target_device_id FROM extent WHERE volume_id = ?1 AND target_device_id IS NOT NULL
         UNION ALL SELECT away_device_id FROM extent WHERE volume_id = ?1 AND away_device_id IS NOT NULL)
       GROUP BY device_id`,
    )
    .all(owner.ownerId);
  for (const c of copies) {
    ctx.store.db
      .update(deviceTable)
      .set({ thickAssignedBytes: sql`${deviceTable.thickAssignedBytes} - ${c.n * owner.extentBytes}` })
      .where(eq(deviceTable.id, c.device_id))
      .run();
  }
}

// ---- mappings ----

export interface MapRequest {
  sdcId?: string | undefined;
  guid?: string | undefined;
  accessMode?: AccessMode | undefined;
  allowMultipleMappings?: boolean | undefined;
}

export function addMappedSdc(ctx: MdmContext, volumeId: string, req: MapRequest): void {
  inTransaction(ctx, () => {
    const vol = getVolume(ctx, volumeId);
    const sdc = getSdcByIdOrGuid(ctx, req);
    checkSdcMayMap(ctx, sdc); // restricted SDC mode (sdc_access.ts)
    const accessMode = req.accessMode ?? "ReadWrite";
    const existing = ctx.store.db.select().from(volumeMappingTable).where(eq(volumeMappingTable.volumeId, vol.id)).all();
    if (existing.some((m) => m.sdcId === sdc.id)) throw new PfError("ALREADY_MAPPED", "The volume is already mapped to this SDC");
    if (existing.length > 0 && !req.allowMultipleMappings) {
      throw new PfError(
        "INVALID_STATE",
        `The volume is already mapped to another SDC (${existing.map((m) => m.sdcId).join(", ")}); set allowMultipleMappings to map it to several`,
      );
    }
    if (vol.accessModeLimit === "ReadOnly" && accessMode === "ReadWrite") {
      throw new PfError("INVALID_STATE", `volume ${vol.id} is limited to ReadOnly access`);
    }
    unique("The volume is already mapped to this SDC", () =>
      ctx.store.db.insert(volumeMappingTable).values({ volumeId: vol.id, sdcId: sdc.id, accessMode, createdAtMs: ctx.clock() }).run(),
    );
    // a new mapping changes that SDC's maps only: SDS assignments carry no mappings (grants are
    // checked with the grant key; only a revocation, i.e. an unmap, reaches SDSs as a floor)
    bumpMapVersion(ctx, { sds: [], sdc: [sdc.id] });
  });
}

/** Every SDS holding a copy (in-sync, target or away) of an extent of the V-Tree `ownerId`. */
function holdersOf(ctx: MdmContext, ownerId: string): string[] {
  const rows = ctx.store.sqlite
    .query<{ p: string; s: string | null; t: string | null; a: string | null }, [string]>("SELECT primary_sds_id AS p, secondary_sds_id AS s, target_sds_id AS t, away_sds_id AS a FROM extent WHERE volume_id = ?")
    .all(ownerId);
  const out = new Set<string>();
  for (const r of rows) for (const id of [r.p, r.s, r.t, r.a]) if (id !== null) out.add(id);
  return [...out];
}

export function removeMappedSdc(ctx: MdmContext, volumeId: string, req: { sdcId?: string | undefined; guid?: string | undefined; allSdcs: boolean }): void {
  inTransaction(ctx, () => {
    const vol = getVolume(ctx, volumeId);
    let gone: { sdcId: string }[];
    if (req.allSdcs) {
      gone = ctx.store.db.delete(volumeMappingTable).where(eq(volumeMappingTable.volumeId, vol.id)).returning({ sdcId: volumeMappingTable.sdcId }).all();
    } else {
      const sdc = getSdcByIdOrGuid(ctx, req);
      gone = ctx.store.db
        .delete(volumeMappingTable)
        .where(and(eq(volumeMappingTable.volumeId, vol.id), eq(volumeMappingTable.sdcId, sdc.id)))
        .returning({ sdcId: volumeMappingTable.sdcId })
        .all();
      if (gone.length === 0) throw new PfError("NOT_MAPPED", "The volume is not mapped to this SDC");
    }
    // it concerns the SDCs that lose the volume and the SDSs that hold its V-Tree's copies (the
    // only ones that check its grants: they get the new floors within a round trip, map watch)
    bumpMapVersion(ctx, { sds: holdersOf(ctx, vol.ownerId), sdc: gone.map((g) => g.sdcId) }, { urgent: true });
    for (const g of gone) revokeGrants(ctx, vol.id, g.sdcId);
  });
}

export function setMappingAccessMode(ctx: MdmContext, volumeId: string, req: { sdcId?: string | undefined; guid?: string | undefined; accessMode: AccessMode }): void {
  inTransaction(ctx, () => {
    const vol = getVolume(ctx, volumeId);
    const sdc = getSdcByIdOrGuid(ctx, req);
    if (vol.accessModeLimit === "ReadOnly" && req.accessMode === "ReadWrite") {
      throw new PfError("INVALID_STATE", `volume ${vol.id} is limited to ReadOnly access`);
    }
    const changed = ctx.store.db
      .update(volumeMappingTable)
      .set({ accessMode: req.accessMode })
      .where(and(eq(volumeMappingTable.volumeId, vol.id), eq(volumeMappingTable.sdcId, sdc.id)))
      .returning({ sdcId: volumeMappingTable.sdcId })
      .all();
    if (changed.length === 0) throw new PfError("NOT_MAPPED", "The volume is not mapped to this SDC");
    bumpMapVersion(ctx, { sds: holdersOf(ctx, vol.ownerId), sdc: [sdc.id] }, { urgent: req.accessMode === "ReadOnly" });
    // a ReadWrite grant issued before must not outlive the switch to ReadOnly (grant_floors.ts)
    if (req.accessMode === "ReadOnly") revokeGrants(ctx, vol.id, sdc.id);
  });
}

/**
 * setMappedSdcLimits: the QoS of one (volume, SDC) mapping; an absent limit stays as it is, 0 is
 * unlimited (the request schema checks the PowerFlex rules). The SDC applies it live at its next
 * map refresh (mapVersion bump), no remap.
 */
export function setMappedSdcLimits(ctx: MdmContext, volumeId: string, req: { sdcId?: string | undefined; guid?: string | undefined; iopsLimit?: number | undefined; bandwidthLimitInKbps?: number | undefined }): void {
  inTransaction(ctx, () => {
    const vol = getVolume(ctx, volumeId);
    const sdc = getSdcByIdOrGuid(ctx, req);
    const m = ctx.store.db
      .select()
      .from(volumeMappingTable)
      .where(and(eq(volumeMappingTable.volumeId, vol.id), eq(volumeMappingTable.sdcId, sdc.id)))
      .get();
    if (!m) throw new PfError("NOT_MAPPED", `The volume ${vol.id} is not mapped to SDC ${sdc.id}`);
    const limitIops = req.iopsLimit ?? m.limitIops;
    const limitBwKbps = req.bandwidthLimitInKbps ?? m.limitBwKbps;
    if (limitIops === m.limitIops && limitBwKbps === m.limitBwKbps) return;
    ctx.store.db
      .update(volumeMappingTable)
      .set({ limitIops, limitBwKbps })
      .where(and(eq(volumeMappingTable.volumeId, vol.id), eq(volumeMappingTable.sdcId, sdc.id)))
      .run();
    bumpMapVersion(ctx);
  });
}

/** setVolumeAccessModeLimit: ReadOnly refuses (existing and new) ReadWrite mappings. */
export function setAccessModeLimit(ctx: MdmContext, volumeId: string, accessModeLimit: AccessMode): void {
  inTransaction(ctx, () => {
    const vol = getVolume(ctx, volumeId);
    if (vol.accessModeLimit === accessModeLimit) return;
    if (accessModeLimit === "ReadOnly") {
      const rw = ctx.store.db
        .select({ s: volumeMappingTable.sdcId })
        .from(volumeMappingTable)
        .where(and(eq(volumeMappingTable.volumeId, vol.id), eq(volumeMappingTable.accessMode, "ReadWrite")))
        .all();
      if (rw.length > 0) throw new PfError("INVALID_STATE", `volume ${vol.id} is mapped ReadWrite to SDC ${rw[0]!.s}; change that mapping first`);
    }
    ctx.store.db.update(volumeTable).set({ accessModeLimit }).where(eq(volumeTable.id, vol.id)).run();
    bumpMapVersion(ctx);
  });
}

export interface MappingBrief {
  sdcId: string;
  accessMode: string;
  limitIops: number;
  limitBwKbps: number;
}

/** Mappings of many volumes at once (for listing): volumeId -> rows. */
export function mappingsByVolume(ctx: MdmContext, volumeIds: string[] | null): Map<string, MappingBrief[]> {
  const rows =
    volumeIds === null
      ? ctx.store.db.select().from(volumeMappingTable).all()
      : volumeIds.length === 0
        ? []
        : ctx.store.db.select().from(volumeMappingTable).where(inArray(volumeMappingTable.volumeId, volumeIds)).all();
  const out = new Map<string, MappingBrief[]>();
  for (const r of rows) {
    const list = out.get(r.volumeId) ?? [];
    list.push({ sdcId: r.sdcId, accessMode: r.accessMode, limitIops: r.limitIops, limitBwKbps: r.limitBwKbps });
    out.set(r.volumeId, list);
  }
  return out;
}
