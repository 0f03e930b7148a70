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
  private alerted = new Set<string>();

  constructor(readonly config: RecoveryConfig) {
    this.progress = new RebuildProgress(config.stallTimeoutMs);
  }

  /** Log each alert once while its condition lasts. */
  noteAlerts(alerts: readonly PlanAlert[]): void {
    const MAX_LINES = 10;
    const now = new Set<string>();
    let fresh = 0;
    for (const a of alerts) {
      now.add(a.key);
      if (this.alerted.has(a.key)) continue;
      if (++fresh > MAX_LINES) continue;
      if (a.level === "error") consola.error(`mdm: ${a.message}`);
      else consola.warn(`mdm: ${a.message}`);
    }
    if (fresh > MAX_LINES) consola.warn(`mdm: … and ${fresh - MAX_LINES} more recovery alerts (${alerts.filter((a) => a.level === "error").length} errors in all)`);
    this.alerted = now;
  }
}
