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
  const db = drizzle({ client: sqlite, schema: mdmSchema });
  return {
    sqlite,
    db,
    close: () => sqlite.close(),
  };
}
