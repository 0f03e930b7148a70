// A pool's recovery figures (RebuildStatus, src/proto/powerflex_api.ts) from the extents that
// need attention, copy liveness, the running copies' progress and the drain work left. Pure.
// Invariants: every extent counts in at most one of unavailable / waiting / pending / active
// rebuild; remaining bytes are never negative; percent is 100 when nothing is left; the ETA is
// null while the rate is 0 and work remains.

import type { RebuildStatus } from "../../proto/powerflex_api.ts";
import type { CopyRef, PlannedExtent } from "./recovery_model.ts";
import { poolHealthOf } from "./rebuild_planner.ts";
import type { PoolProgress } from "./rebuild_progress.ts";

export interface SummaryInput {
  poolId: string;
  nowMs: number;
  gracePeriodMs: number;
  extents: readonly PlannedExtent[];
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

const kb = (bytes: number) => Math.floor(bytes / 1024);

export function summarizePool(input: SummaryInput): RebuildStatus & { hasWork: boolean } {
  const mine = input.extents.filter((e) => e.poolId === input.poolId);
  let degraded = 0;
  let degradedBytes = 0;
  let unavailable = 0;
  let unavailableBytes = 0;
  let waiting = 0;
  let pending = 0;
  let pendingBytes = 0;
  let rebuilds = 0;
  let resyncs = 0;
  let rebuildBytes = 0;
  let moves = 0;
  let moveBytes = 0;
  let movesOffRemoving = 0;
  let copied = 0;
  let remaining = 0;
  const extentBytes = input.extentBytes;
  for (const e of mine) {
    const ups = e.inSync.filter(input.isUp).length;
    if (ups < 2) {
      degraded++;
      degradedBytes += e.extentBytes;
    }
    if (e.target) {
      const p = input.runningCopy(e);
      const total = p?.totalBytes ?? e.extentBytes;
      const done = Math.min(total, p?.copiedBytes ?? 0);
      copied += done;
      remaining += total - done;
      if (e.target.replacesSdsId === null) {
        if (e.target.mode === "resync") resyncs++;
        else rebuilds++;
        rebuildBytes += e.extentBytes;
      } else {
        moves++;
        moveBytes += e.extentBytes;
        if (input.removing(e.target.replacesSdsId)) movesOffRemoving++;
      }
      continue;
    }
    if (ups === 0) {
      unavailable++;
      unavailableBytes += e.extentBytes;
    } else if (ups < 2) {
      const away = e.away;
      // a copy whose SDS is away within the grace period (or just went: the next planner step
      // keeps it away) may come back and resync
      const justLeft = e.inSync.some((c) => input.isDown(c) && !input.removing(c.sdsId));
      if (justLeft || (away && !input.isUp(away) && input.nowMs - away.sinceMs < input.gracePeriodMs)) {
        waiting++;
      } else {
        pending++;
        pendingBytes += e.extentBytes;
        remaining += e.extentBytes;
      }
    }
  }
  const pendingDrain = Math.max(0, input.drainCopies - movesOffRemoving);
  remaining += pendingDrain * extentBytes;
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
    storagePoolState: poolHealthOf(mine, input.isUp),
    rebuildState,
    rebuildStalled: hasWork && input.progress.stalled,
    numOfDegradedExtents: degraded,
    degradedCapacityInKb: kb(degradedBytes),
    numOfUnavailableExtents: unavailable,
    unavailableCapacityInKb: kb(unavailableBytes),
    numOfWaitingExtents: waiting,
    numOfPendingRebuildExtents: pending,
    pendingRebuildCapacityInKb: kb(pendingBytes),
    numOfActiveRebuildExtents: rebuilds + resyncs,
    numOfActiveResyncExtents: resyncs,
    activeRebuildCapacityInKb: kb(rebuildBytes),
    numOfActiveMoveExtents: moves,
    activeRebalanceCapacityInKb: kb(moveBytes),
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
