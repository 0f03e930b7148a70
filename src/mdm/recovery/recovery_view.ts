// Reads the recovery view the planner decides on: pools' rebuild/rebalance switches, every SDS
// with its liveness (from the health tracker) and devices, the extents that need attention, the
// healthy extents that drain or rebalance moves may pick from, and the SDSs being removed that
// hold nothing any more. Read-only; costs nothing in a healthy, balanced pool (the attention
// index is empty and no candidate is read).

import { and, eq, isNotNull, isNull, or, type SQL } from "drizzle-orm";
import { Limits } from "../../proto/limits.ts";
import { extentTable, storagePoolTable, vtreeTable, type ExtentRow } from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { extentFromRow, extentKey, type ExtentInfo, type PlannedExtent } from "./recovery_model.ts";
import type { PoolPolicy } from "./rebuild_planner.ts";
import { rebuildUnthrottled } from "../topology/io_priority.ts";
import type { SdsView } from "./target_placement.ts";
import type { KeySource } from "./recovery_worklist.ts";
import { placementViewOf, sdsWithDevicesFromStore } from "../topology/placement_view.ts";

export const SDS_REMOVING = "RemovalInProgress";

export interface RecoveryView {
  pools: PoolPolicy[];
  sds: SdsView[];
  extents: PlannedExtent[];
  moveCandidates: PlannedExtent[];
  emptyRemovingSds: string[];
  /** copies held by SDSs being removed, per pool (drain work left) */
  drainCopiesByPool: Map<string, number>;
}

export function loadSdsViews(ctx: MdmContext): SdsView[] {
  // every recovery tick (4 a second): from the in-memory placement view (placement_view.ts), not
  // a read of every device row (8,000 at 1,000 SDSs: most of a 23 ms tick at rest)
  // a standby (REST reads of recovery state) reads the rows: its connection is query_only
  const { sds, devicesOf } = ctx.meta.isLeader() ? placementViewOf(ctx).sdsWithDevices() : sdsWithDevicesFromStore(ctx.store.sqlite);
  return sds.map((s) => ({
    sdsId: s.id,
    faultSetId: s.faultSetId,
    connected: ctx.health.sdsConnected(s.id),
    confirmed: ctx.health.sdsConfirmed(s.id),
    downSinceMs: ctx.health.sdsDownSinceMs(s.id),
    removing: s.state === SDS_REMOVING,
    // fresh objects: the planner accounts its own decisions on them
    devices: devicesOf(s.id).map((d) => ({
      deviceId: d.id,
      poolId: d.poolId,
      capacityBytes: d.capacityBytes,
      assignedBytes: d.assignedBytes,
      thickAssignedBytes: d.thickAssignedBytes,
      usedBytes: d.usedBytes,
      failed: d.state === "Failed",
    })),
  }));
}

/**
 * What a recovery step must answer at once, as one string (the pacer's signature: main.ts,
 * tick_pacing.ts): every SDS's connection state (health.sdsStatesSignature: down, connected,
 * heard since the start) and the failed devices. The failed devices come from the placement view
 * (memory) on the leader, which the pacer only runs on: it read every device row with a
 * group_concat query every 250 ms. The worklist's viewSignature is the same facts from the step's
 * SDS views (down SDSs, failed devices).
 */
export function recoverySignature(ctx: MdmContext): string {
  let failed = "";
  const { sds, devicesOf } = ctx.meta.isLeader() ? placementViewOf(ctx).sdsWithDevices() : sdsWithDevicesFromStore(ctx.store.sqlite);
  for (const s of sds) for (const d of devicesOf(s.id)) if (d.state === "Failed") failed += `${d.id};`;
  return `${ctx.health.sdsStatesSignature()}|${failed}`;
}

function withInfo(ctx: MdmContext, rows: ExtentRow[]): PlannedExtent[] {
  // one cached statement per distinct V-Tree (not drizzle's IN lists, prepared per call): this
  // runs every recovery tick over every extent of every down SDS
  const q = ctx.store.sqlite.query<{ poolId: string; extentBytes: number; type: string }, [string]>(
    "SELECT pool_id AS poolId, extent_bytes AS extentBytes, volume_type AS type FROM vtree WHERE owner_id = ?",
  );
  const info = new Map<string, ExtentInfo | null>();
  const out: PlannedExtent[] = [];
  for (const r of rows) {
    let i = info.get(r.volumeId);
    if (i === undefined) {
      const v = q.get(r.volumeId);
      i = v === null ? null : { poolId: v.poolId, extentBytes: v.extentBytes, thick: v.type === "ThickProvisioned" };
      info.set(r.volumeId, i);
    }
    if (i) out.push({ ...extentFromRow(r), ...i });
  }
  return out;
}

const onSds = (sdsId: string): SQL => or(eq(extentTable.primarySdsId, sdsId), eq(extentTable.secondarySdsId, sdsId)) as SQL;

/**
 * The extents that need attention whatever the SDS states (degraded, copying, keeping an away
 * copy): the condition of the partial index extent_attention (migration 0001), word for word, so
 * that sqlite uses it. Every reader of the attention set starts from it.
 */
export const ATTENTION_WHERE = "secondary_sds_id IS NULL OR target_sds_id IS NOT NULL OR away_sds_id IS NOT NULL";

/** every column of an extent row, named as drizzle's ExtentRow (cached statements: see loadAttentionExtents) */
const EXTENT_COLUMNS =
  "volume_id AS volumeId, idx, epoch, primary_sds_id AS primarySdsId, primary_device_id AS primaryDeviceId, secondary_sds_id AS secondarySdsId, secondary_device_id AS secondaryDeviceId, " +
  "target_sds_id AS targetSdsId, target_device_id AS targetDeviceId, target_mode AS targetMode, target_started_ms AS targetStartedMs, target_replaces_sds_id AS targetReplacesSdsId, " +
  "away_sds_id AS awaySdsId, away_device_id AS awayDeviceId, away_since_ms AS awaySinceMs";

/**
 * Extents that are degraded, copying, keep an away copy, or have an in-sync copy on a bad SDS.
 * Runs every recovery tick (4 a second) and every observe tick: once SDSs are down it reads all
 * their extents each time, so cached bun:sqlite statements instead of drizzle's whole-row selects
 * (drizzle's row mapping and query building were ~15 % of a collapsing MDM at 1,000 SDSs).
 */
export function loadAttentionExtents(ctx: MdmContext, sds: readonly SdsView[]): PlannedExtent[] {
  const rows = new Map<string, ExtentRow>();
  const add = (list: ExtentRow[]) => {
    for (const r of list) rows.set(extentKey({ volumeId: r.volumeId, idx: r.idx }), r);
  };
  const sqlite = ctx.store.sqlite;
  add(sqlite.query<ExtentRow, []>(`SELECT ${EXTENT_COLUMNS} FROM extent WHERE ${ATTENTION_WHERE}`).all());
  const onSdsQ = sqlite.query<ExtentRow, [string, string]>(`SELECT ${EXTENT_COLUMNS} FROM extent WHERE primary_sds_id = ?1 OR secondary_sds_id = ?2`);
  for (const s of sds) {
    const failed = s.devices.filter((d) => d.failed).map((d) => d.deviceId);
    if (s.connected && failed.length === 0) continue;
    const list = onSdsQ.all(s.sdsId, s.sdsId);
    add(
      s.connected
        ? list.filter((r) => failed.includes(r.primaryDeviceId) || (r.secondaryDeviceId !== null && failed.includes(r.secondaryDeviceId)))
        : list,
    );
  }
  return withInfo(ctx, [...rows.values()]);
}

/** a row of the worklist's pages: the extent row and its V-Tree's pool, extent size and type */
type PagedRow = ExtentRow & { poolId: string; extentBytes: number; vtype: string };
const PAGED = `SELECT ${EXTENT_COLUMNS}, v.pool_id AS poolId, v.extent_bytes AS extentBytes, v.volume_type AS vtype FROM extent JOIN vtree v ON v.owner_id = volume_id`;
const planned = (r: PagedRow): PlannedExtent => ({ ...extentFromRow(r), poolId: r.poolId, extentBytes: r.extentBytes, thick: r.vtype === "ThickProvisioned" });

/**
 * Where a pass of the worklist reads its extents: for each down SDS its copies as primary and as
 * secondary, a connected SDS's copies on failed devices (failover candidates), then the attention
 * index (degraded, copying, keeping an away copy). Keyset pages in key order over those indexes,
 * whole rows with their V-Tree's figures in one query a page (a point read per key and per volume
 * was ~40 % of a step); nothing is read until a page is asked for.
 */
export function attentionSources(ctx: MdmContext, sds: readonly SdsView[]): KeySource<PlannedExtent>[] {
  const sqlite = ctx.store.sqlite;
  const AFTER = "(volume_id, idx) > (?2, ?3) ORDER BY volume_id, idx LIMIT ?4";
  const byPrimary = sqlite.query<PagedRow, [string, string, number, number]>(`${PAGED} WHERE primary_sds_id = ?1 AND ${AFTER}`);
  const bySecondary = sqlite.query<PagedRow, [string, string, number, number]>(`${PAGED} WHERE secondary_sds_id = ?1 AND ${AFTER}`);
  const attention = sqlite.query<PagedRow, [string, number, number]>(
    `${PAGED} WHERE (${ATTENTION_WHERE}) AND (volume_id, idx) > (?1, ?2) ORDER BY volume_id, idx LIMIT ?3`,
  );
  // a failed device of a connected SDS: its copies as primary, then as secondary, over the SDS's
  // indexes (rows read at each page like every source: rows listed at a pass's start were stale
  // by the time a later step planned them, and the epoch compare-and-set aborted that step)
  const onPrimaryDevice = sqlite.query<PagedRow, [string, string, number, number, string]>(`${PAGED} WHERE primary_sds_id = ?1 AND primary_device_id = ?5 AND ${AFTER}`);
  const onSecondaryDevice = sqlite.query<PagedRow, [string, string, number, number, string]>(`${PAGED} WHERE secondary_sds_id = ?1 AND secondary_device_id = ?5 AND ${AFTER}`);
  const paged = (q: typeof byPrimary, sdsId: string): KeySource<PlannedExtent> => ({ failover: true, page: (after, n) => q.all(sdsId, after?.volumeId ?? "", after?.idx ?? -1, n).map(planned) });
  const pagedDevice = (q: typeof onPrimaryDevice, sdsId: string, deviceId: string): KeySource<PlannedExtent> => ({
    failover: true,
    page: (after, n) => q.all(sdsId, after?.volumeId ?? "", after?.idx ?? -1, n, deviceId).map(planned),
  });
  const out: KeySource<PlannedExtent>[] = [];
  for (const s of sds) {
    if (!s.connected) {
      out.push(paged(byPrimary, s.sdsId), paged(bySecondary, s.sdsId));
      continue;
    }
    for (const d of s.devices) if (d.failed) out.push(pagedDevice(onPrimaryDevice, s.sdsId, d.deviceId), pagedDevice(onSecondaryDevice, s.sdsId, d.deviceId));
  }
  out.push({ failover: false, page: (after, n) => attention.all(after?.volumeId ?? "", after?.idx ?? -1, n).map(planned) });
  return out;
}

/** Every extent with a running copy (bounded by the copy budget: Limits.maxConcurrentRebuildsPerSds x SDSs). */
export function loadCopyingExtents(ctx: MdmContext): PlannedExtent[] {
  return withInfo(ctx, ctx.store.sqlite.query<ExtentRow, []>(`SELECT ${EXTENT_COLUMNS} FROM extent WHERE target_sds_id IS NOT NULL`).all());
}

function healthyOn(ctx: MdmContext, poolId: string, sdsId: string, limit: number): ExtentRow[] {
  return ctx.store.db
    .select({ e: extentTable })
    .from(extentTable)
    .innerJoin(vtreeTable, eq(vtreeTable.ownerId, extentTable.volumeId))
    .where(
      and(
        eq(vtreeTable.poolId, poolId),
        onSds(sdsId),
        isNotNull(extentTable.secondarySdsId),
        isNull(extentTable.targetSdsId),
        isNull(extentTable.awaySdsId),
      ),
    )
    .limit(limit)
    .all()
    .map((r) => r.e);
}

function holdsAnything(ctx: MdmContext, sdsId: string): boolean {
  return (
    ctx.store.db
      .select({ v: extentTable.volumeId })
      .from(extentTable)
      .where(or(onSds(sdsId), eq(extentTable.targetSdsId, sdsId), eq(extentTable.awaySdsId, sdsId)))
      .limit(1)
      .get() !== undefined
  );
}

/** Copies (in-sync, target, away) an SDS holds. */
export function copiesHeldBy(ctx: MdmContext, sdsId: string): number {
  const q = ctx.store.sqlite.query<{ n: number }, [string, string, string, string]>(
    `SELECT (SELECT COUNT(*) FROM extent WHERE primary_sds_id = ?1) + (SELECT COUNT(*) FROM extent WHERE secondary_sds_id = ?2)
          + (SELECT COUNT(*) FROM extent WHERE target_sds_id = ?3) + (SELECT COUNT(*) FROM extent WHERE away_sds_id = ?4) AS n`,
  );
  return q.get(sdsId, sdsId, sdsId, sdsId)?.n ?? 0;
}

function poolFill(s: SdsView, poolId: string): { bytes: number; capacity: number } {
  let bytes = 0;
  let capacity = 0;
  for (const d of s.devices) {
    if (d.poolId !== poolId || d.failed) continue;
    bytes += d.assignedBytes;
    capacity += d.capacityBytes;
  }
  return { bytes, capacity };
}

/**
 * Candidates for moves in one pool: the extents of SDSs being removed, and (when the pool is
 * healthy and out of balance by more than one extent each way) of its fullest SDSs.
 */
function moveCandidatesOf(ctx: MdmContext, pool: PoolPolicy, sds: readonly SdsView[], degraded: boolean, extentBytes: number): PlannedExtent[] {
  const rows: ExtentRow[] = [];
  const inPool = sds.filter((s) => s.devices.some((d) => d.poolId === pool.poolId));
  for (const s of inPool) if (s.removing) rows.push(...healthyOn(ctx, pool.poolId, s.sdsId, Limits.maxMoveCandidatesPerSds));
  if (pool.rebalanceEnabled && !degraded && !inPool.some((s) => s.removing)) {
    const loads = inPool
      .filter((s) => s.connected)
      .map((s) => ({ s, ...poolFill(s, pool.poolId) }))
      .filter((l) => l.capacity > 0)
      .sort((a, b) => b.bytes / b.capacity - a.bytes / a.capacity);
    const emptiest = loads[loads.length - 1];
    if (emptiest) {
      for (const l of loads.slice(0, 8)) {
        const gap = l.bytes / l.capacity - emptiest.bytes / emptiest.capacity;
        if (gap <= extentBytes / l.capacity + extentBytes / emptiest.capacity) break;
        rows.push(...healthyOn(ctx, pool.poolId, l.s.sdsId, Limits.maxMoveCandidatesPerSds));
      }
    }
  }
  return withInfo(ctx, rows);
}

/** The SDSs being removed that hold nothing any more, and the copies the others still hold, per pool. */
export function drainWork(ctx: MdmContext, sds: readonly SdsView[]): { emptyRemovingSds: string[]; drainCopiesByPool: Map<string, number> } {
  const emptyRemovingSds: string[] = [];
  const drainCopiesByPool = new Map<string, number>();
  for (const s of sds) {
    if (!s.removing) continue;
    if (!holdsAnything(ctx, s.sdsId)) {
      emptyRemovingSds.push(s.sdsId);
      continue;
    }
    for (const poolId of new Set(s.devices.map((d) => d.poolId))) {
      const n = ctx.store.sqlite
        .query<{ n: number }, [string, string, string]>(
          `SELECT COUNT(*) AS n FROM extent e JOIN vtree v ON v.owner_id = e.volume_id
            WHERE v.pool_id = ?1 AND (e.primary_sds_id = ?2 OR e.secondary_sds_id = ?3)`,
        )
        .get(poolId, s.sdsId, s.sdsId)?.n ?? 0;
      drainCopiesByPool.set(poolId, (drainCopiesByPool.get(poolId) ?? 0) + n);
    }
  }
  return { emptyRemovingSds, drainCopiesByPool };
}

/**
 * The view; without move candidates when only figures are wanted (REST), which reads less.
 * `slice`: the step's own extents (a slice of the worklist and the running copies) instead of
 * every attention extent; when partial, no rebalance move is planned (a pool's degraded extents
 * may lie outside the slice, and a degraded pool is never rebalanced).
 */
export function loadRecoveryView(
  ctx: MdmContext,
  opts: { moveCandidates: boolean; sds?: SdsView[]; slice?: { extents: PlannedExtent[]; partial: boolean } } = { moveCandidates: true },
): RecoveryView {
  const poolRows = ctx.store.db.select().from(storagePoolTable).all();
  const partial = opts.slice?.partial ?? false;
  const pools: PoolPolicy[] = poolRows.map((p) => ({ poolId: p.id, rebuildEnabled: p.rebuildEnabled, rebalanceEnabled: p.rebalanceEnabled && !partial, unthrottled: rebuildUnthrottled(p) }));
  const sds = opts.sds ?? loadSdsViews(ctx);
  const extents = opts.slice?.extents ?? loadAttentionExtents(ctx, sds);
  const moveCandidates: PlannedExtent[] = [];
  for (const p of opts.moveCandidates ? poolRows : []) {
    const degraded = partial || extents.some((e) => e.poolId === p.id && e.inSync.length < 2);
    moveCandidates.push(...moveCandidatesOf(ctx, pools.find((x) => x.poolId === p.id)!, sds, degraded, p.extentBytes));
  }
  const { emptyRemovingSds, drainCopiesByPool } = drainWork(ctx, sds);
  return { pools, sds, extents, moveCandidates, emptyRemovingSds, drainCopiesByPool };
}
