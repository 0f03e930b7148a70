// Forgetting merges every holder has applied: a layer_merge row stays in the graph SDSs get
// until every SDS holding a copy (in-sync, target or away) of that V-Tree's extents has applied
// a map version at or after the row's; then no copy can still hold the folded layer's chunks
// unfolded, and the row goes (the graph version does not change: the graph means the same).

import { inArray, lte, and, eq } from "drizzle-orm";
import { layerMergeTable } from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { holdersOf } from "./vtree_store.ts";

/** Drop merge rows every holder applied; returns how many went. Cheap when there are none. */
export function trimAppliedMerges(ctx: MdmContext): number {
  const owners = ctx.store.sqlite.query<{ owner_id: string }, []>("SELECT DISTINCT owner_id FROM layer_merge").all();
  let trimmed = 0;
  for (const { owner_id: ownerId } of owners) {
    const holders = holdersOf(ctx, [ownerId], true);
    const applied = holders.length === 0 ? Number.MAX_SAFE_INTEGER : Math.min(...holders.map((id) => ctx.health.sdsAppliedMapVersion(id)));
    const gone = ctx.store.db
      .delete(layerMergeTable)
      .where(and(eq(layerMergeTable.ownerId, ownerId), lte(layerMergeTable.mapVersion, applied)))
      .returning({ seq: layerMergeTable.seq })
      .all();
    trimmed += gone.length;
  }
  return trimmed;
}

/** Merge rows of owners that no longer exist (the whole V-Tree was removed). */
export function dropMergesOf(ctx: MdmContext, ownerIds: readonly string[]): void {
  if (ownerIds.length > 0) ctx.store.db.delete(layerMergeTable).where(inArray(layerMergeTable.ownerId, [...ownerIds])).run();
}
