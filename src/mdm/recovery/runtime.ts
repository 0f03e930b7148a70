// The recovery settings of a running MDM (heartbeat timeout, lease, grace period, stall timeout)
// and its recovery state that is not in the database (copy progress, alerts already logged).
// It imports nothing of the MDM's context: the context holds it, and recovery.ts works on both.
// Invariant: the lease handed to SDSs is strictly shorter than the heartbeat timeout and longer
// than the heartbeat interval.

import consola from "consola";
import { assert, PfError } from "../../proto/errors.ts";
import { Limits } from "../../proto/limits.ts";
import type { PlanAlert } from "./rebuild_planner.ts";
import { RebuildProgress } from "./rebuild_progress.ts";
import { RecoveryWorklist } from "./recovery_worklist.ts";

export interface RecoveryOptions {
  /** an SDS/SDC silent this long is Disconnected (default Limits.heartbeatTimeoutMs) */
  heartbeatTimeoutMs?: number | undefined;
  /** a lost SDS back within this resyncs; later its copies are rebuilt elsewhere */
  rebuildGraceMs?: number | undefined;
  /** recovery work with no progress this long raises the stall alert */
  stallTimeoutMs?: number | undefined;
}

export interface RecoveryConfig {
  heartbeatTimeoutMs: number;
  /** lease handed to SDSs in join/heartbeat answers: floor(0.8 x timeout), never above Limits.sdsLeaseMs */
  leaseMs: number;
  rebuildGraceMs: number;
  stallTimeoutMs: number;
  maxConcurrentPerSds: number;
}

export function recoveryConfigOf(opts: RecoveryOptions = {}): RecoveryConfig {
  const heartbeatTimeoutMs = opts.heartbeatTimeoutMs ?? Limits.heartbeatTimeoutMs;
  const rebuildGraceMs = opts.rebuildGraceMs ?? Limits.rebuildGraceMs;
  const stallTimeoutMs = opts.stallTimeoutMs ?? Limits.rebuildStallTimeoutMs;
  for (const [name, v] of [
    ["heartbeat timeout", heartbeatTimeoutMs],
    ["rebuild grace period", rebuildGraceMs],
    ["stall timeout", stallTimeoutMs],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new PfError("BAD_REQUEST", `the ${name} must be a whole number of ms >= 0 (got ${v})`);
  }
  const leaseMs = Math.min(Limits.sdsLeaseMs, Math.floor(heartbeatTimeoutMs * Limits.leaseToTimeoutRatio));
  // the lease must outlast a heartbeat interval (else a healthy SDS stops serving between two
  // heartbeats) and end before the timeout (else the MDM could act while the SDS still serves)
  if (leaseMs <= Limits.heartbeatIntervalMs) {
    throw new PfError(
      "BAD_REQUEST",
      `heartbeat timeout ${heartbeatTimeoutMs} ms is too short: the SDS lease (${Limits.leaseToTimeoutRatio} x timeout = ${leaseMs} ms) must exceed the ${Limits.heartbeatIntervalMs} ms heartbeat interval`,
    );
  }
  assert(leaseMs < heartbeatTimeoutMs, "the SDS lease is shorter than the heartbeat timeout");
  return { heartbeatTimeoutMs, leaseMs, rebuildGraceMs, stallTimeoutMs, maxConcurrentPerSds: Limits.maxConcurrentRebuildsPerSds };
}

/** Recovery state of a running MDM that is not in the database (progress, logged alerts). */
export class RecoveryRuntime {
  readonly progress: RebuildProgress;
  /** which attention extents the next recovery step loads and plans (recovery_worklist.ts) */
  readonly worklist = new RecoveryWorklist();
  /** pools that had attention extents in the last whole pass of the worklist and in the one running */
  poolsWithWork: { last: Set<string>; running: Set<string> } = { last: new Set(), running: new Set() };
  private alerted = new Set<string>();
  private alertedLastPass = new Set<string>();

  constructor(readonly config: RecoveryConfig) {
    this.progress = new RebuildProgress(config.stallTimeoutMs);
  }

  /**
   * Log each alert once while its condition lasts. `slice`: the alerts come from a slice of the
   * attention extents (recovery_worklist.ts); an alert of the last whole pass or of this one is not
   * logged again, and a pass drops what the pass before it had and it has not.
   */
  noteAlerts(alerts: readonly PlanAlert[], slice?: { firstOfPass: boolean }): void {
    const MAX_LINES = 10;
    if (slice?.firstOfPass) {
      this.alertedLastPass = this.alerted;
      this.alerted = new Set();
    }
    const now = new Set<string>();
    let fresh = 0;
    for (const a of alerts) {
      now.add(a.key);
      if (this.alerted.has(a.key) || (slice !== undefined && this.alertedLastPass.has(a.key))) continue;
      if (++fresh > MAX_LINES) continue;
      if (a.level === "error") consola.error(`mdm: ${a.message}`);
      else consola.warn(`mdm: ${a.message}`);
    }
    if (fresh > MAX_LINES) consola.warn(`mdm: … and ${fresh - MAX_LINES} more recovery alerts (${alerts.filter((a) => a.level === "error").length} errors in all)`);
    if (slice === undefined) {
      this.alerted = now;
      this.alertedLastPass = new Set();
    } else for (const k of now) this.alerted.add(k);
  }
}
