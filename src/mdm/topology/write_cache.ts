// A storage pool's write cache mode (pf extension): writeBack (default) acknowledges a write once
// both copies hold it through the kernel, and FLUSH/FUA make it durable; writeThrough makes every
// write durable on both copies before it is acknowledged (the SDSs' group commit,
// src/sds/group_commit.ts). The SDSs learn the mode with their assignments (writeThroughVolumes).
//
// Invariants: a change bumps mapVersion in the same transaction, so every SDS fetches its
// assignments at its next heartbeat and serves in the new mode from then on (until then it keeps
// the old one: a write acknowledged in writeBack is made durable by the next FLUSH, as always).

import { and, eq, inArray } from "drizzle-orm";
import type { WriteCache } from "../../proto/powerflex_api.ts";
import { storagePoolTable, volumeTable } from "../../store/mdm_schema.ts";
import { inTransaction, type MdmContext } from "../core/context.ts";
import { getPool } from "../core/lookup.ts";
import { bumpMapVersion } from "../core/system_state.ts";

export function setWriteCache(ctx: MdmContext, poolId: string, mode: WriteCache): void {
  inTransaction(ctx, () => {
    const pool = getPool(ctx, poolId);
    if (pool.writeCache === mode) return;
    ctx.store.db.update(storagePoolTable).set({ writeCache: mode }).where(eq(storagePoolTable.id, poolId)).run();
    bumpMapVersion(ctx);
  });
}

/** Which of these volumes live in a writeThrough pool (one small query when no pool is writeThrough). */
export function writeThroughVolumes(ctx: MdmContext, volumeIds: readonly string[]): string[] {
  const pools = ctx.store.db.select({ id: storagePoolTable.id }).from(storagePoolTable).where(eq(storagePoolTable.writeCache, "writeThrough")).all();
  if (pools.length === 0 || volumeIds.length === 0) return [];
  const poolIds = pools.map((p) => p.id);
  const out: string[] = [];
  const BATCH = 500;
  for (let i = 0; i < volumeIds.length; i += BATCH) {
    const rows = ctx.store.db
      .select({ id: volumeTable.id })
      .from(volumeTable)
      .where(and(inArray(volumeTable.id, volumeIds.slice(i, i + BATCH)), inArray(volumeTable.poolId, poolIds)))
      .all();
    for (const r of rows) out.push(r.id);
  }
  return out;
}
