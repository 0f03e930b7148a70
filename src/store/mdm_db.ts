// Opens the MDM's sqlite database (DATA_DIR/mdm.db): WAL mode, synchronous=FULL so a commit that
// returned survives kill -9 and power loss, foreign keys on, migrations applied. Returns the raw
// bun:sqlite handle (for transactions and prepared hot-path statements) and the drizzle wrapper.

import consola from "consola";
import { Database } from "bun:sqlite";
import { drizzle, type BunSQLiteDatabase } from "drizzle-orm/bun-sqlite";
import { migrateMdmDb } from "./mdm_migrate.ts";
import { mdmSchema } from "./mdm_schema.ts";

export type MdmDrizzle = BunSQLiteDatabase<typeof mdmSchema>;

export interface MdmDb {
  sqlite: Database;
  db: MdmDrizzle;
  close(): void;
}

export function openMdmDb(path: string): MdmDb {
  const sqlite = new Database(path, { create: true, readwrite: true, strict: true });
  sqlite.run("PRAGMA journal_mode = WAL");
  sqlite.run("PRAGMA synchronous = FULL");
  sqlite.run("PRAGMA foreign_keys = ON");
  sqlite.run("PRAGMA busy_timeout = 5000");
  // page caches of 64 MiB (sqlite's default is 2 MiB): at 100,000 volumes (1.6 M extent rows,
  // their indexes, the TEMP copy log of up to 1 M rows) the default kept little of any B-tree
  // in memory, and every create's inserts and every recovery read paid page reads
  const cacheKib = cacheKibOf(process.env.PF_MDM_CACHE_KIB);
  sqlite.run(`PRAGMA cache_size = -${cacheKib}`);
  sqlite.run(`PRAGMA temp.cache_size = -${cacheKib}`);
  migrateMdmDb(sqlite);
  const db = drizzle({ client: statementCaching(sqlite), schema: mdmSchema });
  return {
    sqlite,
    db,
    close: () => sqlite.close(),
  };
}

/**
 * The handle drizzle runs on: its prepare() is bun:sqlite's query(), which compiles each distinct
 * SQL text once and reuses the statement. drizzle prepares every query it runs and never keeps
 * or finalizes the statement, so with the plain handle every heartbeat and REST call paid a
 * sqlite3_prepare per query (12 % of the MDM's CPU under 300 heartbeats/s, bench/mdm_scale.ts).
 * drizzle binds values as parameters, but an IN list or a multi-row insert has a text per
 * length; texts with more than CACHED_SQL_MAX_PARAMS parameters are prepared per call as
 * before, so the cache holds the fixed texts the MDM runs and short lists only (bounded).
 */
const CACHED_SQL_MAX_PARAMS = 16;
function paramCount(sql: string): number {
  let n = 0;
  for (let i = sql.indexOf("?"); i >= 0 && n <= CACHED_SQL_MAX_PARAMS; i = sql.indexOf("?", i + 1)) n++;
  return n;
}
function statementCaching(sqlite: Database): Database {
  return new Proxy(sqlite, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => (paramCount(sql) <= CACHED_SQL_MAX_PARAMS ? target.query(sql) : target.prepare(sql));
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

const DEFAULT_CACHE_KIB = 65536;

/** PF_MDM_CACHE_KIB: a positive whole number of KiB; anything else is said and the default used. */
function cacheKibOf(v: string | undefined): number {
  if (v === undefined || v === "") return DEFAULT_CACHE_KIB;
  const n = Number(v);
  if (Number.isSafeInteger(n) && n > 0) return n;
  consola.warn(`mdm: PF_MDM_CACHE_KIB=${JSON.stringify(v)} is not a positive whole number of KiB; sqlite page caches of ${DEFAULT_CACHE_KIB} KiB are used`);
  return DEFAULT_CACHE_KIB;
}
