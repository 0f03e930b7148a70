// Versioned migrations of the MDM database. The SQL is embedded in the binary (text imports), so
// a compiled `pf` copied alone to a host still migrates. Invariants: migrations apply in version
// order, each inside one transaction together with its schema_version row, so a crash leaves the
// database at a whole version; a database newer than this binary is refused, never touched.

import type { Database } from "bun:sqlite";
import { PfError } from "../proto/errors.ts";
import init0000 from "./migrations/0000_init.sql" with { type: "text" };
import recovery0001 from "./migrations/0001_recovery.sql" with { type: "text" };
import alerts0002 from "./migrations/0002_alerts.sql" with { type: "text" };
import dataplaneSecurity0003 from "./migrations/0003_dataplane_security.sql" with { type: "text" };
import mdmTerm0004 from "./migrations/0004_mdm_term.sql" with { type: "text" };
import snapshots0005 from "./migrations/0005_snapshots.sql" with { type: "text" };
import writeCache0006 from "./migrations/0006_write_cache.sql" with { type: "text" };
import usersAudit0007 from "./migrations/0007_users_audit.sql" with { type: "text" };
import loginLockout0008 from "./migrations/0008_login_lockout.sql" with { type: "text" };
import nbdClientCert0009 from "./migrations/0009_nbd_client_cert.sql" with { type: "text" };
import ioPriority0010 from "./migrations/0010_io_priority.sql" with { type: "text" };
import copyLogHandoff0011 from "./migrations/0011_copy_log_handoff.sql" with { type: "text" };

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MDM_MIGRATIONS: readonly Migration[] = [
  { version: 0, name: "0000_init", sql: init0000 },
  { version: 1, name: "0001_recovery", sql: recovery0001 },
  { version: 2, name: "0002_alerts", sql: alerts0002 },
  { version: 3, name: "0003_dataplane_security", sql: dataplaneSecurity0003 },
  { version: 4, name: "0004_mdm_term", sql: mdmTerm0004 },
  { version: 5, name: "0005_snapshots", sql: snapshots0005 },
  { version: 6, name: "0006_write_cache", sql: writeCache0006 },
  { version: 7, name: "0007_users_audit", sql: usersAudit0007 },
  { version: 8, name: "0008_login_lockout", sql: loginLockout0008 },
  { version: 9, name: "0009_nbd_client_cert", sql: nbdClientCert0009 },
  { version: 10, name: "0010_io_priority", sql: ioPriority0010 },
  { version: 11, name: "0011_copy_log_handoff", sql: copyLogHandoff0011 },
];

/** Current schema version, or -1 for an empty database. */
export function schemaVersionOf(sqlite: Database): number {
  sqlite.run(
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)",
  );
  const row = sqlite.query<{ v: number | null }, []>("SELECT MAX(version) AS v FROM schema_version").get();
  return row?.v ?? -1;
}

/** Apply every migration newer than the database; returns the versions applied. */
export function migrateMdmDb(sqlite: Database, migrations: readonly Migration[] = MDM_MIGRATIONS, nowMs: number = Date.now()): number[] {
  const current = schemaVersionOf(sqlite);
  const newest = migrations.reduce((m, x) => Math.max(m, x.version), -1);
  if (current > newest) {
    throw new PfError(
      "INVALID_STATE",
      `MDM database schema version ${current} is newer than this binary knows (${newest}); use a newer pf`,
    );
  }
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    if (m.version <= current) continue;
    sqlite.transaction(() => {
      sqlite.run(m.sql);
      sqlite.run("INSERT INTO schema_version (version, name, applied_at_ms) VALUES (?, ?, ?)", [m.version, m.name, nowMs]);
    })();
    applied.push(m.version);
  }
  return applied;
}
