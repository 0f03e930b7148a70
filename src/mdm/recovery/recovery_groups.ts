// The extents that need attention, as the pool recovery figures want them (recoveryStatus,
// recovery_summary.ts summarizeGroups): the ones without a running copy counted by sqlite in
// groups of like extents (pool, extent size, liveness of each copy, removal state of the in-sync
// copies' SDSs, away copy within its grace period), the few with a running copy read one by one
// for their progress. The same extents as loadAttentionExtents (recovery_view.ts): the attention
// index, every copy of a disconnected SDS, a connected SDS's copies on its failed devices.
// Why: with 100 of 1,000 SDSs down that is 10^5 extents; an object per extent held the loop
// 14-48 s in the observe step (2.3-3.0 s a computation), which declared more SDSs down. The
// groups number about (pools x liveness combinations), whatever the extent count.

import type { MdmContext } from "../core/context.ts";
import type { CopyLive, ExtentGroup } from "./recovery_summary.ts";
import type { PlannedExtent } from "./recovery_model.ts";
import type { SdsView } from "./target_placement.ts";
import { loadCopyingExtents } from "./recovery_view.ts";

/** a copy's key in the liveness sets: SDS id, unit separator, device id */
const key = (sdsId: string, deviceId: string) => `${sdsId}\u001f${deviceId}`;
const keyOf = (sds: string, dev: string) => `(${sds} || char(31) || ${dev})`;
const inJson = (n: number) => `IN (SELECT value FROM json_each(?${n}))`;
/** the liveness of a copy (as copyStatus in recovery.ts): 2 up, 1 down, 0 dead (failed or unknown device) */
const live = (sds: string, dev: string) => `CASE WHEN ${keyOf(sds, dev)} ${inJson(1)} THEN 2 WHEN ${keyOf(sds, dev)} ${inJson(2)} THEN 1 ELSE 0 END`;

// ?1 up copies' keys, ?2 down copies' keys, ?3 removing SDS ids, ?4 now - grace (ms),
// ?5 disconnected SDS ids, ?6 connected SDSs with a failed device, ?7 the keys of those SDSs'
// failed devices (an extent on such an SDS with a copy on one of ITS failed devices, as there).
// The UNION of keys keeps each extent once (an extent of two down SDSs is on both lists) and
// uses an index per part (the attention index is partial, on exactly its first condition); the
// CROSS JOIN makes sqlite read the extent rows by key from that list (as an IN over the whole
// table it scanned all 1.6 M rows: 0.5 s with one SDS down).
export const GROUPS_SQL = `
SELECT pool_id AS poolId, eb AS extentBytes, ps, ss, pr, sr, aw, ar, COUNT(*) AS n FROM (
  SELECT v.pool_id, v.extent_bytes AS eb,
    ${live("e.primary_sds_id", "e.primary_device_id")} AS ps,
    CASE WHEN e.secondary_sds_id IS NULL THEN -1 ELSE ${live("e.secondary_sds_id", "e.secondary_device_id")} END AS ss,
    e.primary_sds_id ${inJson(3)} AS pr,
    CASE WHEN e.secondary_sds_id IS NULL THEN 0 ELSE e.secondary_sds_id ${inJson(3)} END AS sr,
    CASE WHEN e.away_sds_id IS NULL THEN -1 ELSE ${live("e.away_sds_id", "e.away_device_id")} END AS aw,
    CASE WHEN e.away_sds_id IS NULL THEN 0 ELSE e.away_since_ms > ?4 END AS ar
  FROM (
    SELECT volume_id, idx FROM extent WHERE secondary_sds_id IS NULL OR target_sds_id IS NOT NULL OR away_sds_id IS NOT NULL
    UNION SELECT volume_id, idx FROM extent WHERE primary_sds_id ${inJson(5)}
    UNION SELECT volume_id, idx FROM extent WHERE secondary_sds_id ${inJson(5)}
    UNION SELECT volume_id, idx FROM extent WHERE (primary_sds_id ${inJson(6)} OR secondary_sds_id ${inJson(6)})
      AND (${keyOf("primary_sds_id", "primary_device_id")} ${inJson(7)} OR ${keyOf("primary_sds_id", "secondary_device_id")} ${inJson(7)}
        OR ${keyOf("secondary_sds_id", "primary_device_id")} ${inJson(7)} OR ${keyOf("secondary_sds_id", "secondary_device_id")} ${inJson(7)})
  ) k CROSS JOIN extent e ON e.volume_id = k.volume_id AND e.idx = k.idx JOIN vtree v ON v.owner_id = e.volume_id
  WHERE e.target_sds_id IS NULL
) GROUP BY pool_id, eb, ps, ss, pr, sr, aw, ar`;

interface GroupRow {
  poolId: string;
  extentBytes: number;
  ps: number;
  ss: number;
  pr: number;
  sr: number;
  aw: number;
  ar: number;
  n: number;
}

const asLive = (x: number): CopyLive => (x === 2 ? 2 : x === 1 ? 1 : 0);

export interface AttentionGroups {
  groups: ExtentGroup[];
  copying: PlannedExtent[];
}

/**
 * The attention extents of every pool as groups plus the copying ones, for the liveness in `sds`
 * at `nowMs` with the grace period `graceMs`.
 */
export function loadAttentionGroups(ctx: MdmContext, sds: readonly SdsView[], nowMs: number, graceMs: number): AttentionGroups {
  const up: string[] = [];
  const down: string[] = [];
  const removing: string[] = [];
  const disconnected: string[] = [];
  const withFailed: string[] = [];
  const failed: string[] = [];
  for (const s of sds) {
    if (s.removing) removing.push(s.sdsId);
    if (!s.connected) disconnected.push(s.sdsId);
    let anyFailed = false;
    for (const d of s.devices) {
      if (d.failed) {
        anyFailed = true;
        if (s.connected) failed.push(key(s.sdsId, d.deviceId));
      } else (s.connected ? up : down).push(key(s.sdsId, d.deviceId));
    }
    if (anyFailed && s.connected) withFailed.push(s.sdsId);
  }
  const rows = ctx.store.sqlite
    .query<GroupRow, [string, string, string, number, string, string, string]>(GROUPS_SQL)
    .all(JSON.stringify(up), JSON.stringify(down), JSON.stringify(removing), nowMs - graceMs, JSON.stringify(disconnected), JSON.stringify(withFailed), JSON.stringify(failed));
  const groups = rows.map(
    (r): ExtentGroup => ({
      poolId: r.poolId,
      extentBytes: r.extentBytes,
      n: r.n,
      primary: asLive(r.ps),
      secondary: r.ss === -1 ? null : asLive(r.ss),
      primaryRemoving: r.pr === 1,
      secondaryRemoving: r.sr === 1,
      away: r.aw === -1 ? null : asLive(r.aw),
      awayRecent: r.ar === 1,
    }),
  );
  return { groups, copying: loadCopyingExtents(ctx) };
}
