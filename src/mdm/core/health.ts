// In-memory liveness of SDSs and SDCs: the time of each one's last heartbeat (or join) and the
// mapVersion it says it applies. Connected means a heartbeat within the heartbeat timeout
// (MdmOptions.heartbeatTimeoutMs, default Limits.heartbeatTimeoutMs) of the injected clock; the
// moment it stops being Connected is lastHeartbeat + timeout, exactly. Not persisted: on start
// the MDM seeds every known SDS and SDC as seen "now" (seedAll), so after an MDM restart nobody
// is declared down before a full timeout has passed, during which SDSs and SDCs keep serving
// IO on their cached maps and check in again.

import { Limits } from "../../proto/limits.ts";

export type ConnectionState = "Connected" | "Disconnected";

interface Seen {
  lastHeartbeatMs: number;
  appliedMapVersion: number;
  /** false while only seeded at MDM start: presumed alive, not yet heard from */
  heard: boolean;
}

export class HealthTracker {
  private readonly sds = new Map<string, Seen>();
  private readonly sdc = new Map<string, Seen>();

  constructor(
    private readonly clock: () => number,
    private readonly timeoutMs: number = Limits.heartbeatTimeoutMs,
  ) {}

  get heartbeatTimeoutMs(): number {
    return this.timeoutMs;
  }

  /** MDM start: every SDS and SDC known to the database counts as seen now. */
  seedAll(sdsIds: readonly string[], sdcIds: readonly string[]): void {
    const now = this.clock();
    for (const id of sdsIds) if (!this.sds.has(id)) this.sds.set(id, { lastHeartbeatMs: now, appliedMapVersion: 0, heard: false });
    for (const id of sdcIds) if (!this.sdc.has(id)) this.sdc.set(id, { lastHeartbeatMs: now, appliedMapVersion: 0, heard: false });
  }

  /**
   * Connected and heard from since this MDM started. Only such an SDS counts as back (its away
   * copies may resync) or takes new copies; a seeded one is merely not declared down yet.
   */
  sdsConfirmed(sdsId: string): boolean {
    return this.sdsConnected(sdsId) && (this.sds.get(sdsId)?.heard ?? false);
  }

  /** When the SDS stopped being Connected, or null while it is Connected. */
  sdsDownSinceMs(sdsId: string): number | null {
    const seen = this.sds.get(sdsId);
    if (!seen) return 0;
    const down = seen.lastHeartbeatMs + this.timeoutMs;
    return this.clock() >= down ? down : null;
  }

  sdsSeen(sdsId: string, appliedMapVersion: number): void {
    this.sds.set(sdsId, { lastHeartbeatMs: this.clock(), appliedMapVersion, heard: true });
  }

  sdcSeen(sdcId: string, appliedMapVersion: number): void {
    this.sdc.set(sdcId, { lastHeartbeatMs: this.clock(), appliedMapVersion, heard: true });
  }

  forgetSds(sdsId: string): void {
    this.sds.delete(sdsId);
  }

  forgetSdc(sdcId: string): void {
    this.sdc.delete(sdcId);
  }

  sdsState(sdsId: string): ConnectionState {
    return this.stateOf(this.sds.get(sdsId));
  }

  sdcState(sdcId: string): ConnectionState {
    return this.stateOf(this.sdc.get(sdcId));
  }

  sdsConnected(sdsId: string): boolean {
    return this.sdsState(sdsId) === "Connected";
  }

  /** Map version the SDS last said it applies (0: not heard since this MDM started). */
  sdsAppliedMapVersion(sdsId: string): number {
    return this.sds.get(sdsId)?.appliedMapVersion ?? 0;
  }

  sdsLastHeartbeatMs(sdsId: string): number | null {
    return this.sds.get(sdsId)?.lastHeartbeatMs ?? null;
  }

  sdcLastHeartbeatMs(sdcId: string): number | null {
    return this.sdc.get(sdcId)?.lastHeartbeatMs ?? null;
  }

  private stateOf(seen: Seen | undefined): ConnectionState {
    if (!seen) return "Disconnected";
    return this.clock() - seen.lastHeartbeatMs < this.timeoutMs ? "Connected" : "Disconnected";
  }
}
