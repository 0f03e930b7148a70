// A pool's recovery figures (RebuildStatus, src/proto/powerflex_api.ts) from the extents that
// need attention, copy liveness, the running copies' progress and the drain work left. Pure.
// Two ways in, one count: summarizePool takes an object per extent (the recovery step's own
// extents); summarizeGroups takes the extents without a running copy as groups of like extents
// (counted by sqlite: recovery_groups.ts) plus the few copying extents one by one (their progress).
// Invariants: every extent counts in at most one of unavailable / waiting / pending / active
// rebuild; remaining bytes are never negative; percent is 100 when nothing is left; the ETA is
// null while the rate is 0 and work remains.

import type { RebuildStatus } from "../../proto/powerflex_api.ts";
import type { CopyRef, PlannedExtent } from "./recovery_model.ts";
import type { PoolHealth } from "./rebuild_planner.ts";
import type { PoolProgress } from "./rebuild_progress.ts";

/** What the figures take besides the extents. */
export interface SummaryContext {
  poolId: string;
  nowMs: number;
  gracePeriodMs: number;
  isUp: (c: CopyRef) => boolean;
  /** the copy's SDS is disconnected (its data may come back), not a failed device */
  isDown: (c: CopyRef) => boolean;
  removing: (sdsId: string) => boolean;
  /** progress of the copy running on an extent at its epoch, if reported */
  runningCopy: (e: PlannedExtent) => { copiedBytes: number; totalBytes: number } | undefined;
  /** in-sync copies held by SDSs being removed in this pool */
  drainCopies: number;
  /** SDSs of this pool being removed (Draining until they are gone) */
  removingSds: number;
  /** the pool's extent size (drain work is counted in copies) */
  extentBytes: number;
  progress: PoolProgress;
}

export interface SummaryInput extends SummaryContext {
  extents: readonly PlannedExtent[];
}

/** Liveness of a copy as the figures see it: up, down (its SDS disconnected), dead (failed or unknown device). */
export const CopyLive = { Dead: 0, Down: 1, Up: 2 } as const;
export type CopyLive = (typeof CopyLive)[keyof typeof CopyLive];

/**
 * `n` extents without a running copy that the figures cannot tell apart: same pool and extent
 * size, same liveness of each in-sync copy and of the away copy, same removal state of the
 * in-sync copies' SDSs, same side of the grace period for the away copy.
 */
export interface ExtentGroup {
  poolId: string;
  extentBytes: number;
  n: number;
  primary: CopyLive;
  /** null: no secondary (one in-sync copy) */
  secondary: CopyLive | null;
  primaryRemoving: boolean;
  secondaryRemoving: boolean;
  /** null: no away copy */
  away: CopyLive | null;
  /** nowMs - away.sinceMs < gracePeriodMs */
  awayRecent: boolean;
}

export interface GroupsInput extends SummaryContext {
  groups: readonly ExtentGroup[];
  /** extents with a running copy (any pool): counted one by one for their progress */
  copying: readonly PlannedExtent[];
}

const kb = (bytes: number) => Math.floor(bytes / 1024);

interface Counts {
  health: PoolHealth;
  degraded: number;
  degradedBytes: number;
  unavailable: number;
  unavailableBytes: number;
  waiting: number;
  pending: number;
  pendingBytes: number;
  rebuilds: number;
  resyncs: number;
  rebuildBytes: number;
  moves: number;
  moveBytes: number;
  movesOffRemoving: number;
  copied: number;
  remaining: number;
}

const zero = (): Counts => ({
  health: "Normal",
  degraded: 0,
  degradedBytes: 0,
  unavailable: 0,
  unavailableBytes: 0,
  waiting: 0,
  pending: 0,
  pendingBytes: 0,
  rebuilds: 0,
  resyncs: 0,
  rebuildBytes: 0,
  moves: 0,
  moveBytes: 0,
  movesOffRemoving: 0,
  copied: 0,
  remaining: 0,
});

/** the pool's health with more extents of `ups` up copies out of `inSync` each: Failed once an extent has none up, Degraded once one has fewer than 2 */
function healthWith(c: Counts, inSync: number, ups: number): void {
  if (ups === 0) c.health = "Failed";
  else if (c.health === "Normal" && (inSync < 2 || ups < inSync)) c.health = "Degraded";
}

function countExtent(c: Counts, e: PlannedExtent, input: SummaryContext): void {
  const ups = e.inSync.filter(input.isUp).length;
  healthWith(c, e.inSync.length, ups);
  if (ups < 2) {
    c.degraded++;
    c.degradedBytes += e.extentBytes;
  }
  if (e.target) {
    const p = input.runningCopy(e);
    const total = p?.totalBytes ?? e.extentBytes;
    const done = Math.min(total, p?.copiedBytes ?? 0);
    c.copied += done;
    c.remaining += total - done;
    if (e.target.replacesSdsId === null) {
      if (e.target.mode === "resync") c.resyncs++;
      else c.rebuilds++;
      c.rebuildBytes += e.extentBytes;
    } else {
      c.moves++;
      c.moveBytes += e.extentBytes;
      if (input.removing(e.target.replacesSdsId)) c.movesOffRemoving++;
    }
    return;
  }
  if (ups === 0) {
    c.unavailable++;
    c.unavailableBytes += e.extentBytes;
  } else if (ups < 2) {
    const away = e.away;
    // a copy whose SDS is away within the grace period (or just went: the next planner step
    // keeps it away) may come back and resync
    const justLeft = e.inSync.some((x) => input.isDown(x) && !input.removing(x.sdsId));
    if (justLeft || (away && !input.isUp(away) && input.nowMs - away.sinceMs < input.gracePeriodMs)) {
      c.waiting++;
    } else {
      c.pending++;
      c.pendingBytes += e.extentBytes;
      c.remaining += e.extentBytes;
    }
  }
}

/** countExtent for `g.n` like extents without a running copy at once */
function countGroup(c: Counts, g: ExtentGroup): void {
  const n = g.n;
  const bytes = n * g.extentBytes;
  const inSync = g.secondary === null ? 1 : 2;
  const ups = (g.primary === CopyLive.Up ? 1 : 0) + (g.secondary === CopyLive.Up ? 1 : 0);
  healthWith(c, inSync, ups);
  if (ups < 2) {
    c.degraded += n;
    c.degradedBytes += bytes;
  }
  if (ups === 0) {
    c.unavailable += n;
    c.unavailableBytes += bytes;
  } else if (ups < 2) {
    const justLeft = (g.primary === CopyLive.Down && !g.primaryRemoving) || (g.secondary === CopyLive.Down && !g.secondaryRemoving);
    if (justLeft || (g.away !== null && g.away !== CopyLive.Up && g.awayRecent)) {
      c.waiting += n;
    } else {
      c.pending += n;
      c.pendingBytes += bytes;
      c.remaining += bytes;
    }
  }
}

export function summarizePool(input: SummaryInput): RebuildStatus & { hasWork: boolean } {
  const c = zero();
  for (const e of input.extents) if (e.poolId === input.poolId) countExtent(c, e, input);
  return figures(c, input);
}

/** The same figures as summarizePool over the same extents, from groups of like extents. */
export function summarizeGroups(input: GroupsInput): RebuildStatus & { hasWork: boolean } {
  const c = zero();
  for (const e of input.copying) if (e.poolId === input.poolId) countExtent(c, e, input);
  for (const g of input.groups) if (g.poolId === input.poolId) countGroup(c, g);
  return figures(c, input);
}

function figures(c: Counts, input: SummaryContext): RebuildStatus & { hasWork: boolean } {
  const { rebuilds, resyncs, moves, pending, waiting, movesOffRemoving, copied } = c;
  const extentBytes = input.extentBytes;
  const pendingDrain = Math.max(0, input.drainCopies - movesOffRemoving);
  const remaining = c.remaining + pendingDrain * extentBytes;
  const done = input.progress.finishedBytes + copied;
  const rate = input.progress.rateBytesPerSec;
  const hasWork = rebuilds + resyncs + moves + pending + pendingDrain > 0;
  const rebuildState: RebuildStatus["rebuildState"] =
    rebuilds + resyncs + pending > 0
      ? "Rebuilding"
      : pendingDrain > 0 || movesOffRemoving > 0 || input.removingSds > 0
        ? "Draining"
        : moves > 0
          ? "Rebalancing"
          : waiting > 0
            ? "WaitingForReturn"
            : "Idle";
  return {
    storagePoolId: input.poolId,
    storagePoolState: c.health,
    rebuildState,
    rebuildStalled: hasWork && input.progress.stalled,
    numOfDegradedExtents: c.degraded,
    degradedCapacityInKb: kb(c.degradedBytes),
    numOfUnavailableExtents: c.unavailable,
    unavailableCapacityInKb: kb(c.unavailableBytes),
    numOfWaitingExtents: waiting,
    numOfPendingRebuildExtents: pending,
    pendingRebuildCapacityInKb: kb(c.pendingBytes),
    numOfActiveRebuildExtents: rebuilds + resyncs,
    numOfActiveResyncExtents: resyncs,
    activeRebuildCapacityInKb: kb(c.rebuildBytes),
    numOfActiveMoveExtents: moves,
    activeRebalanceCapacityInKb: kb(c.moveBytes),
    pendingRebalanceCapacityInKb: kb(pendingDrain * extentBytes),
    copiedInKb: kb(copied),
    remainingInKb: kb(remaining),
    rebuildProgressPercent: remaining === 0 ? 100 : Math.floor((1000 * done) / (done + remaining)) / 10,
    rebuildRateInKbps: kb(rate),
    rebuildEtaSeconds: remaining === 0 ? 0 : rate > 0 ? Math.ceil(remaining / rate) : null,
    noProgressSeconds: hasWork ? Math.floor(input.progress.noProgressMs / 1000) : 0,
    hasWork,
  };
}
