// In-memory liveness of SDSs and SDCs: the time of each one's last heartbeat (or join) and the
// mapVersion it says it applies. Connected means a heartbeat within Limits.heartbeatTimeoutMs of
// the injected clock. Not persisted on purpose: after an MDM restart everything is Disconnected
// until it checks in again, which is the truth the MDM can vouch for.

import { Limits } from "../proto/limits.ts";

export type ConnectionState = "Connected" | "Disconnected";

interface Seen {
  lastHeartbeatMs: number;
  appliedMapVersion: number;
}

export class HealthTracker {
  private readonly sds = new Map<string, Seen>();
  private readonly sdc = new Map<string, Seen>();

  constructor(
    private readonly clock: () => number,
    private readonly timeoutMs: number = Limits.heartbeatTimeoutMs,
  ) {}

  sdsSeen(sdsId: string, appliedMapVersion: number): void {
    this.sds.set(sdsId, { lastHeartbeatMs: this.clock(), appliedMapVersion });
  }

  sdcSeen(sdcId: string, appliedMapVersion: number): void {
    this.sdc.set(sdcId, { lastHeartbeatMs: this.clock(), appliedMapVersion });
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
