// In-memory liveness of SDSs and SDCs: the time of each one's last heartbeat (or join) and the
// mapVersion it says it applies. Connected means a heartbeat within the heartbeat timeout
// (MdmOptions.heartbeatTimeoutMs, default Limits.heartbeatTimeoutMs) of the injected clock; the
// moment it stops being Connected is lastHeartbeat + timeout, exactly. Not persisted: on start
// the MDM seeds every known SDS and SDC as seen "now" (seedAll), so after an MDM restart nobody
// is declared down before a full timeout has passed, during which SDSs and SDCs keep serving
// IO on their cached maps and check in again.
//
// It also keeps which nodes each map change concerned (noteMapChange), so that a heartbeat
// answer tells a node a newer mapVersion only when something it fetches changed since the
// version it applies (mapVersionFor): a volume created on 32 of 1,000 SDSs, or a mapping to one
// SDC, no longer sends every node to refetch its whole assignments or maps. A change without a
// scope concerns every node (the safe default); a new tracker (MDM start, HA takeover) knows
// nothing, so the first answer treats every change up to the current version as concerning all.
//
// A node may also wait for such a change (waitForMapChange, the cluster API's mapWatch long
// poll): an urgent change (one that takes access away: an unmap, a switch to ReadOnly) wakes the
// waiters it concerns, so it reaches the SDSs in a round trip instead of at their next heartbeat.
// Every other change reaches nodes by heartbeat as before: waking ~32 SDSs per volume create
// made their fetches crowd out heartbeats and REST under bulk creation (bench/mdm_scale.ts). A waiter is woken from inside the
// changing transaction, but what it resumes runs only after that synchronous transaction has
// committed (a rolled-back change costs one needless answer). At most one waiter per node.

import { Limits } from "../../proto/limits.ts";

export type ConnectionState = "Connected" | "Disconnected";

/** The nodes a map change concerns; a change without a scope concerns every SDS and SDC. */
export interface MapChangeScope {
  sds: Iterable<string>;
  sdc: Iterable<string>;
}

interface Seen {
  lastHeartbeatMs: number;
  appliedMapVersion: number;
  /** false while only seeded at MDM start: presumed alive, not yet heard from */
  heard: boolean;
}

export class HealthTracker {
  private readonly sds = new Map<string, Seen>();
  private readonly sdc = new Map<string, Seen>();
  /** version of the newest change that concerned every node; null: none seen by this tracker */
  private everyNodeChangedAt: number | null = null;
  /** version of the newest scoped change per node, when newer than everyNodeChangedAt */
  private readonly sdsChangedAt = new Map<string, number>();
  private readonly sdcChangedAt = new Map<string, number>();
  /** version of the newest urgent change (one that takes access away) for every node / per node */
  private everyNodeUrgentAt = 0;
  private readonly urgentAt = new Map<string, number>();
  /** nodes waiting for a map change that concerns them, by "sds:<id>" / "sdc:<id>" */
  private readonly waiters = new Map<string, () => void>();
  /** why a Failed device failed, as its SDS's beats say (or the join that left it out): volatile, said again at every beat */
  private readonly deviceErrors = new Map<string, string>();
  private heardCount = 0;

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

  /** A device's error (undefined: none, it is Normal or gone). */
  noteDeviceError(deviceId: string, error: string | undefined): void {
    if (error === undefined) this.deviceErrors.delete(deviceId);
    else this.deviceErrors.set(deviceId, error);
  }

  deviceError(deviceId: string): string | null {
    return this.deviceErrors.get(deviceId) ?? null;
  }

  sdsSeen(sdsId: string, appliedMapVersion: number): void {
    this.sds.set(sdsId, { lastHeartbeatMs: this.clock(), appliedMapVersion, heard: true });
    this.heardCount++;
  }

  sdcSeen(sdcId: string, appliedMapVersion: number): void {
    this.sdc.set(sdcId, { lastHeartbeatMs: this.clock(), appliedMapVersion, heard: true });
    this.heardCount++;
  }

  /** heartbeats (and joins) heard since this tracker was made (StartCatchUp) */
  get heard(): number {
    return this.heardCount;
  }

  /** SDSs and SDCs this tracker knows (seeded or heard) */
  get nodeCount(): number {
    return this.sds.size + this.sdc.size;
  }

  /**
   * The MDM itself stood still for `ms` (its event loop blocked, the process stopped): nobody
   * could be heard meanwhile, so that time does not count against any node. Every deadline moves
   * by it (never past now); a node that is really gone is declared so that much later.
   */
  forgiveStall(ms: number): void {
    const now = this.clock();
    for (const m of [this.sds, this.sdc]) for (const seen of m.values()) seen.lastHeartbeatMs = Math.min(now, seen.lastHeartbeatMs + ms);
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

  /**
   * Every SDS's connection state in one string (heard and connected / seeded and connected /
   * down), in a fixed order: it changes whenever any SDS's state does (the recovery pacing's
   * signature: recovery/tick_pacing.ts).
   */
  sdsStatesSignature(): string {
    const now = this.clock();
    let out = `${this.sds.size}:`;
    for (const s of this.sds.values()) out += now - s.lastHeartbeatMs < this.timeoutMs ? (s.heard ? "C" : "c") : "d";
    return out;
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

  /** Note a map change at `version` (inside its transaction; a rollback only costs a refetch). */
  noteMapChange(version: number, scope?: MapChangeScope, urgent = false): void {
    if (scope === undefined) {
      this.everyNodeChangedAt = version;
      this.sdsChangedAt.clear();
      this.sdcChangedAt.clear();
      if (urgent) {
        this.everyNodeUrgentAt = version;
        this.urgentAt.clear();
        this.releaseWaiters();
      }
      return;
    }
    for (const id of scope.sds) {
      this.sdsChangedAt.set(id, version);
      if (urgent) {
        this.urgentAt.set(`sds:${id}`, version);
        this.waiters.get(`sds:${id}`)?.();
      }
    }
    for (const id of scope.sdc) {
      this.sdcChangedAt.set(id, version);
      if (urgent) {
        this.urgentAt.set(`sdc:${id}`, version);
        this.waiters.get(`sdc:${id}`)?.();
      }
    }
  }

  /**
   * Whether an urgent change (one that takes access away: an unmap's grant floors, ReadOnly, an
   * NBD revocation) concerns the node and is newer than the version it last said it applies:
   * its fetch is never shed (fetch_shedding.ts), revocation must not wait for a turn. A node
   * not heard since this tracker began counts as applying 0.
   */
  urgentPending(kind: "sds" | "sdc", nodeId: string): boolean {
    const key = `${kind}:${nodeId}`;
    const at = Math.max(this.everyNodeUrgentAt, this.urgentAt.get(key) ?? 0);
    if (at === 0) return false;
    const applied = (kind === "sds" ? this.sds : this.sdc).get(nodeId)?.appliedMapVersion ?? 0;
    if (applied >= at) {
      this.urgentAt.delete(key); // the node has it (bounded: one entry per node with a pending one)
      return false;
    }
    return true;
  }

  /**
   * Resolves at the next map change that concerns the node, after waitMs, or at releaseWaiters;
   * a newer wait of the same node ends the older one (a node has one watch).
   */
  waitForMapChange(kind: "sds" | "sdc", nodeId: string, waitMs: number): Promise<void> {
    const key = `${kind}:${nodeId}`;
    this.waiters.get(key)?.();
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        if (this.waiters.get(key) === wake) this.waiters.delete(key);
        resolve();
      };
      const timer = setTimeout(wake, waitMs);
      this.waiters.set(key, wake);
    });
  }

  /** Answer every waiting node now (a change for all, a takeover that replaces this tracker). */
  releaseWaiters(): void {
    for (const wake of [...this.waiters.values()]) wake();
  }

  /**
   * The mapVersion to tell a node in a heartbeat answer: the version it applies when nothing it
   * fetches changed since (it keeps its assignments or maps), else the current one (it refetches).
   */
  mapVersionFor(kind: "sds" | "sdc", nodeId: string, appliedMapVersion: number, currentMapVersion: number): number {
    return this.caughtUp(kind, nodeId, appliedMapVersion, currentMapVersion) ? appliedMapVersion : currentMapVersion;
  }

  /** Whether a node applying `appliedMapVersion` has every change that concerns it. */
  caughtUp(kind: "sds" | "sdc", nodeId: string, appliedMapVersion: number, currentMapVersion: number): boolean {
    if (this.everyNodeChangedAt === null) this.everyNodeChangedAt = currentMapVersion;
    const mine = (kind === "sds" ? this.sdsChangedAt : this.sdcChangedAt).get(nodeId) ?? 0;
    // a noted change above the stored version was rolled back: it concerns nobody
    return appliedMapVersion >= Math.min(Math.max(this.everyNodeChangedAt, mine), currentMapVersion) && appliedMapVersion <= currentMapVersion;
  }

  private stateOf(seen: Seen | undefined): ConnectionState {
    if (!seen) return "Disconnected";
    return this.clock() - seen.lastHeartbeatMs < this.timeoutMs ? "Connected" : "Disconnected";
  }
}

/**
 * How late a periodic timer's tick is, in real time (performance.now, not the injected clock):
 * late() gives the time since the previous late() beyond period, when that exceeds slack, else
 * 0. The MDM's recovery and observe timers share one (the gap since either ran) to notice that
 * the MDM itself stalled (forgiveStall).
 */
export class TickLateness {
  private last = performance.now();

  constructor(
    private readonly periodMs: number,
    private readonly slackMs: number,
  ) {}

  late(): number {
    const now = performance.now();
    const late = now - this.last - this.periodMs;
    this.last = now;
    return late > this.slackMs ? late : 0;
  }
}

/** the share of the expected heartbeats below which a starting MDM counts as not keeping up */
export const CATCH_UP_SHARE = 0.5;

/**
 * An MDM start under load. Every node reconnects at once (a TLS handshake each), so a starting MDM
 * on a busy host answered 521 of 1,500 beats a second in its first 8 s; the nodes whose beats
 * waited in its queue past the timeout were declared down (749 SDSs at 1,000 x 100,000 volumes,
 * bench/mdm_scale.ts), and the recovery work on their extents kept it behind: a cascade. While the
 * MDM cannot tell a node's silence from its own backlog, that time must not count against nodes,
 * as a stall does not (forgiveStall). So for at most `maxMs` after its start, a tick at which the
 * beats heard over the last window (up to one timeout) are below CATCH_UP_SHARE of what its known
 * nodes send (one per heartbeat interval each) forgives the time since the last tick. The price:
 * a node really gone at the start (or half of them) is declared at most `maxMs` later; after
 * `maxMs` the usual rule holds whatever the rate.
 */
export class StartCatchUp {
  private readonly startMs: number;
  private lastMs: number;
  private readonly samples: { atMs: number; heard: number }[] = [];
  /** time forgiven so far (logs, tests) */
  forgivenMs = 0;

  private health: HealthTracker;
  /** how long after the start the rule holds */
  readonly maxMs: number;

  /** trackerOf: the current tracker (an HA takeover replaces it: the window starts over) */
  constructor(
    private readonly trackerOf: () => HealthTracker,
    private readonly clock: () => number,
    private readonly intervalMs: number,
    maxMs?: number,
  ) {
    this.health = trackerOf();
    this.maxMs = maxMs ?? 3 * this.health.heartbeatTimeoutMs;
    this.startMs = clock();
    this.lastMs = this.startMs;
    this.samples.push({ atMs: this.startMs, heard: this.health.heard });
  }

  /** Once per tick: the time this tick forgives (already applied), 0 when the MDM keeps up. */
  tick(): number {
    const now = this.clock();
    const elapsed = now - this.lastMs;
    this.lastMs = now;
    if (now - this.startMs >= this.maxMs || elapsed <= 0) return 0;
    const current = this.trackerOf();
    if (current !== this.health) {
      // a new tracker (HA takeover): seeded as seen now, its own window starts
      this.health = current;
      this.samples.length = 0;
      this.samples.push({ atMs: now, heard: current.heard });
      return 0;
    }
    const window = this.health.heartbeatTimeoutMs;
    this.samples.push({ atMs: now, heard: this.health.heard });
    while (this.samples.length > 2 && now - this.samples[1]!.atMs >= window) this.samples.shift();
    const first = this.samples[0]!;
    const span = now - first.atMs;
    // too short a window to judge (its first beats): the deadlines seeded at the start cover it
    if (span < 2 * this.intervalMs) return 0;
    const expected = (this.health.nodeCount * span) / this.intervalMs;
    if (this.health.heard - first.heard >= CATCH_UP_SHARE * expected) return 0;
    this.health.forgiveStall(elapsed);
    this.forgivenMs += elapsed;
    return elapsed;
  }
}
