// The extents that need attention, as the pool recovery figures want them (recoveryStatus,
// recovery_summary.ts summarizeGroups): the ones without a running copy counted by sqlite in
// groups of like extents (pool, extent size, the SDSs of the primary, secondary and away copies,
// whether each copy is on a known device of its SDS that has not failed, away copy within its
// grace period; up / down / dead and removal are then judged per group here), the few with a
// running copy read one by one for their progress. The same extents as loadAttentionExtents (recovery_view.ts): the attention
// index, every copy of a disconnected SDS, a connected SDS's copies on its failed devices.
// Why: with 100 of 1,000 SDSs down that is 10^5 extents; an object per extent held the loop
// 14-48 s in the observe step (2.3-3.0 s a computation), which declared more SDSs down. The
// groups number about the SDS pairs involved (3,527 with 100 of 1,000 down), not the extents;
// what is left is sqlite finding and reading the rows (docs/design.md "MDM at scale", item 5).

import type { MdmContext } from "../core/context.ts";
import type { CopyLive, ExtentGroup } from "./recovery_summary.ts";
import type { PlannedExtent } from "./recovery_model.ts";
import type { SdsView } from "./target_placement.ts";
import { ATTENTION_WHERE, loadCopyingExtents } from "./recovery_view.ts";

/** a copy's key in the liveness sets: SDS id, unit separator, device id */
const key = (sdsId: string, deviceId: string) => `${sdsId}\u001f${deviceId}`;
const keyOf = (sds: string, dev: string) => `(${sds} || char(31) || ${dev})`;
const inJson = (n: number) => `IN (SELECT value FROM json_each(?${n}))`;
/** 1 when the copy is on a known device of its SDS that has not failed, else 0 */
const good = (sds: string, dev: string) => `${keyOf(sds, dev)} ${inJson(1)}`;

// ?1 the keys of every device that has not failed (of its SDS), ?2 now - grace (ms),
// ?3 disconnected SDS ids, ?4 connected SDSs with a failed device, ?5 the keys of those SDSs'
// failed devices (an extent on such an SDS with a copy on one of ITS failed devices, as there).
// The UNION of keys keeps each extent once (an extent of two down SDSs is on both lists) and
// uses an index per part (the attention index is partial, on exactly its first condition); the
// CROSS JOIN makes sqlite read the extent rows by key from that list (as an IN over the whole
// table it scanned all 1.6 M rows: 0.5 s with one SDS down).
const GROUPS_SQL = `
SELECT pool_id AS poolId, eb AS extentBytes, ps, pg, ss, sg, aws, ag, ar, COUNT(*) AS n FROM (
  SELECT v.pool_id, v.extent_bytes AS eb,
    e.primary_sds_id AS ps, ${good("e.primary_sds_id", "e.primary_device_id")} AS pg,
    e.secondary_sds_id AS ss, CASE WHEN e.secondary_sds_id IS NULL THEN 0 ELSE ${good("e.secondary_sds_id", "e.secondary_device_id")} END AS sg,
    e.away_sds_id AS aws, CASE WHEN e.away_sds_id IS NULL THEN 0 ELSE ${good("e.away_sds_id", "e.away_device_id")} END AS ag,
    CASE WHEN e.away_sds_id IS NULL THEN 0 ELSE e.away_since_ms > ?2 END AS ar
  FROM (
    SELECT volume_id, idx FROM extent WHERE ${ATTENTION_WHERE}
    UNION SELECT volume_id, idx FROM extent WHERE primary_sds_id ${inJson(3)}
    UNION SELECT volume_id, idx FROM extent WHERE secondary_sds_id ${inJson(3)}
    UNION SELECT volume_id, idx FROM extent WHERE (primary_sds_id ${inJson(4)} OR secondary_sds_id ${inJson(4)})
      AND (${keyOf("primary_sds_id", "primary_device_id")} ${inJson(5)} OR ${keyOf("primary_sds_id", "secondary_device_id")} ${inJson(5)}
        OR ${keyOf("secondary_sds_id", "primary_device_id")} ${inJson(5)} OR ${keyOf("secondary_sds_id", "secondary_device_id")} ${inJson(5)})
  ) k CROSS JOIN extent e ON e.volume_id = k.volume_id AND e.idx = k.idx JOIN vtree v ON v.owner_id = e.volume_id
  WHERE e.target_sds_id IS NULL
) GROUP BY pool_id, eb, ps, pg, ss, sg, aws, ag, ar`;

const ANY_ATTENTION_SQL = `SELECT 1 AS x FROM extent WHERE ${ATTENTION_WHERE} LIMIT 1`;

interface GroupRow {
  poolId: string;
  extentBytes: number;
  ps: string;
  pg: number;
  ss: string | null;
  sg: number;
  aws: string | null;
  ag: number;
  ar: number;
  n: number;
}

export interface AttentionGroups {
  groups: ExtentGroup[];
  copying: PlannedExtent[];
}

/**
 * The attention extents of every pool as groups plus the copying ones, for the liveness in `sds`
 * at `nowMs` with the grace period `graceMs`.
 */
export function loadAttentionGroups(ctx: MdmContext, sds: readonly SdsView[], nowMs: number, graceMs: number): AttentionGroups {
  const connected = new Map<string, boolean>();
  const removing = new Set<string>();
  const disconnected: string[] = [];
  const withFailed: string[] = [];
  const failed: string[] = [];
  for (const s of sds) {
    connected.set(s.sdsId, s.connected);
    if (s.removing) removing.add(s.sdsId);
    if (!s.connected) disconnected.push(s.sdsId);
    let anyFailed = false;
    for (const d of s.devices) {
      if (d.failed && s.connected) {
        anyFailed = true;
        failed.push(key(s.sdsId, d.deviceId));
      }
    }
    if (anyFailed) withFailed.push(s.sdsId);
  }
  // a healthy cluster (nothing disconnected or failed, the attention index empty): nothing to
  // count, and no device keys to build (8,000 at 1,000 SDSs: most of the call at rest)
  if (disconnected.length === 0 && withFailed.length === 0 && ctx.store.sqlite.query<{ x: number }, []>(ANY_ATTENTION_SQL).get() === null) {
    return { groups: [], copying: loadCopyingExtents(ctx) };
  }
  const good: string[] = [];
  for (const s of sds) for (const d of s.devices) if (!d.failed) good.push(key(s.sdsId, d.deviceId));
  // as copyStatus (recovery.ts): dead on a failed or unknown device, else up or down with its SDS
  const liveOf = (sdsId: string, isGood: number): CopyLive => (isGood !== 1 ? 0 : connected.get(sdsId) === true ? 2 : 1);
  const rows = ctx.store.sqlite
    .query<GroupRow, [string, number, string, string, string]>(GROUPS_SQL)
    .all(JSON.stringify(good), nowMs - graceMs, JSON.stringify(disconnected), JSON.stringify(withFailed), JSON.stringify(failed));
  const groups = rows.map(
    (r): ExtentGroup => ({
      poolId: r.poolId,
      extentBytes: r.extentBytes,
      n: r.n,
      primary: liveOf(r.ps, r.pg),
      secondary: r.ss === null ? null : liveOf(r.ss, r.sg),
      primaryRemoving: removing.has(r.ps),
      secondaryRemoving: r.ss !== null && removing.has(r.ss),
      away: r.aws === null ? null : liveOf(r.aws, r.ag),
      awayRecent: r.ar === 1,
    }),
  );
  return { groups, copying: loadCopyingExtents(ctx) };
}
