// What the observe step reads that does not change at rest, kept so that an idle cluster's step
// costs ~nothing: at 1,000 SDSs / 100,000 volumes it was 31-53 ms a second (bench
// mdm_seeded_inproc.ts), mostly the sum of every volume's size per pool (a scan of 100,000
// rows), every device row read twice (8,000) and the recovery figures (recoveryStatus: the SDS
// views and every pool's summary) computed afresh although nothing had changed.
//
// Kept by sqlite itself, as the placement view and the copy log are (TEMP triggers: this
// connection only, nothing persisted or replicated, no caller has to remember anything):
// - temp._pf_volume_sums: the sum of size_bytes per (pool, volume type), filled by one GROUP BY
//   when the triggers are made and then moved by every volume insert, delete and update of
//   pool_id, volume_type or size_bytes (a create adds its size; nothing scans the table again);
// - temp._pf_observe_stamp: a counter moved, in the changing transaction, by any change of a
//   row the observe step's slow parts depend on: an extent (insert, delete, any update), a device
//   (insert, delete, its id, SDS, pool, state, name or path; not its used bytes, which beats
//   report), an SDS, an SDC or a storage pool (any change), a volume's insert or delete. Equal stamps mean none of those rows
//   changed in between (a rollback takes the change and the stamp's move back together).
// Both are asked for on every call, not remembered (TEMP DDL made inside a transaction that
// rolled back is gone: placement_view.ts). Only the active MDM keeps them: a standby's connection
// is query_only, so there (REST reads, /metrics) the callers read the rows as before.
//
// Invariants: volumeSums() equals the GROUP BY it replaces; a stamp that did not move means the
// listed rows did not change; a cache keyed by the stamp is also keyed by the connection.

import type { Database } from "bun:sqlite";
import type { MdmContext } from "../core/context.ts";

const SUMS = "temp._pf_volume_sums";
const STAMP = "temp._pf_observe_stamp";

const sum = (rec: "NEW" | "OLD", sign: 1 | -1) =>
  `INSERT INTO ${SUMS.slice(5)} (pool_id, volume_type, bytes) VALUES (${rec}.pool_id, ${rec}.volume_type, ${sign} * ${rec}.size_bytes) ON CONFLICT (pool_id, volume_type) DO UPDATE SET bytes = bytes + excluded.bytes;`;
const MOVE = `UPDATE ${STAMP.slice(5)} SET n = n + 1;`;

/** [name, body] of every trigger; all present or the cache is not whole */
const TRIGGERS: [string, string][] = [
  ["vol_i", `AFTER INSERT ON main.volume BEGIN ${sum("NEW", 1)} ${MOVE} END`],
  ["vol_d", `AFTER DELETE ON main.volume BEGIN ${sum("OLD", -1)} ${MOVE} END`],
  ["vol_u", `AFTER UPDATE OF pool_id, volume_type, size_bytes ON main.volume BEGIN ${sum("OLD", -1)} ${sum("NEW", 1)} END`],
  ["extent_i", `AFTER INSERT ON main.extent BEGIN ${MOVE} END`],
  ["extent_d", `AFTER DELETE ON main.extent BEGIN ${MOVE} END`],
  ["extent_u", `AFTER UPDATE ON main.extent BEGIN ${MOVE} END`],
  ["device_i", `AFTER INSERT ON main.device BEGIN ${MOVE} END`],
  ["device_d", `AFTER DELETE ON main.device BEGIN ${MOVE} END`],
  // a beat writes state with used bytes (unchanged state included): only a real change moves it
  [
    "device_u",
    `AFTER UPDATE OF id, sds_id, pool_id, state, name, path ON main.device WHEN OLD.id IS NOT NEW.id OR OLD.sds_id IS NOT NEW.sds_id OR OLD.pool_id IS NOT NEW.pool_id OR OLD.state IS NOT NEW.state OR OLD.name IS NOT NEW.name OR OLD.path IS NOT NEW.path BEGIN ${MOVE} END`,
  ],
  ...(["sds", "sdc", "storage_pool"] as const).flatMap((t): [string, string][] => [
    [`${t}_i`, `AFTER INSERT ON main.${t} BEGIN ${MOVE} END`],
    [`${t}_d`, `AFTER DELETE ON main.${t} BEGIN ${MOVE} END`],
    [`${t}_u`, `AFTER UPDATE ON main.${t} BEGIN ${MOVE} END`],
  ]),
];
const TRIGGER_NAMES = TRIGGERS.map(([n]) => `_pf_obs_${n}`);

function installed(sqlite: Database): boolean {
  const row = sqlite
    .query<{ n: number }, []>(
      `SELECT COUNT(*) AS n FROM sqlite_temp_master WHERE (type = 'trigger' AND name IN (${TRIGGER_NAMES.map((t) => `'${t}'`).join(", ")})) OR (type = 'table' AND name IN ('_pf_volume_sums', '_pf_observe_stamp'))`,
    )
    .get();
  return row?.n === TRIGGER_NAMES.length + 2;
}

/** Make the TEMP tables (the sums filled from the volume table) and triggers, in one transaction. */
function install(sqlite: Database): void {
  sqlite.transaction(() => {
    // a partial set (cannot happen unless someone dropped one): start over
    for (const n of TRIGGER_NAMES) sqlite.run(`DROP TRIGGER IF EXISTS temp.${n}`);
    sqlite.run(`DROP TABLE IF EXISTS ${SUMS}`);
    sqlite.run(`CREATE TEMP TABLE _pf_volume_sums (pool_id TEXT NOT NULL, volume_type TEXT NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (pool_id, volume_type)) WITHOUT ROWID`);
    sqlite.run(`INSERT INTO ${SUMS} (pool_id, volume_type, bytes) SELECT pool_id, volume_type, coalesce(sum(size_bytes), 0) FROM main.volume GROUP BY pool_id, volume_type`);
    sqlite.run(`CREATE TEMP TABLE IF NOT EXISTS _pf_observe_stamp (one INTEGER PRIMARY KEY CHECK (one = 1), n INTEGER NOT NULL)`);
    sqlite.run(`INSERT INTO ${STAMP} (one, n) VALUES (1, 0) ON CONFLICT (one) DO UPDATE SET n = n + 1`);
    for (const [name, body] of TRIGGERS) sqlite.run(`CREATE TEMP TRIGGER _pf_obs_${name} ${body}`);
  })();
}

/** The kept tables on this connection, made if missing; false where they cannot be kept (a standby). */
function kept(ctx: MdmContext): boolean {
  if (!ctx.meta.isLeader()) return false;
  const sqlite = ctx.store.sqlite;
  if (!installed(sqlite)) {
    install(sqlite);
    installs.set(sqlite, (installs.get(sqlite) ?? 0) + 1);
  }
  return true;
}

/** installs per connection: the tables made again (after a rollback took them) start a new series of stamps */
const installs = new WeakMap<Database, number>();

export interface VolumeSum {
  pool_id: string;
  volume_type: string;
  bytes: number;
}

/** Sum of volume sizes per (pool, volume type), as `SELECT ... GROUP BY pool_id, volume_type`. */
export function volumeSums(ctx: MdmContext): VolumeSum[] {
  if (kept(ctx)) return ctx.store.sqlite.query<VolumeSum, []>(`SELECT pool_id, volume_type, bytes FROM ${SUMS}`).all();
  return ctx.store.sqlite
    .query<VolumeSum, []>("SELECT pool_id, volume_type, coalesce(sum(size_bytes), 0) AS bytes FROM volume GROUP BY pool_id, volume_type")
    .all();
}

/**
 * A token that is equal for two calls only if no extent, device (but its used bytes), SDS, SDC
 * or storage pool row changed and no volume was made or removed between them on this connection; null where it is not kept (a
 * standby: compute afresh).
 */
export function observeStamp(ctx: MdmContext): string | null {
  if (!kept(ctx)) return null;
  const n = ctx.store.sqlite.query<{ n: number }, []>(`SELECT n FROM ${STAMP} WHERE one = 1`).get()?.n;
  return n === undefined ? null : `${stampIdOf(ctx.store.sqlite)}.${installs.get(ctx.store.sqlite) ?? 0}:${n}`;
}

const ids = new WeakMap<Database, number>();
let nextId = 1;
/** a number per connection: a stamp of a reopened database never equals an old one */
function stampIdOf(sqlite: Database): number {
  let id = ids.get(sqlite);
  if (id === undefined) {
    id = nextId++;
    ids.set(sqlite, id);
  }
  return id;
}
