// Opens the MDM's sqlite database (DATA_DIR/mdm.db): WAL mode, synchronous=FULL so a commit that
// returned survives kill -9 and power loss, foreign keys on, migrations applied. Returns the raw
// bun:sqlite handle (for transactions and prepared hot-path statements) and the drizzle wrapper.

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
 * The distinct texts are bounded: drizzle binds values as parameters; IN lists are chunked.
 */
function statementCaching(sqlite: Database): Database {
  return new Proxy(sqlite, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => target.query(sql);
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
