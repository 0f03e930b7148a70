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
// - dynamicBwThrottling: the token bucket at a rate that halves (down to 1/dynamicBwMinShare of
//   the limit) at each chunk that finds app IO on the device since the last chunk or in flight,
//   and doubles back (up to the limit) at each chunk once the device was quiet for dynamicBwQuietMs.
//
// Invariants: copy IOs in flight per device never exceed the policy's N under limitNumOfConcurrentIos
// and favorAppIos (counted here: inFlight, maxInFlight); a favorAppIos wait is bounded; the bucket's
// own invariants hold (token_bucket.ts). The app IO hook (sds_node.ts) costs one increment per
// request and two per primary write, no allocation.

import type { CopyIoPolicy } from "../proto/cluster_api.ts";
import { Limits } from "../proto/limits.ts";
import type { SdsClock } from "./sds_clock.ts";
import { TokenBucket } from "./token_bucket.ts";

/** Application IO on one device: requests admitted (count) and primary writes not yet answered. */
export class AppIoGauge {
  /** application requests admitted for extents on this device (reads, writes, forwarded writes) */
  arrivals = 0;
  /** primary writes (and trims) received and not yet answered: both copies still being written */
  inFlight = 0;
  private idleWaiters: (() => void)[] = [];

  begin(): void {
    this.inFlight++;
  }

  end(): void {
    if (this.inFlight > 0) this.inFlight--;
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

/** One device's throttle for one class of copies (rebuild+resync, or moves). */
export class DeviceThrottle {
  readonly bucket: TokenBucket;
  private readonly slots = new Slots(Infinity);
  private policy: CopyIoPolicy = { policy: "unlimited", concurrentIosPerDevice: 1, bwLimitBytesPerSec: 0 };
  private seenArrivals = 0;
  private lastBusyMs = -Infinity;
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
  }

  /**
   * Wait until a chunk of `bytes` may be copied; the permit must be released once the target
   * answered. `cancelled`: the copy was dropped meanwhile (its chunk then skips the yield to app IO).
   */
  async admit(bytes: number, priority: number, cancelled?: () => boolean): Promise<CopyPermit> {
    const p = this.policy;
    if (p.policy === "dynamicBwThrottling") this.adapt(p.bwLimitBytesPerSec);
    if (p.policy !== "unlimited") await this.bucket.take(bytes, priority);
    await this.slots.acquire(priority);
    if (p.policy === "favorAppIos" && this.gauge.inFlight > 0 && cancelled?.() !== true) await this.yieldToApp();
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.inFlight--;
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

  /** dynamicBwThrottling: back off while app IO is present, recover while the device is quiet. */
  private adapt(limit: number): void {
    if (limit === 0) return;
    const g = this.gauge;
    const now = this.clock.nowMs();
    const busy = g.inFlight > 0 || g.arrivals !== this.seenArrivals;
    this.seenArrivals = g.arrivals;
    const rate = this.bucket.rate === 0 ? limit : this.bucket.rate;
    if (busy) {
      this.lastBusyMs = now;
      this.bucket.setRate(Math.max(Math.ceil(limit / Limits.dynamicBwMinShare), Math.floor(rate / 2)));
    } else if (now - this.lastBusyMs >= Limits.dynamicBwQuietMs) {
      this.bucket.setRate(Math.min(limit, rate * 2));
    }
  }
}
