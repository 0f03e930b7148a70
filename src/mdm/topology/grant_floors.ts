// Revocation floors of mapping grants (table grant_floor, migration 0002): when a mapping is
// removed or switched to ReadOnly, every grant of that (volume, SDC) issued before is void. The
// floor is the map version of the revoking change; SDSs get the floors with their assignments
// (fetched within a heartbeat, since the change bumps mapVersion) and refuse IO under an older
// grant from then on.
//
// Invariants: a floor only grows; it is written in the transaction of the revoking change,
// after that change bumped mapVersion, so every grant minted later carries a map version at or
// above it; floors older than a grant's lifetime (plus slack for clock skew) are pruned: no
// grant they could void is still valid.

import { sql } from "drizzle-orm";
import type { GrantFloor } from "../../proto/cluster_api.ts";
import { Limits } from "../../proto/limits.ts";
import { grantFloorTable } from "../../store/mdm_schema.ts";
import type { MdmContext } from "../core/context.ts";
import { currentMapVersion } from "../core/system_state.ts";

/** Grants outlive their expiry on an SDS whose clock lags: keep floors this much longer. */
const FLOOR_SLACK_MS = 10 * 60 * 1000;

/** Void every grant of (volume, SDC) issued so far; call inside the revoking transaction, after bumpMapVersion. */
export function revokeGrants(ctx: MdmContext, volumeId: string, sdcId: string): void {
  const floorVersion = currentMapVersion(ctx);
  ctx.store.db
    .insert(grantFloorTable)
    .values({ volumeId, sdcId, floorVersion, setAtMs: ctx.clock() })
    .onConflictDoUpdate({
      target: [grantFloorTable.volumeId, grantFloorTable.sdcId],
      set: { floorVersion: sql`max(${grantFloorTable.floorVersion}, ${floorVersion})`, setAtMs: ctx.clock() },
    })
    .run();
}

/**
 * The floors SDSs must know (pruning the ones no valid grant can be below any more). Cached
 * statements: every SDS fetch runs both (drizzle built them per call, ~0.1 ms of an empty delta).
 */
export function grantFloors(ctx: MdmContext): GrantFloor[] {
  const q = ctx.store.sqlite;
  q.query<unknown, [number]>("DELETE FROM grant_floor WHERE set_at_ms < ?").run(ctx.clock() - Limits.grantTtlMs - FLOOR_SLACK_MS);
  return q
    .query<GrantFloor, [number]>("SELECT volume_id AS volumeId, sdc_id AS sdcId, floor_version AS floorVersion FROM grant_floor ORDER BY set_at_ms DESC LIMIT ?")
    .all(Limits.maxGrantFloors);
}
