// Per-device throttles of the copies (rebuild, resync, move) an SDS drives as a primary, after the
// pool's I/O priority policy (proto/cluster_api.ts IoPriorityPolicy), and the per-device gauge of
// application IO they yield to. A copy IO is one chunk copy: read here, REBUILD_WRITE(s) to the
// target, until the target answered; it counts against the device that holds the source copy
// (the target's writes are bounded by Limits.rebuildCopiesPerTarget per target SDS).
//
// Per policy, on each chunk, in this order:
// - unlimited: nothing waits;
// - limitNumOfConcurrentIos: the device's token bucket (bwLimit per device, 0 = none), then one of
//   the device's N copy slots;
// - favorAppIos: as limitNumOfConcurrentIos, then, holding the slot, waits until the device has no
//   application write in flight, at most Limits.favorAppIosMaxWaitMs (so a rebuild under constant
//   app IO still ends: at least N chunks per wait + round trip);
// - dynamicBwThrottling: the token bucket at a rate a client-latency tuner sets (LatencyTuner):
//   every Limits.copyTuneIntervalMs it compares the mean latency of the device's app writes
//   answered while its copies ran with their quiet baseline (writes answered while no copy IO of
//   the device was queued or moving), and moves the rate between 1/dynamicBwMinShare of the limit
//   (the floor: a rebuild always ends) and the limit, to keep that ratio within
//   Limits.copyTuneLatencyRatio.
//
// Invariants: copy IOs in flight per device never exceed the policy's N under limitNumOfConcurrentIos
// and favorAppIos (counted here: inFlight, maxInFlight); a favorAppIos wait is bounded; the bucket's
// own invariants hold (token_bucket.ts); the tuned rate stays within [limit / dynamicBwMinShare,
// limit]. The app IO hook (sds_node.ts) costs two increments and two additions per primary write,
// no allocation and no clock read (the write's latency is the one its meter computes anyway).

import type { CopyIoPolicy } from "../proto/cluster_api.ts";
import { Limits } from "../proto/limits.ts";
import type { SdsClock } from "./sds_clock.ts";
import { TokenBucket } from "./token_bucket.ts";

/** Application IO on one device: primary writes not yet answered, and the answered ones' latency. */
export class AppIoGauge {
  /** primary writes (and trims) received and not yet answered: both copies still being written */
  inFlight = 0;
  /** copy IOs of this device (any class) from the start of their wait to their answer */
  copyPending = 0;
  /** primary writes answered OK while a copy IO of the device was pending, and their latency summed (ms) */
  busyOps = 0;
  busyMs = 0;
  /** the same while no copy IO of the device was pending: the quiet baseline's samples */
  quietOps = 0;
  quietMs = 0;
  private idleWaiters: (() => void)[] = [];

  begin(): void {
    this.inFlight++;
  }

  /** A primary write was answered; `latencyMs` (receipt to reply) when it succeeded, else negative. */
  end(latencyMs = -1): void {
    if (this.inFlight > 0) this.inFlight--;
    if (latencyMs >= 0) {
      if (this.copyPending > 0) {
        this.busyOps++;
        this.busyMs += latencyMs;
      } else {
        this.quietOps++;
        this.quietMs += latencyMs;
      }
    }
    if (this.inFlight === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of w) resolve();
    }
  }

  /** Resolves once no application write is in flight (at once when none is); cancel() drops the wait. */
  whenIdle(): { idle: Promise<void>; cancel(): void } {
    if (this.inFlight === 0) return { idle: Promise.resolve(), cancel: () => undefined };
    let resolve!: () => void;
    const idle = new Promise<void>((r) => (resolve = r));
    this.idleWaiters.push(resolve);
    return {
      idle,
      cancel: () => {
        const i = this.idleWaiters.indexOf(resolve);
        if (i >= 0) this.idleWaiters.splice(i, 1);
      },
    };
  }

  /** copy IOs waiting for the device's app writes to drain */
  get idleWaiting(): number {
    return this.idleWaiters.length;
  }
}

/** The gauges of this SDS's devices, by device id (created on first use; a few per SDS). */
export class AppIoGauges {
  private readonly byDevice = new Map<string, AppIoGauge>();
  of(deviceId: string): AppIoGauge {
    let g = this.byDevice.get(deviceId);
    if (g === undefined) {
      g = new AppIoGauge();
      this.byDevice.set(deviceId, g);
    }
    return g;
  }
}

/** A counting semaphore, waiters served by (priority, arrival); the cap may change while in use. */
export class Slots {
  private used = 0;
  private readonly waiters: { priority: number; resolve: () => void }[] = [];
  constructor(private max: number) {}

  get inUse(): number {
    return this.used;
  }

  setMax(max: number): void {
    this.max = max;
    while (this.used < this.max && this.waiters.length > 0) {
      this.used++;
      this.waiters.shift()!.resolve();
    }
  }

  acquire(priority: number): Promise<void> {
    if (this.used < this.max) {
      this.used++;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      let i = this.waiters.length;
      while (i > 0 && this.waiters[i - 1]!.priority > priority) i--;
      this.waiters.splice(i, 0, { priority, resolve });
    });
  }

  release(): void {
    if (this.used <= this.max) {
      const next = this.waiters.shift();
      if (next) return next.resolve();
    }
    this.used--;
  }
}

/** The fallback of an MDM that sends no copyPolicies: its per-SDS rate, no concurrency cap (the old behaviour, per device). */
export function legacyPolicy(rateBytesPerSec: number): CopyIoPolicy {
  return { policy: "limitNumOfConcurrentIos", concurrentIosPerDevice: Infinity, bwLimitBytesPerSec: rateBytesPerSec };
}

export interface CopyPermit {
  release(): void;
}

/** One tuning window's app writes on a device: answered while its copies ran (busy) and while not (quiet). */
export interface TuneWindow {
  busyOps: number;
  busyMs: number;
  quietOps: number;
  quietMs: number;
}

/** What the tuner did with its last window (the control port shows it). */
export type TuneVerdict = "start" | "no-app-io" | "few-busy" | "learn" | "slower" | "faster" | "hold";

/**
 * dynamicBwThrottling's rule (pure: windows in, rate out). Vitastor's recovery tuner lowers
 * recovery as client utilisation (iops x latency) goes up; here the aim is the issue's: client
 * latency during a copy within Limits.copyTuneLatencyRatio of its quiet value. Per window:
 * - the quiet writes (no copy IO pending) fold into the baseline (first window: as is; then an
 *   exponential mean, 1/4 per window down, 1/16 up: quiet writes between two copy jobs of this
 *   device may still be slowed by other SDSs' copies);
 * - the first window of a copy (or after a pause, restart()) spans the time before it: the rate
 *   starts at the floor, nothing is judged;
 * - no app writes at all: nobody to protect, the rate doubles (up to the limit);
 * - app writes but too few while the copy ran to judge it by: grows as below (a hold here kept
 *   a copy at the floor for good under a light, steady client);
 * - no baseline yet (every write so far overlapped a copy): the mean at the floor rate stands
 *   in for it (the rate drops to the floor first if it is above);
 * - ratio = busy mean / baseline: above the aim, the rate shrinks by aim/ratio at once (a client
 *   arriving while the copy runs at the limit meets a queue: one window, not several, to clear it);
 *   below 0.7 of the aim it grows by limit / copyTuneSteps (additive: the per-window signal is
 *   noisy, ratios 0.4–9 in consecutive windows, and a multiplicative rise overshot within two
 *   windows); in between it holds. Always within [floor, limit].
 */
export class LatencyTuner {
  /** the quiet mean app write latency (ms), null until one window had enough quiet writes */
  baselineMs: number | null = null;
  /** the rate picked by the last step (bytes/s); 0 before the first */
  rate = 0;
  lastMeanMs = 0;
  lastRatio = 0;
  lastVerdict: TuneVerdict = "start";
  steps = 0;

  /** Start over from the floor at the next step (the device's copies paused); the baseline stays. */
  restart(): void {
    this.rate = 0;
  }

  step(limit: number, w: TuneWindow): number {
    this.steps++;
    const floor = Math.min(limit, Math.ceil(limit / Limits.dynamicBwMinShare));
    const min = Limits.copyTuneMinOps;
    if (w.quietOps >= min) {
      const q = w.quietMs / w.quietOps;
      // down fast, up slowly: a quiet write may still be slowed by other SDSs' copies (this
      // device's own copies paused between two jobs), and a raised baseline lets the copy take more
      const b = this.baselineMs;
      this.baselineMs = b === null ? q : b + (q - b) / (q < b ? 4 : 16);
    }
    if (this.rate === 0) {
      // the first window of a copy spans the time before it: nothing in it to judge the copy by
      this.rate = floor;
      this.lastVerdict = "start";
      return floor;
    }
    let rate = Math.max(floor, Math.min(limit, this.rate));
    if (w.busyOps + w.quietOps < min) {
      rate = Math.min(limit, rate * 2);
      this.lastVerdict = "no-app-io";
    } else if (w.busyOps < min) {
      // app writes, but too few of them met the copy to judge it by: little app IO the copy can
      // slow, so speed up as when latency is low (holding here kept a copy at the floor for good
      // under a light, steady client)
      rate = Math.min(limit, rate + Math.ceil(limit / Limits.copyTuneSteps));
      this.lastVerdict = "few-busy";
    } else {
      const mean = w.busyMs / w.busyOps;
      this.lastMeanMs = mean;
      if (this.baselineMs === null) {
        if (rate <= floor) this.baselineMs = mean;
        rate = floor;
        this.lastVerdict = "learn";
      } else {
        const aim = Limits.copyTuneLatencyRatio;
        const ratio = mean / Math.max(this.baselineMs, 1e-3);
        this.lastRatio = ratio;
        if (ratio > aim) {
          rate = Math.max(floor, Math.floor((rate * aim) / ratio));
          this.lastVerdict = "slower";
        } else if (ratio < 0.7 * aim) {
          rate = Math.min(limit, rate + Math.ceil(limit / Limits.copyTuneSteps));
          this.lastVerdict = "faster";
        } else this.lastVerdict = "hold";
      }
    }
    this.rate = rate;
    return rate;
  }
}

/** One device's throttle for one class of copies (rebuild+resync, or moves). */
export class DeviceThrottle {
  readonly bucket: TokenBucket;
  private readonly slots = new Slots(Infinity);
  private policy: CopyIoPolicy = { policy: "unlimited", concurrentIosPerDevice: 1, bwLimitBytesPerSec: 0 };
  readonly tuner = new LatencyTuner();
  /** the gauge's counters at the tuner's last step, and when it was */
  private tunedAt = { ms: -Infinity, busyOps: 0, busyMs: 0, quietOps: 0, quietMs: 0 };
  /** when the last copy IO of this class on this device asked for its admission */
  private lastCopyIoMs = -Infinity;
  /** copy IOs of this class on this device past every wait and not yet answered, and the most seen */
  inFlight = 0;
  maxInFlight = 0;
  /** favorAppIos waits that ended because the device's app writes drained / because the wait timed out */
  yieldsDrained = 0;
  yieldsTimedOut = 0;

  constructor(
    private readonly clock: SdsClock,
    readonly gauge: AppIoGauge,
  ) {
    this.bucket = new TokenBucket(clock);
  }

  get current(): CopyIoPolicy {
    return this.policy;
  }

  set(policy: CopyIoPolicy): void {
    const p = this.policy;
    if (p.policy === policy.policy && p.concurrentIosPerDevice === policy.concurrentIosPerDevice && p.bwLimitBytesPerSec === policy.bwLimitBytesPerSec) return;
    this.policy = { ...policy };
    const capped = policy.policy === "limitNumOfConcurrentIos" || policy.policy === "favorAppIos";
    this.slots.setMax(capped ? policy.concurrentIosPerDevice : Infinity);
    this.bucket.setRate(policy.policy === "unlimited" ? 0 : policy.bwLimitBytesPerSec);
    // dynamicBwThrottling: the next copy IO tunes first, from the floor
    this.tunedAt = { ...this.tunedAt, ms: -Infinity };
  }

  /**
   * Wait until a chunk of `bytes` may be copied; the permit must be released once the target
   * answered. `cancelled`: the copy was dropped meanwhile (its chunk then skips the yield to app IO).
   */
  async admit(bytes: number, priority: number, cancelled?: () => boolean): Promise<CopyPermit> {
    const p = this.policy;
    if (p.policy === "dynamicBwThrottling") this.tune(p.bwLimitBytesPerSec, bytes);
    const g = this.gauge;
    g.copyPending++;
    try {
      if (p.policy !== "unlimited") await this.bucket.take(bytes, priority);
      await this.slots.acquire(priority);
      if (p.policy === "favorAppIos" && g.inFlight > 0 && cancelled?.() !== true) await this.yieldToApp();
    } catch (err) {
      g.copyPending--;
      throw err;
    }
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.inFlight--;
        g.copyPending--;
        this.slots.release();
      },
    };
  }

  private async yieldToApp(): Promise<void> {
    let drained = false;
    const w = this.gauge.whenIdle();
    await Promise.race([w.idle.then(() => (drained = true)), this.clock.sleep(Limits.favorAppIosMaxWaitMs)]);
    w.cancel();
    if (drained) this.yieldsDrained++;
    else this.yieldsTimedOut++;
  }

  /** dynamicBwThrottling: once per Limits.copyTuneIntervalMs (at a copy IO), the tuner's step on the window since the last. */
  private tune(limit: number, bytes: number): void {
    if (limit === 0) return;
    const now = this.clock.nowMs();
    // the device's copies paused: measured from its last copy IO, not its last step (at a small
    // limit copy IOs come seconds apart, and every step would start over from the floor), and
    // never shorter than two copy IOs at the current rate
    const rate = this.bucket.rate > 0 ? this.bucket.rate : limit;
    const paused = now - this.lastCopyIoMs > Math.max(Limits.copyTuneRestartMs, (2000 * bytes) / rate);
    this.lastCopyIoMs = now;
    const last = this.tunedAt;
    if (now - last.ms < Limits.copyTuneIntervalMs) return;
    const g = this.gauge;
    if (paused) this.tuner.restart();
    const w: TuneWindow = { busyOps: g.busyOps - last.busyOps, busyMs: g.busyMs - last.busyMs, quietOps: g.quietOps - last.quietOps, quietMs: g.quietMs - last.quietMs };
    this.tunedAt = { ms: now, busyOps: g.busyOps, busyMs: g.busyMs, quietOps: g.quietOps, quietMs: g.quietMs };
    this.bucket.setRate(this.tuner.step(limit, w));
  }
}
