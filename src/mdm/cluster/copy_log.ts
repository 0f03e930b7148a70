// The copy-change log behind delta assignments (proto/assignments_delta.ts): which extent copies
// of which SDS changed at which mapVersion, so that an SDS holding the answer of version v gets
// only the rows that changed since (GET assignments?since=v&log=<id>).
//
// It is kept by sqlite itself: TEMP triggers (this connection only, never persisted, nothing
// replicated in HA mode) on the extent table write (sds, volume, extent) -> the mapVersion of
// the change into a TEMP table, for every SDS that held or holds a copy of the row (in-sync,
// target, away) before and after, on every insert, delete and update of a column an assignment
// shows. No caller has to remember to log: recovery, creation, removal, snapshots, a replayed HA
// batch all go through the same triggers. One row per (SDS, extent), so the log never holds more
// rows than there are copies; past COPY_LOG_MAX_ROWS the oldest versions are trimmed.
//
// Invariants:
// - a change made while the stored mapVersion is m is logged at m; an answer read at version v
//   holds every change committed before it, so "every row logged at >= v" covers what changed
//   since (a row logged at v and already in the answer is only sent again);
// - the log is in the changing transaction: a rollback takes its rows with it;
// - changes the log cannot describe (a pool's write cache mode, a V-Tree's type or extent size,
//   a volume moved to another pool) set the barrier to their version: a delta since a version
//   <= the barrier is refused (full answer). A V-Tree graph edit is logged per owner: the delta
//   then carries every copy the SDS holds of that V-Tree (its rows, graph and per-volume parts);
// - the log id is new for every HealthTracker (MDM start, HA takeover): an SDS whose answer came
//   from another log (another process, a standby's replayed rows) always gets the full list;
// - a delta is refused (full answer) when `since` is above the current version (another MDM's
//   answer), below the trimmed floor, or at/below the barrier.
//
// Across MDM lives (single MDM, sqlite store): an MDM that stops cleanly writes a summary of its
// log into table copy_log_handoff (saveCopyLogHandoff): its id, the map version at the stop, its
// floor and barrier, its newest graph edit, and per SDS the newest version at which any of its
// copies changed. The next start reads and deletes that row (adoptCopyLogHandoff) and makes its
// own log at once, before anything can change; the summary is kept only if the stored map
// version is still the one at the stop. Then an SDS that holds the old log's answer of version v
// gets a delta from the new log (every row of which is newer than the stop) when the old log
// says nothing of its copies changed at >= v: v above the old floor and barrier and the old
// newest graph edit, and the SDS's newest change below v. Otherwise (a crash: no summary; an HA
// takeover: a standby's replayed log is never used) it gets the full list as before.
// A restored backup is safe for the same reason as within a life: an answer of version v held by
// an SDS is the state at v of the history the database holds up to v, and an SDS whose version
// is above the database's gets the full list; only a summary written from that same history
// can name its log.

import type { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import consola from "consola";
import type { HealthTracker } from "../core/health.ts";
import type { MdmContext } from "../core/context.ts";
import { currentMapVersion } from "../core/system_state.ts";

/** Bound on logged (SDS, extent) rows; a trim drops the oldest versions down to 3/4 of it. */
export const COPY_LOG_MAX_ROWS = 1_000_000;
/** at most this many rows deleted per trim (a trim runs in the answer path: keep it short) */
const TRIM_STEP_ROWS = 100_000;
const TRIM_CHECK_MS = 2_000;

// COALESCE: a standby replaying a batch deletes and re-inserts the rows it touches, the system row
// among them, so an extent may go in while no system row exists; a NOT NULL failure there aborted
// the replay (and every later one). Such a row is logged at 0, below every answer's version: it
// never counts for a delta, and a standby's log is never used (a takeover starts a new log). The
// triggers stay on a standby (its connection is query-only between replays: dropping them at the
// step-down failed with "attempt to write a readonly database"); its log is bounded by the
// copies (one row per SDS and extent) and trimmed once it leads and answers fetches.
const NOW_VERSION = "COALESCE((SELECT map_version FROM main.system), 0)";

const HOLDER_COLUMNS = ["primary_sds_id", "secondary_sds_id", "target_sds_id", "away_sds_id"] as const;
/** the row's holders, one leg each: UNION ALL, no dedup table (a row names no SDS twice; a repeat would only be written twice) */
function holders(rec: "NEW" | "OLD"): string {
  return HOLDER_COLUMNS.map((c) => `SELECT ${rec}.${c} AS s, ${rec}.volume_id AS vol, ${rec}.idx AS i`).join(" UNION ALL ");
}
function logRow(rec: "NEW" | "OLD"): string {
  return `INSERT OR REPLACE INTO temp.pf_copy_log(sds_id, volume_id, idx, v) SELECT s, vol, i, ${NOW_VERSION} FROM (${holders(rec)}) WHERE s IS NOT NULL;`;
}
/**
 * An update's log rows in one statement: the new holders, and the old ones that are not among
 * them (or whose key changed). Two statements of a 4-way UNION each (a dedup table each, the
 * version read twice) were half the cost of an extent UPDATE: 3,200 of them are one SDS's loss
 * at 100,000 volumes.
 */
function logUpdate(): string {
  const notNew = (c: string) =>
    `NOT (OLD.volume_id IS NEW.volume_id AND OLD.idx IS NEW.idx AND (${HOLDER_COLUMNS.map((n) => `OLD.${c} IS NEW.${n}`).join(" OR ")}))`;
  const oldLegs = HOLDER_COLUMNS.map((c) => `SELECT OLD.${c} AS s, OLD.volume_id AS vol, OLD.idx AS i WHERE ${notNew(c)}`).join(" UNION ALL ");
  return `INSERT OR REPLACE INTO temp.pf_copy_log(sds_id, volume_id, idx, v) SELECT s, vol, i, ${NOW_VERSION} FROM (${holders("NEW")} UNION ALL ${oldLegs}) WHERE s IS NOT NULL;`;
}
const BARRIER = `UPDATE temp.pf_delta_barrier SET v = ${NOW_VERSION};`;
/** columns an assignment (or its holders) shows: an update of any of them is a change */
const SHOWN = "volume_id, idx, epoch, primary_sds_id, primary_device_id, secondary_sds_id, secondary_device_id, target_sds_id, target_device_id, target_mode, away_sds_id, away_device_id";

// ---- the SDC map part of the log (proto/maps_delta.ts) ----
// An SDC's map entry of a volume shows: the volume row (name, size, extent size, V-Tree owner),
// the in-sync copies and epoch of its owner's extents, and the mapping row (access mode, QoS).
// pf_map_log holds, per volume id or V-Tree owner id, the version of the last change of those;
// pf_map_sdc_log per (SDC, volume) the version of the last change of the mapping (map, unmap,
// access mode, limits). One row per object: bounded by the volumes and mappings there are.
// What an entry shows that no row here describes goes through pf_map_barrier: an SDC's approval
// and the system's restricted SDC mode (they decide whether an SDC gets any volume at all).
const MAP_LOG_ID = (rec: "NEW" | "OLD") => `INSERT OR REPLACE INTO temp.pf_map_log(id, v) VALUES (${rec}.volume_id, ${NOW_VERSION});`;
const MAP_LOG_VOL = (rec: "NEW" | "OLD") => `INSERT OR REPLACE INTO temp.pf_map_log(id, v) VALUES (${rec}.id, ${NOW_VERSION});`;
const MAP_LOG_MAPPING = (rec: "NEW" | "OLD") => `INSERT OR REPLACE INTO temp.pf_map_sdc_log(sdc_id, volume_id, v) VALUES (${rec}.sdc_id, ${rec}.volume_id, ${NOW_VERSION});`;
const MAP_BARRIER = `UPDATE temp.pf_map_barrier SET v = ${NOW_VERSION};`;
/** extent columns a map shows: in-sync copies and epoch (a target or away copy is the SDS's business only) */
const MAP_SHOWN_EXTENT = ["volume_id", "idx", "epoch", "primary_sds_id", "secondary_sds_id"] as const;
const MAP_SHOWN_VOLUME = ["name", "size_bytes", "extent_bytes", "owner_id"] as const;
/** an UPDATE OF fires when the column is SET, changed or not: recovery rewrites rows whose map part stays */
const changedWhen = (cols: readonly string[]) => cols.map((c) => `OLD.${c} IS NOT NEW.${c}`).join(" OR ");

/** the TEMP triggers installCopyLog makes (all present, or the log is not whole) */
const TRIGGERS = [
  "pf_copy_log_i",
  "pf_copy_log_d",
  "pf_copy_log_u",
  "pf_graph_log_u",
  "pf_delta_barrier_vt",
  "pf_delta_barrier_pool",
  "pf_delta_barrier_vol",
  "pf_map_log_ext_i",
  "pf_map_log_ext_d",
  "pf_map_log_ext_u",
  "pf_map_log_vol_i",
  "pf_map_log_vol_d",
  "pf_map_log_vol_u",
  "pf_map_log_mapping_i",
  "pf_map_log_mapping_d",
  "pf_map_log_mapping_u",
  "pf_map_barrier_sdc",
  "pf_map_barrier_sys",
];

/**
 * Are the log's triggers on this connection? Asked, not remembered: TEMP DDL is transactional,
 * so an install inside an answer's transaction that then rolled back left nothing behind (a
 * remembered "installed" then broke every later fetch with "no such table").
 */
function copyLogInstalled(sqlite: Database): boolean {
  const row = sqlite.query<{ n: number }, []>(`SELECT COUNT(*) AS n FROM sqlite_temp_master WHERE type = 'trigger' AND name IN (${TRIGGERS.map((t) => `'${t}'`).join(", ")})`).get();
  return row?.n === TRIGGERS.length;
}

/** Create the TEMP log tables and triggers on this connection (idempotent). */
export function installCopyLog(sqlite: Database): void {
  sqlite.run("CREATE TEMP TABLE IF NOT EXISTS pf_copy_log (sds_id TEXT NOT NULL, volume_id TEXT NOT NULL, idx INTEGER NOT NULL, v INTEGER NOT NULL, PRIMARY KEY (sds_id, volume_id, idx)) WITHOUT ROWID");
  sqlite.run("CREATE INDEX IF NOT EXISTS temp.pf_copy_log_sds_v ON pf_copy_log (sds_id, v)");
  sqlite.run("CREATE INDEX IF NOT EXISTS temp.pf_copy_log_v ON pf_copy_log (v)");
  sqlite.run("CREATE TEMP TABLE IF NOT EXISTS pf_graph_log (owner_id TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID");
  sqlite.run("CREATE TEMP TABLE IF NOT EXISTS pf_delta_barrier (v INTEGER NOT NULL)");
  sqlite.run("INSERT INTO temp.pf_delta_barrier (v) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM temp.pf_delta_barrier)");
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_copy_log_i AFTER INSERT ON main.extent BEGIN ${logRow("NEW")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_copy_log_d AFTER DELETE ON main.extent BEGIN ${logRow("OLD")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_copy_log_u AFTER UPDATE OF ${SHOWN} ON main.extent BEGIN ${logUpdate()} END`);
  sqlite.run(
    `CREATE TEMP TRIGGER IF NOT EXISTS pf_graph_log_u AFTER UPDATE OF graph_version ON main.vtree BEGIN INSERT OR REPLACE INTO temp.pf_graph_log(owner_id, v) VALUES (NEW.owner_id, ${NOW_VERSION}); END`,
  );
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_delta_barrier_vt AFTER UPDATE OF extent_bytes, volume_type, pool_id ON main.vtree BEGIN ${BARRIER} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_delta_barrier_pool AFTER UPDATE OF write_cache ON main.storage_pool BEGIN ${BARRIER} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_delta_barrier_vol AFTER UPDATE OF pool_id ON main.volume BEGIN ${BARRIER} END`);
  // SDC maps
  sqlite.run("CREATE TEMP TABLE IF NOT EXISTS pf_map_log (id TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID");
  sqlite.run("CREATE TEMP TABLE IF NOT EXISTS pf_map_sdc_log (sdc_id TEXT NOT NULL, volume_id TEXT NOT NULL, v INTEGER NOT NULL, PRIMARY KEY (sdc_id, volume_id)) WITHOUT ROWID");
  sqlite.run("CREATE TEMP TABLE IF NOT EXISTS pf_map_barrier (v INTEGER NOT NULL)");
  sqlite.run("INSERT INTO temp.pf_map_barrier (v) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM temp.pf_map_barrier)");
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_ext_i AFTER INSERT ON main.extent BEGIN ${MAP_LOG_ID("NEW")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_ext_d AFTER DELETE ON main.extent BEGIN ${MAP_LOG_ID("OLD")} END`);
  sqlite.run(
    `CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_ext_u AFTER UPDATE OF ${MAP_SHOWN_EXTENT.join(", ")} ON main.extent WHEN ${changedWhen(MAP_SHOWN_EXTENT)} BEGIN ${MAP_LOG_ID("NEW")} ${MAP_LOG_ID("OLD")} END`,
  );
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_vol_i AFTER INSERT ON main.volume BEGIN ${MAP_LOG_VOL("NEW")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_vol_d AFTER DELETE ON main.volume BEGIN ${MAP_LOG_VOL("OLD")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_vol_u AFTER UPDATE OF ${MAP_SHOWN_VOLUME.join(", ")} ON main.volume WHEN ${changedWhen(MAP_SHOWN_VOLUME)} BEGIN ${MAP_LOG_VOL("NEW")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_mapping_i AFTER INSERT ON main.volume_mapping BEGIN ${MAP_LOG_MAPPING("NEW")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_mapping_d AFTER DELETE ON main.volume_mapping BEGIN ${MAP_LOG_MAPPING("OLD")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_log_mapping_u AFTER UPDATE ON main.volume_mapping BEGIN ${MAP_LOG_MAPPING("NEW")} ${MAP_LOG_MAPPING("OLD")} END`);
  sqlite.run(`CREATE TEMP TRIGGER IF NOT EXISTS pf_map_barrier_sdc AFTER UPDATE OF approved ON main.sdc WHEN OLD.approved IS NOT NEW.approved BEGIN ${MAP_BARRIER} END`);
  sqlite.run(
    `CREATE TEMP TRIGGER IF NOT EXISTS pf_map_barrier_sys AFTER UPDATE OF restricted_sdc_mode ON main.system WHEN OLD.restricted_sdc_mode IS NOT NEW.restricted_sdc_mode BEGIN ${MAP_BARRIER} END`,
  );
}

/** What changed for one SDS since a version: extent keys to answer (held or taken away). */
export interface CopyChanges {
  /** "volumeId/idx" of every extent whose copy on the SDS may have changed */
  keys: { volumeId: string; idx: number }[];
  /** V-Tree owners whose graph changed (every copy the SDS holds of them is answered) */
  owners: string[];
}

/** A cleanly stopped MDM's log, as the next life reads it (table copy_log_handoff). */
export interface CopyLogHandoff {
  logId: string;
  endVersion: number;
  floor: number;
  barrier: number;
  graphMax: number;
  /** sds id -> newest version at which one of its copies was logged */
  perSds: Record<string, number>;
}

class CopyLog {
  readonly id = randomBytes(8).toString("hex");
  private floor = 0;
  private lastTrimCheckMs = -Infinity;
  /** the previous life's log (clean stop), whose answers this log can continue; null: none */
  previous: CopyLogHandoff | null = null;

  constructor(
    readonly sqlite: Database,
    private readonly maxRows: number,
  ) {}

  /**
   * The changes for an SDS holding the answer of version `since` from log `logId` (this one or
   * the previous life's), or null when only a full answer is right.
   */
  changesSince(logId: string | undefined, sdsId: string, since: number | undefined, current: number): CopyChanges | null {
    if (since === undefined || logId === undefined) return null;
    if (logId === this.id) return this.changesFor(sdsId, since, current);
    const p = this.previous;
    if (p === null || logId !== p.logId) return null;
    // the old log's rows of versions >= since, for this SDS: none, or only a full answer is right
    if (since > p.endVersion || since < p.floor || since <= p.barrier || since <= p.graphMax || (p.perSds[sdsId] ?? -1) >= since) return null;
    return this.changesFor(sdsId, since, current);
  }

  /** The changes for `sdsId` since `since`, or null when only a full answer is right. */
  changesFor(sdsId: string, since: number, current: number): CopyChanges | null {
    if (since > current || since < this.floor) return null;
    const barrier = this.sqlite.query<{ v: number }, []>("SELECT v FROM temp.pf_delta_barrier").get()?.v ?? 0;
    if (since <= barrier) return null;
    const keys = this.sqlite
      .query<{ volumeId: string; idx: number }, [string, number]>("SELECT volume_id AS volumeId, idx FROM temp.pf_copy_log WHERE sds_id = ? AND v >= ?")
      .all(sdsId, since);
    const owners = this.sqlite.query<{ o: string }, [number]>("SELECT owner_id AS o FROM temp.pf_graph_log WHERE v >= ?").all(since).map((r) => r.o);
    return { keys, owners };
  }

  /**
   * Can this log vouch for every change of SDC maps since `since` of log `logId` (this one, or
   * the previous life's after a clean stop)? False: only a whole map is right.
   */
  mapsDeltaFrom(logId: string | undefined, since: number | undefined, current: number): since is number {
    if (since === undefined || logId === undefined) return false;
    if (logId !== this.id) {
      const p = this.previous;
      if (p === null || logId !== p.logId) return false;
      // the old life's newest map change (absent: a build without SDC map deltas wrote the summary)
      const prevMax = p.perSds[MAPS_HANDOFF_KEY];
      if (prevMax === undefined || since > p.endVersion || since < p.floor || prevMax >= since) return false;
    }
    if (since > current || since < this.floor) return false;
    const barrier = this.sqlite.query<{ v: number }, []>("SELECT v FROM temp.pf_map_barrier").get()?.v ?? 0;
    return since > barrier;
  }

  /**
   * The volumes mapped to an SDC (ascending id) with their map part, each with whether its entry
   * may have changed at or after `since` (volume row, its V-Tree's extents, the mapping row).
   * One statement: three primary-key probes per mapping.
   */
  mappedSince(sdcId: string, since: number): MappedVolumeRow[] {
    return this.sqlite
      .query<MappedVolumeRow, [string, number]>(
        `SELECT ${MAPPED_COLUMNS},
           (EXISTS (SELECT 1 FROM temp.pf_map_log l WHERE l.id = vol.id AND l.v >= ?2)
             OR EXISTS (SELECT 1 FROM temp.pf_map_log l WHERE l.id = vol.owner_id AND l.v >= ?2)
             OR EXISTS (SELECT 1 FROM temp.pf_map_sdc_log s WHERE s.sdc_id = ?1 AND s.volume_id = vol.id AND s.v >= ?2)) AS changed
         FROM volume_mapping m JOIN volume vol ON vol.id = m.volume_id WHERE m.sdc_id = ?1 ORDER BY vol.id`,
      )
      .all(sdcId, since);
  }

  /** Drop the oldest versions once the log is past its bound (at most every TRIM_CHECK_MS). */
  maybeTrim(): void {
    const now = performance.now();
    if (now - this.lastTrimCheckMs < TRIM_CHECK_MS) return;
    this.lastTrimCheckMs = now;
    this.trim();
  }

  trim(): void {
    const n = this.sqlite.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM temp.pf_copy_log").get()?.n ?? 0;
    if (n <= this.maxRows) return;
    const drop = Math.min(TRIM_STEP_ROWS, n - Math.floor((this.maxRows * 3) / 4));
    const cut = this.sqlite.query<{ v: number }, [number]>("SELECT v FROM temp.pf_copy_log ORDER BY v LIMIT 1 OFFSET ?").get(drop)?.v;
    if (cut === undefined) return;
    // more rows than `drop` at the oldest version (one big create, removal or recovery step):
    // "v < cut" would delete nothing, every time, and the log would grow for ever; that whole
    // version goes instead
    const oldest = this.sqlite.query<{ v: number }, []>("SELECT MIN(v) AS v FROM temp.pf_copy_log").get()?.v ?? cut;
    const below = cut > oldest ? cut : cut + 1;
    this.sqlite.transaction(() => {
      this.sqlite.query("DELETE FROM temp.pf_copy_log WHERE v < ?").run(below);
      this.sqlite.query("DELETE FROM temp.pf_graph_log WHERE v < ?").run(below);
      this.sqlite.query("DELETE FROM temp.pf_map_log WHERE v < ?").run(below);
      this.sqlite.query("DELETE FROM temp.pf_map_sdc_log WHERE v < ?").run(below);
    })();
    // rows of versions >= below are all still there: a delta since below or later is whole
    this.floor = Math.max(this.floor, below);
  }

  get trimmedBelow(): number {
    return this.floor;
  }
}

/** The columns of an SDC's map entry (cluster_service.ts sdcMaps), as mappedSince and the whole map read them. */
export const MAPPED_COLUMNS = `vol.id AS volumeId, vol.name AS name, vol.size_bytes AS sizeBytes, vol.extent_bytes AS extentBytes, vol.owner_id AS ownerId,
  m.access_mode AS accessMode, m.limit_iops AS limitIops, m.limit_bw_kbps AS limitBwKbps`;
export interface MappedVolumeRow {
  volumeId: string;
  name: string | null;
  sizeBytes: number;
  extentBytes: number;
  ownerId: string;
  accessMode: string;
  limitIops: number;
  limitBwKbps: number;
  /** mappedSince only: 1 when the entry may have changed since */
  changed?: number;
}

/**
 * The hand-off's entry (in per_sds, beside the SDS ids: no id has a "*") for SDC maps: the
 * newest version at which anything an SDC map shows changed in that life (or its map barrier).
 * A summary without it (an older build) continues no SDC's maps.
 */
export const MAPS_HANDOFF_KEY = "*sdcMaps";

const logs = new WeakMap<HealthTracker, CopyLog>();
let maxRowsForNewLogs = COPY_LOG_MAX_ROWS;

/** The copy log of this MDM's current life (a new one after a takeover: ctx.health is new). */
export function copyLogOf(ctx: MdmContext): CopyLog {
  let log = logs.get(ctx.health);
  // a reopened database (a standby's reload) has neither the triggers nor the rows: a new log
  // and a log whose triggers are gone (an install rolled back with its transaction) missed
  // changes meanwhile: a new log, so every SDS gets a full answer first
  if (log === undefined || log.sqlite !== ctx.store.sqlite || !copyLogInstalled(ctx.store.sqlite)) {
    installCopyLog(ctx.store.sqlite);
    log = new CopyLog(ctx.store.sqlite, maxRowsForNewLogs);
    logs.set(ctx.health, log);
  }
  return log;
}

/**
 * A clean stop (single MDM, sqlite store): write this life's log summary for the next start. Not
 * in HA mode (a standby's takeover starts a new log) and not without a log (no SDS fetched).
 */
export function saveCopyLogHandoff(ctx: MdmContext): void {
  if (ctx.meta.kind !== "sqlite") return;
  const log = logs.get(ctx.health);
  const sqlite = ctx.store.sqlite;
  if (log === undefined || log.sqlite !== sqlite || !copyLogInstalled(sqlite)) return;
  const perSds: Record<string, number> = {};
  for (const r of sqlite.query<{ s: string; v: number }, []>("SELECT sds_id AS s, MAX(v) AS v FROM temp.pf_copy_log GROUP BY sds_id").all()) perSds[r.s] = r.v;
  const mapsMax = sqlite
    .query<{ v: number | null }, []>(
      "SELECT MAX(v) AS v FROM (SELECT MAX(v) AS v FROM temp.pf_map_log UNION ALL SELECT MAX(v) FROM temp.pf_map_sdc_log UNION ALL SELECT v FROM temp.pf_map_barrier)",
    )
    .get()?.v;
  perSds[MAPS_HANDOFF_KEY] = mapsMax ?? 0;
  const barrier = sqlite.query<{ v: number }, []>("SELECT v FROM temp.pf_delta_barrier").get()?.v ?? 0;
  const graphMax = sqlite.query<{ v: number | null }, []>("SELECT MAX(v) AS v FROM temp.pf_graph_log").get()?.v ?? 0;
  sqlite
    .query(
      "INSERT INTO copy_log_handoff (one, log_id, end_version, floor, barrier, graph_max, per_sds, saved_at_ms) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (one) DO UPDATE SET log_id = ?1, end_version = ?2, floor = ?3, barrier = ?4, graph_max = ?5, per_sds = ?6, saved_at_ms = ?7",
    )
    .run(log.id, currentMapVersion(ctx), log.trimmedBelow, barrier, graphMax, JSON.stringify(perSds), ctx.clock());
}

/**
 * An MDM start (single MDM, sqlite store): when the previous life left a summary, make this
 * life's log now, before anything changes, and keep the summary (deleted from the table either
 * way) if the stored map version is still the one it was written at.
 */
export function adoptCopyLogHandoff(ctx: MdmContext): void {
  if (ctx.meta.kind !== "sqlite") return;
  const sqlite = ctx.store.sqlite;
  const row = sqlite
    .query<{ logId: string; endVersion: number; floor: number; barrier: number; graphMax: number; perSds: string }, []>(
      "SELECT log_id AS logId, end_version AS endVersion, floor, barrier, graph_max AS graphMax, per_sds AS perSds FROM copy_log_handoff WHERE one = 1",
    )
    .get();
  if (row === null) return; // the log is made at the first fetch, as before
  sqlite.run("DELETE FROM copy_log_handoff");
  const log = copyLogOf(ctx);
  const now = currentMapVersion(ctx);
  if (row.endVersion !== now) {
    consola.info(`mdm: the copy log of the previous MDM life ends at map version ${row.endVersion}, the database is at ${now}: every SDS gets its full assignments first`);
    return;
  }
  try {
    const perSds: unknown = JSON.parse(row.perSds);
    if (typeof perSds !== "object" || perSds === null || Array.isArray(perSds) || !Object.values(perSds).every((v) => Number.isSafeInteger(v))) throw new Error("not an object of versions");
    log.previous = { logId: row.logId, endVersion: row.endVersion, floor: row.floor, barrier: row.barrier, graphMax: row.graphMax, perSds: perSds as Record<string, number> };
  } catch (e) {
    consola.warn(`mdm: the copy log hand-off of the previous MDM life is unreadable (${(e as Error).message}); every SDS gets its full assignments first`);
  }
}

/** Tests: a small bound for logs made from now on (trimming exercised). */
export function setCopyLogMaxRowsForTests(n: number): void {
  maxRowsForNewLogs = n;
}

export type { CopyLog };
