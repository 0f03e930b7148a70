// Row-level change capture and replay on the MDM's sqlite database, for HA mode (mdm/ha): the
// active MDM records which rows every local transaction touched, so they can be shipped to etcd
// as whole row images (one key per row); standbys replay those images into their own sqlite.
// Nothing here runs in the default single-MDM mode (the tables and triggers exist only once HA
// mode calls enableCapture / ensureHaTables).
//
// Invariants:
// - capture triggers are TEMP (this connection only, never persisted) AFTER INSERT/UPDATE/DELETE
//   triggers on every replicated table; they append (table, primary key) to `_pf_pending` in the
//   same sqlite transaction as the change, so a pending row exists for every local change not yet
//   in etcd, also across a crash (the table itself is persistent);
// - a row image is read at ship time (the latest state of the row, or "deleted"), so several
//   transactions on one row ship as one put; images are JSON objects of every column;
// - replay deletes every touched row first and then inserts the new images, with foreign keys
//   deferred to the commit, so a batch that swapped unique names between rows applies cleanly;
// - replicated tables = every table but sqlite's own, schema_version, `_pf_*` and
//   LOCAL_ONLY_TABLES; each must have a primary key (asserted), and no column may hold a blob.

import type { Database } from "bun:sqlite";
import { assert } from "../proto/errors.ts";

/** Tables that stay on one MDM: its own fencing-term counter, its copy log's hand-off (mdm/cluster/copy_log.ts). */
export const LOCAL_ONLY_TABLES: readonly string[] = ["mdm_term", "copy_log_handoff"];

export const PENDING_TABLE = "_pf_pending";
export const HA_STATE_TABLE = "_pf_ha_state";

export interface TableInfo {
  name: string;
  columns: string[];
  pkColumns: string[];
}

/** A row change as shipped: table, primary key values (as text), new image (null: deleted). */
export interface RowChange {
  table: string;
  pk: string[];
  row: Record<string, unknown> | null;
}

export type SqlValue = string | number | bigint | boolean | null | Uint8Array;

function quoteIdent(name: string): string {
  assert(/^[A-Za-z_][A-Za-z0-9_]*$/.test(name), `plain sqlite identifier ${name}`);
  return `"${name}"`;
}

/** The replicated tables with their columns and primary key, in name order. */
export function replicatedTables(sqlite: Database): TableInfo[] {
  const names = sqlite
    .query<{ name: string }, []>("SELECT name FROM main.sqlite_master WHERE type = 'table' ORDER BY name")
    .all()
    .map((r) => r.name)
    .filter((n) => !n.startsWith("sqlite_") && !n.startsWith("_pf_") && n !== "schema_version" && !LOCAL_ONLY_TABLES.includes(n));
  return names.map((name) => {
    const cols = sqlite.query<{ name: string; pk: number }, []>(`PRAGMA main.table_info(${quoteIdent(name)})`).all();
    const pkColumns = cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
    assert(pkColumns.length > 0, `replicated table ${name} has a primary key`);
    return { name, columns: cols.map((c) => c.name), pkColumns };
  });
}

/** Create the persistent HA bookkeeping tables (pending changes, applied revision). */
export function ensureHaTables(sqlite: Database): void {
  sqlite.run(`CREATE TABLE IF NOT EXISTS ${PENDING_TABLE} (seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, pk TEXT NOT NULL)`);
  sqlite.run(`CREATE TABLE IF NOT EXISTS ${HA_STATE_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), applied_rev INTEGER NOT NULL, cluster_key TEXT NOT NULL)`);
}

/** Install the TEMP capture triggers (idempotent). */
export function enableCapture(sqlite: Database, tables: readonly TableInfo[]): void {
  disableCapture(sqlite, tables);
  for (const t of tables) {
    const tn = quoteIdent(t.name);
    const pkOf = (alias: "NEW" | "OLD") => `json_array(${t.pkColumns.map((c) => `${alias}.${quoteIdent(c)}`).join(", ")})`;
    const ins = (alias: "NEW" | "OLD") => `INSERT INTO main.${PENDING_TABLE} (tbl, pk) VALUES ('${t.name}', ${pkOf(alias)});`;
    sqlite.run(`CREATE TEMP TRIGGER pf_cap_${t.name}_i AFTER INSERT ON main.${tn} BEGIN ${ins("NEW")} END`);
    sqlite.run(`CREATE TEMP TRIGGER pf_cap_${t.name}_d AFTER DELETE ON main.${tn} BEGIN ${ins("OLD")} END`);
    // an update that changes the key deletes the old key: both are recorded
    sqlite.run(`CREATE TEMP TRIGGER pf_cap_${t.name}_u AFTER UPDATE ON main.${tn} BEGIN ${ins("OLD")} ${ins("NEW")} END`);
  }
}

export function disableCapture(sqlite: Database, tables: readonly TableInfo[]): void {
  for (const t of tables) for (const k of ["i", "d", "u"]) sqlite.run(`DROP TRIGGER IF EXISTS temp.pf_cap_${t.name}_${k}`);
}

/** Highest pending sequence number (0: nothing pending). */
export function lastPendingSeq(sqlite: Database): number {
  return sqlite.query<{ s: number | null }, []>(`SELECT MAX(seq) AS s FROM main.${PENDING_TABLE}`).get()?.s ?? 0;
}

/**
 * Changes recorded after `afterSeq`, as current row images, one per touched row (in first-touch
 * order), and the sequence number they cover up to.
 */
export function pendingChanges(sqlite: Database, tables: ReadonlyMap<string, TableInfo>, afterSeq: number): { changes: RowChange[]; upToSeq: number } {
  const rows = sqlite
    .query<{ seq: number; tbl: string; pk: string }, [number]>(`SELECT seq, tbl, pk FROM main.${PENDING_TABLE} WHERE seq > ? ORDER BY seq`)
    .all(afterSeq);
  const seen = new Set<string>();
  const changes: RowChange[] = [];
  for (const r of rows) {
    const id = `${r.tbl}\0${r.pk}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const t = tables.get(r.tbl);
    assert(t, `pending change names a replicated table (${r.tbl})`);
    const pkValues = JSON.parse(r.pk) as SqlValue[];
    assert(Array.isArray(pkValues) && pkValues.length === t.pkColumns.length, `pending key of ${r.tbl} has ${t.pkColumns.length} parts`);
    changes.push({ table: t.name, pk: pkValues.map((v) => String(v)), row: readRow(sqlite, t, pkValues) });
  }
  return { changes, upToSeq: rows.length === 0 ? afterSeq : rows[rows.length - 1]!.seq };
}

function whereByPk(t: TableInfo): string {
  return t.pkColumns.map((c) => `${quoteIdent(c)} = ?`).join(" AND ");
}

function readRow(sqlite: Database, t: TableInfo, pk: SqlValue[]): Record<string, unknown> | null {
  const row = sqlite.query<Record<string, SqlValue>, SqlValue[]>(`SELECT * FROM main.${quoteIdent(t.name)} WHERE ${whereByPk(t)}`).get(...pk);
  if (row === null) return null;
  for (const [k, v] of Object.entries(row)) assert(!(v instanceof Uint8Array), `column ${t.name}.${k} holds no blob (HA ships JSON)`);
  return row;
}

/** Forget pending changes up to and including seq (they are in etcd now). */
export function dropPending(sqlite: Database, upToSeq: number): void {
  sqlite.run(`DELETE FROM main.${PENDING_TABLE} WHERE seq <= ?`, [upToSeq]);
}

export function clearPending(sqlite: Database): void {
  sqlite.run(`DELETE FROM main.${PENDING_TABLE}`);
}

/**
 * Replay changes (inside the caller's transaction): delete every touched row, insert the images.
 * A batch may hold several revisions that touched one row: the last image of each row wins.
 */
export function applyChanges(sqlite: Database, tables: ReadonlyMap<string, TableInfo>, batch: readonly RowChange[]): void {
  const last = new Map<string, RowChange>();
  for (const c of batch) {
    const id = `${c.table}\0${c.pk.join("\0")}`;
    last.delete(id); // re-insert: keep the order of last touch
    last.set(id, c);
  }
  const changes = [...last.values()];
  sqlite.run("PRAGMA defer_foreign_keys = ON");
  for (const c of changes) {
    const t = tables.get(c.table);
    assert(t, `replicated table ${c.table} exists in this MDM's schema`);
    assert(c.pk.length === t.pkColumns.length, `key of ${c.table} has ${t.pkColumns.length} parts`);
    sqlite.run(`DELETE FROM main.${quoteIdent(t.name)} WHERE ${whereByPk(t)}`, c.pk);
  }
  for (const c of changes) if (c.row !== null) insertRow(sqlite, tables.get(c.table)!, c.row);
}

function insertRow(sqlite: Database, t: TableInfo, row: Record<string, unknown>): void {
  const cols = Object.keys(row);
  for (const col of cols) assert(t.columns.includes(col), `column ${t.name}.${col} exists in this MDM's schema`);
  const values = cols.map((c) => row[c] as SqlValue);
  sqlite.run(`INSERT INTO main.${quoteIdent(t.name)} (${cols.map(quoteIdent).join(", ")}) VALUES (${cols.map(() => "?").join(", ")})`, values);
}

/** Replace the whole replicated state (inside the caller's transaction). */
export function replaceAll(sqlite: Database, tables: readonly TableInfo[], rows: readonly RowChange[]): void {
  sqlite.run("PRAGMA defer_foreign_keys = ON");
  for (const t of tables) sqlite.run(`DELETE FROM main.${quoteIdent(t.name)}`);
  const byName = new Map(tables.map((t) => [t.name, t]));
  for (const r of rows) {
    const t = byName.get(r.table);
    assert(t, `replicated table ${r.table} exists in this MDM's schema`);
    if (r.row !== null) insertRow(sqlite, t, r.row);
  }
}

/** Every row of every replicated table, as puts (bootstrap export and dump comparison). */
export function exportAll(sqlite: Database, tables: readonly TableInfo[]): RowChange[] {
  const out: RowChange[] = [];
  for (const t of tables) {
    const rows = sqlite.query<Record<string, SqlValue>, []>(`SELECT * FROM main.${quoteIdent(t.name)}`).all();
    for (const row of rows) out.push({ table: t.name, pk: t.pkColumns.map((c) => String(row[c])), row });
  }
  return out;
}

export function readAppliedRev(sqlite: Database): { appliedRev: number; clusterKey: string } | null {
  const r = sqlite.query<{ applied_rev: number; cluster_key: string }, []>(`SELECT applied_rev, cluster_key FROM main.${HA_STATE_TABLE} WHERE id = 1`).get();
  return r ? { appliedRev: r.applied_rev, clusterKey: r.cluster_key } : null;
}

export function writeAppliedRev(sqlite: Database, appliedRev: number, clusterKey: string): void {
  sqlite.run(`INSERT INTO main.${HA_STATE_TABLE} (id, applied_rev, cluster_key) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET applied_rev = excluded.applied_rev, cluster_key = excluded.cluster_key`, [appliedRev, clusterKey]);
}
