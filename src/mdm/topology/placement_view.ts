// The placement view: every pool's SDSs and devices as placeExtents (placement.ts) takes them,
// held in memory so a volume create or extend reads no device row. At 1,000 SDSs x 8 devices
// reading them per create was 9-20 ms of a create (bench/mdm_scale.ts).
//
// How it stays equal to the database: TEMP triggers (this connection only, like the HA capture
// of row_capture.ts) note in a TEMP table, in the same transaction as the change, every device
// whose figures or state changed ("device"), every pool that gained, lost or moved a device
// ("pool"), and any SDS change that placement sees ("all": pd, fault set, state, insert,
// delete; rare). A read applies the notes first: a device note re-reads that one row, a pool
// note that pool's devices, "all" everything. So a create costs O(rows changed since the last
// read) of sqlite, whoever changed them (REST, heartbeats, recovery, HA replay).
//
// A transaction that rolls back takes its notes with it, but the view may have applied rows
// written earlier in that transaction (a create that failed after its placement). So a read that
// applied notes stamps a generation into another TEMP table in the same transaction; the next
// read finds the stamp gone after a rollback and re-reads what the rolled-back read applied.
//
// Scope: one view per HealthTracker, as the node token cache (dataplane_secrets.ts): a new one
// (MDM start, HA leadership start) builds the view afresh from the store. Connectivity is not
// part of it: health is read at each call (in memory). Memory ~ devices. Only the active MDM
// keeps one: a standby's connection is query_only (its readers use sdsWithDevicesFromStore).

import type { Database } from "bun:sqlite";
import { Limits } from "../../proto/limits.ts";
import type { MdmContext } from "../core/context.ts";
import type { PlacementDevice, PlacementSds } from "./placement.ts";

const NOTES = "temp._pf_placement_notes";
/** applied entries a rollback redoes one by one; more: it reads everything again */
const MAX_REDO = 1024;
const STAMP = "temp._pf_placement_stamp";

/** The device columns placement needs. */
export interface DeviceRow {
  /** sqlite rowid: the order every listing keeps (the database's) */
  rowid: number;
  id: string;
  sdsId: string;
  poolId: string;
  capacityBytes: number;
  assignedBytes: number;
  thickAssignedBytes: number;
  usedBytes: number;
  state: string;
}
export interface SdsRow {
  id: string;
  pdId: string;
  faultSetId: string | null;
  state: string;
}

const DEVICE_COLUMNS =
  "rowid, id, sds_id AS sdsId, pool_id AS poolId, capacity_bytes AS capacityBytes, assigned_bytes AS assignedBytes, thick_assigned_bytes AS thickAssignedBytes, used_bytes AS usedBytes, state";

/** One pool as placement takes it, thin and thick figures, with each device's two entries for in-place updates. */
interface PoolPlacement {
  thin: PlacementSds[];
  thick: PlacementSds[];
  /** per entry of thin/thick (same order): the SDS row */
  sds: SdsRow[];
  devices: Map<string, { thin: PlacementDevice; thick: PlacementDevice }>;
}

function thinDevice(d: DeviceRow): PlacementDevice {
  return { deviceId: d.id, capacityBytes: d.capacityBytes * Limits.maxThinOvercommitRatio, assignedBytes: d.assignedBytes, state: d.state === "Failed" ? "Failed" : "Normal" };
}
function thickDevice(d: DeviceRow): PlacementDevice {
  return { deviceId: d.id, capacityBytes: d.capacityBytes, assignedBytes: Math.max(d.thickAssignedBytes, d.usedBytes), state: d.state === "Failed" ? "Failed" : "Normal" };
}
function assign(into: PlacementDevice, from: PlacementDevice): void {
  into.capacityBytes = from.capacityBytes;
  into.assignedBytes = from.assignedBytes;
  into.state = from.state;
}

const TRIGGER_NAMES = ["device_figures", "device_moved", "device_added", "device_removed", "sds_changed", "sds_added", "sds_removed"].map((n) => `_pf_placement_${n}`);

/**
 * Are the view's triggers on this connection? Asked, not remembered (as copy_log.ts does): TEMP
 * DDL is transactional, so a view first built inside a transaction that rolled back (a create
 * refused NO_SPACE after its placement) left no triggers and no tables behind, and a remembered
 * view then failed every create and recovery tick with "no such table" until a restart.
 */
function placementTriggersInstalled(sqlite: Database): boolean {
  const row = sqlite
    .query<{ n: number }, []>(`SELECT COUNT(*) AS n FROM sqlite_temp_master WHERE (type = 'trigger' AND name IN (${TRIGGER_NAMES.map((t) => `'${t}'`).join(", ")})) OR (type = 'table' AND name IN ('_pf_placement_notes', '_pf_placement_stamp'))`)
    .get();
  return row?.n === TRIGGER_NAMES.length + 2;
}

/** Create the notes table and triggers on this connection (idempotent). */
export function ensurePlacementTriggers(sqlite: Database): void {
  sqlite.run(`CREATE TEMP TABLE IF NOT EXISTS _pf_placement_notes (kind TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID`);
  sqlite.run(`CREATE TEMP TABLE IF NOT EXISTS _pf_placement_stamp (one INTEGER PRIMARY KEY CHECK (one = 1), gen INTEGER NOT NULL)`);
  const note = (kind: string, id: string) => `INSERT OR IGNORE INTO _pf_placement_notes (kind, id) VALUES ('${kind}', ${id});`;
  const triggers: [string, string][] = [
    ["device_figures", `AFTER UPDATE OF capacity_bytes, assigned_bytes, thick_assigned_bytes, used_bytes, state ON main.device BEGIN ${note("device", "NEW.id")} END`],
    ["device_moved", `AFTER UPDATE OF id, sds_id, pool_id ON main.device BEGIN ${note("pool", "OLD.pool_id")} ${note("pool", "NEW.pool_id")} END`],
    ["device_added", `AFTER INSERT ON main.device BEGIN ${note("pool", "NEW.pool_id")} END`],
    ["device_removed", `AFTER DELETE ON main.device BEGIN ${note("pool", "OLD.pool_id")} END`],
    ["sds_changed", `AFTER UPDATE OF id, pd_id, fault_set_id, state ON main.sds BEGIN ${note("all", "''")} END`],
    ["sds_added", `AFTER INSERT ON main.sds BEGIN ${note("all", "''")} END`],
    ["sds_removed", `AFTER DELETE ON main.sds BEGIN ${note("all", "''")} END`],
  ];
  for (const [name, body] of triggers) sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS _pf_placement_${name} ${body}`);
}

export class PlacementView {
  private sdsRows: SdsRow[] = []; // rowid order, as the database lists them
  private devicesByPool = new Map<string, DeviceRow[]>(); // rowid order within a pool
  private deviceById = new Map<string, DeviceRow>();
  private pools = new Map<string, PoolPlacement>();
  /** every SDS with its devices (rowid order), for the recovery view; dropped on structural changes */
  private bySds: Map<string, DeviceRow[]> | null = null;
  private gen = 0;
  /**
   * what the reads since the last one outside a transaction applied: re-read if the stamp of the
   * last of them is gone (its transaction rolled back). Accumulated while reads run inside a
   * transaction: one that reads twice (write X, read, write Y, read, roll back) must redo X too.
   */
  private lastApplied: { gen: number; devices: Set<string>; pools: Set<string>; all: boolean } | null = null;

  constructor(readonly sqlite: Database) {
    ensurePlacementTriggers(sqlite);
    sqlite.run(`DELETE FROM ${NOTES}`); // what they name is read whole below
    this.loadAll();
    this.stamp(new Set(), new Set(), true);
  }

  /** The pool's SDSs with devices, as placeExtents takes them (thin: overcommit, assigned; thick: real capacity and reservations). */
  placementSds(poolId: string, pdId: string, thick: boolean, connected: (sdsId: string) => boolean): PlacementSds[] {
    this.catchUp();
    const p = this.poolPlacement(poolId, pdId);
    const list = thick ? p.thick : p.thin;
    for (let i = 0; i < list.length; i++) {
      const s = p.sds[i]!;
      list[i]!.connected = connected(s.id) && s.state === "Normal";
    }
    return list;
  }

  /**
   * Every SDS (rowid order) with its devices (rowid order) as the view holds them: the recovery
   * tick's read (4 a second), which read all device rows each time. The rows are the view's own:
   * callers copy what they change.
   */
  sdsWithDevices(): { sds: readonly SdsRow[]; devicesOf: (sdsId: string) => readonly DeviceRow[] } {
    this.catchUp();
    if (this.bySds === null) {
      const all = [...this.deviceById.values()].sort((a, b) => a.rowid - b.rowid);
      this.bySds = Map.groupBy(all, (d) => d.sdsId);
    }
    const bySds = this.bySds;
    return { sds: this.sdsRows, devicesOf: (sdsId) => bySds.get(sdsId) ?? [] };
  }

  /** Every device row of a pool as the view holds it (tests compare it with the database). */
  devicesOf(poolId: string): readonly DeviceRow[] {
    this.catchUp();
    return this.devicesByPool.get(poolId) ?? [];
  }

  private poolPlacement(poolId: string, pdId: string): PoolPlacement {
    let p = this.pools.get(poolId);
    if (p !== undefined) return p;
    const bySds = Map.groupBy(this.devicesByPool.get(poolId) ?? [], (d) => d.sdsId);
    p = { thin: [], thick: [], sds: [], devices: new Map() };
    for (const s of this.sdsRows) {
      if (s.pdId !== pdId) continue;
      const mine = bySds.get(s.id);
      if (mine === undefined) continue;
      const thin = mine.map(thinDevice);
      const thick = mine.map(thickDevice);
      for (let i = 0; i < mine.length; i++) p.devices.set(mine[i]!.id, { thin: thin[i]!, thick: thick[i]! });
      p.thin.push({ sdsId: s.id, faultSetId: s.faultSetId, connected: false, devices: thin });
      p.thick.push({ sdsId: s.id, faultSetId: s.faultSetId, connected: false, devices: thick });
      p.sds.push(s);
    }
    this.pools.set(poolId, p);
    return p;
  }

  /** Apply the notes written since the last read (and redo a rolled-back read's). */
  private catchUp(): void {
    const redo = this.rolledBack();
    const notes = this.sqlite.query<{ kind: string; id: string }, []>(`SELECT kind, id FROM ${NOTES}`).all();
    if (notes.length === 0 && redo === null) return;
    const devices = new Set<string>(redo?.devices);
    const pools = new Set<string>(redo?.pools);
    let all = redo?.all ?? false;
    for (const n of notes) {
      if (n.kind === "all") all = true;
      else if (n.kind === "pool") pools.add(n.id);
      else devices.add(n.id);
    }
    if (notes.length > 0) this.sqlite.run(`DELETE FROM ${NOTES}`);
    if (all) this.loadAll();
    else {
      for (const poolId of pools) this.loadPool(poolId);
      const one = this.sqlite.query<DeviceRow, [string]>(`SELECT ${DEVICE_COLUMNS} FROM main.device WHERE id = ?`);
      for (const id of devices) {
        const row = one.get(id);
        const held = this.deviceById.get(id);
        if (row === null || held === undefined || row.poolId !== held.poolId || row.sdsId !== held.sdsId) {
          // gone or moved (its pool note is applied above); one not held yet came with a pool note
          if (row !== null && held === undefined) this.loadPool(row.poolId);
          continue;
        }
        Object.assign(held, row);
        const entries = this.pools.get(row.poolId)?.devices.get(id);
        if (entries !== undefined) {
          assign(entries.thin, thinDevice(row));
          assign(entries.thick, thickDevice(row));
        }
      }
    }
    this.stamp(devices, pools, all);
  }

  /** The applied notes to redo when the last read's transaction rolled back (its stamp is gone), else null. */
  private rolledBack(): { devices: Set<string>; pools: Set<string>; all: boolean } | null {
    const last = this.lastApplied;
    if (last === null) return null;
    const row = this.sqlite.query<{ gen: number }, []>(`SELECT gen FROM ${STAMP} WHERE one = 1`).get();
    if (row !== null && row.gen === last.gen) return null;
    return last;
  }

  /**
   * Stamp a read that applied notes. Inside a transaction the earlier reads' sets are kept with
   * this one's (an earlier read of the same transaction is undone by the same rollback; one of an
   * earlier, committed transaction is merely read again); past MAX_REDO entries a rollback redoes
   * everything. (After a redo the sets already hold the rolled-back reads': merging adds nothing.)
   */
  private stamp(devices: Set<string>, pools: Set<string>, all: boolean): void {
    this.gen++;
    this.sqlite.query(`INSERT INTO ${STAMP} (one, gen) VALUES (1, ?1) ON CONFLICT (one) DO UPDATE SET gen = ?1`).run(this.gen);
    const prev = this.lastApplied;
    if (prev !== null && this.sqlite.inTransaction) {
      for (const d of devices) prev.devices.add(d);
      for (const p of pools) prev.pools.add(p);
      prev.all ||= all || prev.devices.size + prev.pools.size > MAX_REDO;
      prev.gen = this.gen;
      return;
    }
    this.lastApplied = { gen: this.gen, devices, pools, all };
  }

  private loadAll(): void {
    const { sds, devices: rows } = readAll(this.sqlite);
    this.sdsRows = sds;
    this.devicesByPool = Map.groupBy(rows, (d) => d.poolId);
    this.deviceById = new Map(rows.map((d) => [d.id, d]));
    this.pools.clear();
    this.bySds = null;
  }

  private loadPool(poolId: string): void {
    // only the pool's own entries: a device that moved here from it may be loaded already
    for (const d of this.devicesByPool.get(poolId) ?? []) if (this.deviceById.get(d.id) === d) this.deviceById.delete(d.id);
    const rows = this.sqlite.query<DeviceRow, [string]>(`SELECT ${DEVICE_COLUMNS} FROM main.device WHERE pool_id = ? ORDER BY rowid`).all(poolId);
    if (rows.length === 0) this.devicesByPool.delete(poolId);
    else this.devicesByPool.set(poolId, rows);
    for (const d of rows) this.deviceById.set(d.id, d);
    this.pools.delete(poolId);
    this.bySds = null;
  }
}

/**
 * The same listing as PlacementView.sdsWithDevices, read from the store: for a standby, whose
 * connection is query_only (mdm/ha/follower.ts), so the view's notes and stamp cannot be kept.
 */
export function sdsWithDevicesFromStore(sqlite: Database): { sds: readonly SdsRow[]; devicesOf: (sdsId: string) => readonly DeviceRow[] } {
  const { sds, devices } = readAll(sqlite);
  const bySds = Map.groupBy(devices, (d) => d.sdsId);
  return { sds, devicesOf: (sdsId) => bySds.get(sdsId) ?? [] };
}

/** Every SDS and device row placement reads, in the database's (rowid) order. */
function readAll(sqlite: Database): { sds: SdsRow[]; devices: DeviceRow[] } {
  return {
    sds: sqlite.query<SdsRow, []>("SELECT id, pd_id AS pdId, fault_set_id AS faultSetId, state FROM main.sds ORDER BY rowid").all(),
    devices: sqlite.query<DeviceRow, []>(`SELECT ${DEVICE_COLUMNS} FROM main.device ORDER BY rowid`).all(),
  };
}

const views = new WeakMap<object, PlacementView>();

/** This MDM life's placement view (built from the store at first use after a start or takeover); the active MDM's only (it writes TEMP tables). */
export function placementViewOf(ctx: MdmContext): PlacementView {
  let v = views.get(ctx.health);
  // a view whose triggers are gone (built inside a transaction that rolled back) missed every
  // change since: a new one, read whole from the store; so does a reopened database
  if (v === undefined || v.sqlite !== ctx.store.sqlite || !placementTriggersInstalled(ctx.store.sqlite)) {
    v = new PlacementView(ctx.store.sqlite);
    views.set(ctx.health, v);
  }
  return v;
}
