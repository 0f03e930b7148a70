// When the recovery step runs (main.ts's Limits.recoveryTickMs timer). A step that is cheap runs
// at every tick, as always. A dear one (at least PACE_FROM_MS: every extent of many down SDSs is
// loaded and planned each step; 4-5 s at 100 of 1,000 SDSs down and 100,000 volumes) left the MDM
// no time between steps for heartbeats: beats queued, more nodes looked down, the steps grew and
// the MDM stood still for a minute. While steps are dear, the next one waits until its cost /
// SHARE has passed since the last one ended (the step takes at most SHARE of a core), unless the
// cluster changed in a way the step must answer at once: an SDS's connection state (a failover
// of every extent it was primary of) or a device's failure (the signature below). What waits is
// what is driven by time or by the step's own progress: the grace period's end, copies that
// finished (their installs are done by the heartbeats; the next copies start at the next step),
// an operator's drain or removal.
//
// Invariants: a cheap step is never delayed; a signature change runs the step at the next tick;
// so does a step whose cap (MAX_EXTENT_CHANGES_PER_TICK, fewer under etcd) left membership repairs
// (failovers: IO waits for them) for later, or whose worklist slice left failover candidates of the
// first pass after a loss unexamined (recovery_worklist.ts; main.ts passes both as repairsLeft); only copy starts and time-driven decisions wait; the
// wait after a step is at most its own cost / SHARE.

/** computations cheaper than this are never paced (this step, the observe step's recovery figures) */
export const PACE_FROM_MS = 50;
/** the most of a core dear steps take (between two of them the MDM answers what queued) */
export const SHARE = 0.5;

/** How long after a computation that cost `costMs` the next waits to spend at most `share` of a core (0: cheap, no wait). */
export function pacedWaitMs(costMs: number, share: number): number {
  return costMs >= PACE_FROM_MS ? costMs / share : 0;
}

export class RecoveryPacer {
  private lastCostMs = 0;
  private lastEndMs = -Infinity;
  private lastSignature: string | null = null;
  /** steps left out because the last one was dear and nothing urgent changed (metrics, bench) */
  skipped = 0;

  /** Whether the step runs at this tick; `signature`: the cluster's state now (taken before the step). */
  due(nowMs: number, signature: string): boolean {
    const waitMs = pacedWaitMs(this.lastCostMs, SHARE);
    if (waitMs === 0 || signature !== this.lastSignature || nowMs - this.lastEndMs >= waitMs) return true;
    this.skipped++;
    return false;
  }

  /**
   * A step ran from startMs for costMs, answering the state `signature` (taken before it began:
   * an SDS that went down while a long step ran is a change the next tick answers); repairsLeft:
   * membership repairs its cap left for later (then the next tick runs it at once).
   */
  ran(startMs: number, costMs: number, signature: string, repairsLeft = 0): void {
    // failovers and dropped copies the step cap left out run at the next tick, dear or not
    this.lastCostMs = repairsLeft > 0 ? 0 : costMs;
    this.lastEndMs = startMs + costMs;
    this.lastSignature = signature;
  }
}
