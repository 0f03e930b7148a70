// The pools' recovery figures for the observe step's alert rules and for /metrics scrapes:
// recoveryStatus reads every extent needing attention (every copy of every down SDS). At rest
// that is a few ms, computed every observe step; at 100,000 volumes with 100 of 1,000 SDSs down
// it was 2.3-3.0 s, and once a second that alone asked more than a core of the MDM, so beats
// queued and more nodes looked down. A computation that cost C ms (at least PACE_FROM_MS) is
// reused until C / SHARE ms have passed: the figures then spend at most SHARE of a core, and
// alerts about rebuild state lag by that much (25 s for a 2.5 s computation), never more than
// a computation's own cost allows. Below PACE_FROM_MS every observe step computes them afresh (a
// scrape may take the last step's, at most two steps old).
// At rest (figures that show no recovery work in any pool) they are reused for as long as nothing
// they are computed from changed: no extent, device state, SDS or pool row (observe_cache.ts's
// stamp) and no SDS's connection state (health.sdsStatesSignature). Without work the figures do
// not depend on the clock (no grace period runs, no copy progresses), so an idle cluster's step
// computes them once (at 1,000 SDSs: ~7 ms a second before).

import type { RebuildStatus } from "../../proto/powerflex_api.ts";
import type { MdmContext } from "../core/context.ts";
import { Limits } from "../../proto/limits.ts";
import { recoveryStatus } from "../recovery/recovery.ts";
import { pacedWaitMs } from "../recovery/tick_pacing.ts";
import { observeStamp } from "./observe_cache.ts";

/** computations cheaper than this are never reused (the recovery step's threshold too) */
export { PACE_FROM_MS } from "../recovery/tick_pacing.ts";
/** the most of a core the observe step's recovery figures take while they are dear */
export const SHARE = 0.1;
/** a scrape reuses the step's figures this long even while they are cheap (two steps) */
const SCRAPE_REUSE_MS = 2 * Limits.observeTickMs;

/** The figures for the alert rules: fresh, or the last ones while their cost says to wait. */
export function observedRecoveryStatus(ctx: MdmContext): Map<string, RebuildStatus> {
  const now = ctx.clock();
  const c = ctx.observe.recoveryCache;
  const stamp = observeStamp(ctx);
  const key = stamp === null ? null : `${stamp}|${ctx.health.sdsStatesSignature()}`;
  if (c !== null && c.quietKey !== null && c.quietKey === key) return c.status;
  // a clock stepped back (now < atMs) counts as expired: the figures are computed again
  if (c !== null && now >= c.atMs && now - c.atMs < pacedWaitMs(c.costMs, SHARE)) return c.status;
  const t0 = performance.now();
  const status = recoveryStatus(ctx);
  ctx.observe.recoveryCache = { atMs: now, status, costMs: performance.now() - t0, quietKey: [...status.values()].every(isQuiet) ? key : null };
  return status;
}

/** A pool with no recovery work of any kind: nothing degraded, waiting, pending, running or copied. */
export function isQuiet(s: RebuildStatus): boolean {
  return (
    s.storagePoolState === "Normal" &&
    s.rebuildState === "Idle" &&
    !s.rebuildStalled &&
    s.numOfDegradedExtents === 0 &&
    s.numOfUnavailableExtents === 0 &&
    s.numOfWaitingExtents === 0 &&
    s.numOfPendingRebuildExtents === 0 &&
    s.numOfActiveRebuildExtents === 0 &&
    s.numOfActiveResyncExtents === 0 &&
    s.numOfActiveMoveExtents === 0 &&
    s.pendingRebalanceCapacityInKb === 0 &&
    s.copiedInKb === 0 &&
    s.remainingInKb === 0 &&
    s.rebuildRateInKbps === 0 &&
    s.noProgressSeconds === 0
  );
}

/** The figures for a /metrics scrape: the observe step's while fresh or paced, else computed (and kept). */
export function scrapedRecoveryStatus(ctx: MdmContext): Map<string, RebuildStatus> {
  const c = ctx.observe.recoveryCache;
  const age = ctx.clock() - (c?.atMs ?? 0);
  if (c !== null && age >= 0 && age <= SCRAPE_REUSE_MS) return c.status;
  return observedRecoveryStatus(ctx);
}
