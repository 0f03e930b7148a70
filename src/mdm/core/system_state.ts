// The System row: the system id, the id counter shared by ALL objects (so the low 32 bits of any
// id are unique and the data plane can key volumes by them), the global mapVersion, and the
// data-plane key. Invariants: next_counter and map_version only grow; ids are allocated and
// mapVersion bumped inside the caller's transaction, so a rolled-back change consumes neither.

import { randomBytes, createHash } from "node:crypto";
import { eq } from "drizzle-orm";
import { assert } from "../../proto/errors.ts";
import { halvesToId } from "../../proto/ids.ts";
import type { MdmDb } from "../../store/mdm_db.ts";
import { systemTable, type SystemRow } from "../../store/mdm_schema.ts";
import type { MdmContext } from "./context.ts";
import type { MapChangeScope } from "./health.ts";

export type IdKind =
  | "System"
  | "ProtectionDomain"
  | "StoragePool"
  | "FaultSet"
  | "Sds"
  | "Device"
  | "Sdc"
  | "Volume"
  | "VTree"
  | "Layer"
  | "SnapshotGroup";

const MAX_COUNTER = 0xffff_ffff;

/** Create the System row on first start; returns the system (existing or new). */
export function ensureSystem(store: MdmDb, nowMs: number): SystemRow {
  const existing = store.db.select().from(systemTable).get();
  if (existing) return existing;
  const salt = randomBytes(8).toString("hex");
  const row: SystemRow = {
    id: halvesToId(prefixOf(salt, "System"), 0),
    name: null,
    idSalt: salt,
    nextCounter: 1,
    mapVersion: 1,
    dataKey: randomBytes(32).toString("hex"),
    createdAtMs: nowMs,
    capacityAlertHighPct: 80,
    capacityAlertCriticalPct: 90,
    restrictedSdcMode: "None",
  };
  store.db.insert(systemTable).values(row).run();
  return row;
}

const prefixCache = new Map<string, number>();

/** Per-system, per-type 32-bit id prefix (stable: derived from the system's salt). */
function prefixOf(salt: string, kind: IdKind): number {
  const key = `${salt}/${kind}`;
  let p = prefixCache.get(key);
  if (p === undefined) {
    p = createHash("sha256").update(key).digest().readUInt32BE(0);
    prefixCache.set(key, p);
  }
  return p;
}

export function getSystem(ctx: MdmContext): SystemRow {
  const row = ctx.store.db.select().from(systemTable).where(eq(systemTable.id, ctx.systemId)).get();
  assert(row, "system row exists");
  return row;
}

/** Allocate a new object id; call inside the transaction that inserts the object. */
export function allocateId(ctx: MdmContext, kind: IdKind): string {
  const row = ctx.store.sqlite
    .query<{ id_salt: string; n: number }, []>("UPDATE system SET next_counter = next_counter + 1 RETURNING id_salt, next_counter - 1 AS n")
    .get();
  assert(row, "system row exists");
  assert(row.n <= MAX_COUNTER, "id counter below 2^32");
  return halvesToId(prefixOf(row.id_salt, kind), row.n);
}

/**
 * Note a change to any map, mapping, volume or SDS address; call inside the changing
 * transaction. `scope` names the only nodes whose assignments or maps the change alters (their
 * heartbeat answers move; health.ts mapVersionFor); without it the change concerns every node.
 * `urgent` (a change that takes access away) also answers those nodes' map watches at once.
 */
export function bumpMapVersion(ctx: MdmContext, scope?: MapChangeScope, opts: { urgent?: boolean } = {}): number {
  const row = ctx.store.sqlite.query<{ v: number }, []>("UPDATE system SET map_version = map_version + 1 RETURNING map_version AS v").get();
  assert(row, "system row exists");
  ctx.health.noteMapChange(row.v, scope, opts.urgent ?? false);
  return row.v;
}

export function currentMapVersion(ctx: MdmContext): number {
  const row = ctx.store.sqlite.query<{ v: number }, []>("SELECT map_version AS v FROM system").get();
  assert(row, "system row exists");
  return row.v;
}
