// The per-device copy throttle of each I/O priority policy (src/sds/copy_throttle.ts) on a manual
// clock: limitNumOfConcurrentIos never lets more than N copy IOs through at once; favorAppIos
// holds a copy IO while an app write is in flight on the device, lets it go when the write is
// answered, and never longer than Limits.favorAppIosMaxWaitMs (a rebuild under constant app IO
// still ends); dynamicBwThrottling's tuner picks the copy rate from the app writes' latency during
// the copy vs their quiet baseline (fed windows, no timing); unlimited lets everything through at once.

import { describe, expect, test } from "bun:test";
import type { CopyIoPolicy } from "../src/proto/cluster_api.ts";
import { Limits } from "../src/proto/limits.ts";
import { AppIoGauge, DeviceThrottle, LatencyTuner, Slots, type CopyPermit } from "../src/sds/copy_throttle.ts";
import type { SdsClock } from "../src/sds/sds_clock.ts";

const MiB = 1024 * 1024;

/** A clock that moves only when told: sleepers wake once advance() passes their time. */
function manualClock(): SdsClock & { t: number; advance(ms: number): Promise<void> } {
  const sleepers: { at: number; resolve: () => void }[] = [];
  const c = {
    t: 0,
    nowMs: () => c.t,
    sleep: (ms: number) => new Promise<void>((resolve) => sleepers.push({ at: c.t + ms, resolve })),
    async advance(ms: number) {
      const end = c.t + ms;
      for (;;) {
        await settle();
        sleepers.sort((a, b) => a.at - b.at);
        const next = sleepers[0];
        if (next === undefined || next.at > end) break;
        sleepers.shift();
        c.t = Math.max(c.t, next.at);
        next.resolve();
      }
      c.t = end;
      await settle();
    },
  };
  return c;
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

const policy = (p: CopyIoPolicy["policy"], n = 1, bw = 0): CopyIoPolicy => ({ policy: p, concurrentIosPerDevice: n, bwLimitBytesPerSec: bw });

describe("limitNumOfConcurrentIos", () => {
  test("never more than N copy IOs in flight on the device; the next goes when one is answered", async () => {
    const clock = manualClock();
    const t = new DeviceThrottle(clock, new AppIoGauge());
    t.set(policy("limitNumOfConcurrentIos", 2));
    const granted: CopyPermit[] = [];
    const all = Array.from({ length: 6 }, (_, i) => t.admit(MiB, i).then((p) => granted.push(p)));
    await settle();
    expect(granted).toHaveLength(2);
    expect(t.inFlight).toBe(2);
    granted[0]!.release();
    await settle();
    expect(granted).toHaveLength(3);
    for (let i = 1; i < 6; i++) {
      granted[i]!.release();
      await settle();
    }
    await Promise.all(all);
    expect(t.maxInFlight).toBe(2);
    expect(t.inFlight).toBe(0);
  });

  test("the cap follows a policy change while copies run (raised: the waiting go at once)", async () => {
    const clock = manualClock();
    const t = new DeviceThrottle(clock, new AppIoGauge());
    t.set(policy("limitNumOfConcurrentIos", 1));
    const granted: CopyPermit[] = [];
    for (let i = 0; i < 4; i++) void t.admit(MiB, i).then((p) => granted.push(p));
    await settle();
    expect(granted).toHaveLength(1);
    t.set(policy("limitNumOfConcurrentIos", 3));
    await settle();
    expect(granted).toHaveLength(3);
    for (const p of granted) p.release();
    await settle();
    expect(granted).toHaveLength(4);
  });

  test("the bandwidth cap applies with it: 4 MiB at 10 MiB/s take 400 ms", async () => {
    const clock = manualClock();
    const t = new DeviceThrottle(clock, new AppIoGauge());
    t.set(policy("limitNumOfConcurrentIos", 20, 10 * MiB));
    const at: number[] = [];
    const all = Array.from({ length: 4 }, (_, i) => t.admit(MiB, i).then((p) => (at.push(clock.t), p.release())));
    await clock.advance(1000);
    await Promise.all(all);
    expect(at.at(-1)!).toBeGreaterThanOrEqual(399);
  });
});

describe("favorAppIos", () => {
  test("a copy IO waits while an app write is in flight on the device and starts when it is answered", async () => {
    const clock = manualClock();
    const gauge = new AppIoGauge();
    const t = new DeviceThrottle(clock, gauge);
    t.set(policy("favorAppIos", 1));
    gauge.begin();
    let granted: CopyPermit | null = null;
    void t.admit(MiB, 0).then((p) => (granted = p));
    await clock.advance(Limits.favorAppIosMaxWaitMs - 1);
    expect(granted).toBeNull();
    gauge.end();
    await settle();
    expect(granted).not.toBeNull();
    expect(t.yieldsDrained).toBe(1);
    expect(t.yieldsTimedOut).toBe(0);
  });

  test("a dropped copy's chunk does not wait out the yield to app IO", async () => {
    const clock = manualClock();
    const gauge = new AppIoGauge();
    const t = new DeviceThrottle(clock, gauge);
    t.set(policy("favorAppIos", 1));
    gauge.begin(); // an app write in flight
    let granted = false;
    void t.admit(MiB, 0, () => true).then(() => (granted = true));
    await settle();
    expect(granted).toBe(true);
    expect(t.yieldsDrained + t.yieldsTimedOut).toBe(0);
  });

  test("with no app IO a copy IO goes at once", async () => {
    const clock = manualClock();
    const t = new DeviceThrottle(clock, new AppIoGauge());
    t.set(policy("favorAppIos", 1));
    let granted = false;
    void t.admit(MiB, 0).then(() => (granted = true));
    await settle();
    expect(granted).toBe(true);
  });

  test("under constant app IO every copy IO still goes after at most favorAppIosMaxWaitMs: the copy ends", async () => {
    const clock = manualClock();
    const gauge = new AppIoGauge();
    const t = new DeviceThrottle(clock, gauge);
    t.set(policy("favorAppIos", 1));
    gauge.begin(); // never answered
    const chunks = 10;
    let done = 0;
    const copy = (async () => {
      for (let i = 0; i < chunks; i++) {
        const p = await t.admit(MiB, 0);
        done++;
        p.release();
      }
    })();
    await clock.advance(chunks * Limits.favorAppIosMaxWaitMs);
    await copy;
    expect(done).toBe(chunks);
    expect(t.yieldsTimedOut).toBe(chunks);
    expect(gauge.idleWaiting).toBe(0); // a wait that timed out leaves nothing behind
    expect(clock.t).toBeLessThanOrEqual(chunks * Limits.favorAppIosMaxWaitMs);
  });

  test("the concurrency cap holds too (the waiting one holds its slot)", async () => {
    const clock = manualClock();
    const gauge = new AppIoGauge();
    const t = new DeviceThrottle(clock, gauge);
    t.set(policy("favorAppIos", 2));
    const granted: CopyPermit[] = [];
    for (let i = 0; i < 5; i++) void t.admit(MiB, i).then((p) => granted.push(p));
    await settle();
    expect(granted).toHaveLength(2);
    expect(t.maxInFlight).toBe(2);
  });
});

describe("dynamicBwThrottling: the client-latency tuner's rule (LatencyTuner)", () => {
  const limit = 80 * MiB;
  const floor = limit / Limits.dynamicBwMinShare;
  const aim = Limits.copyTuneLatencyRatio;
  const n = Limits.copyTuneMinOps;
  /** a window of `ops` app writes of mean `ms`, answered while the copy ran (busy) or not (quiet) */
  const busy = (ops: number, ms: number) => ({ busyOps: ops, busyMs: ops * ms, quietOps: 0, quietMs: 0 });
  const quiet = (ops: number, ms: number) => ({ busyOps: 0, busyMs: 0, quietOps: ops, quietMs: ops * ms });

  test("starts at the floor, learns the quiet baseline, then speeds up by limit/copyTuneSteps per window while latency stays low, up to the limit", () => {
    const t = new LatencyTuner();
    expect(t.step(limit, quiet(100, 0.4))).toBe(floor); // the copy's first window: the time before it
    expect(t.lastVerdict).toBe("start");
    expect(t.baselineMs).toBeCloseTo(0.4);
    const up = limit / Limits.copyTuneSteps;
    expect(t.step(limit, { busyOps: 2, busyMs: 20, quietOps: 100, quietMs: 40 })).toBe(floor + up); // app IO, but hardly any during the copy: too little to judge, speed up
    expect(t.lastVerdict).toBe("few-busy");
    const rates: number[] = [];
    const windows = Math.ceil((limit - floor - up) / up) + 1;
    for (let i = 0; i < windows; i++) rates.push(t.step(limit, busy(100, 0.5))); // 1.25x the baseline: below 0.7 x aim
    expect(rates).toEqual(rates.map((_, i) => Math.min(limit, floor + (i + 2) * up)));
    expect(rates.at(-1)).toBe(limit);
    expect(t.lastVerdict).toBe("faster");
  });

  test("slows down by aim/ratio at once when the busy mean exceeds aim x baseline, never below the floor; holds in between", () => {
    const t = new LatencyTuner();
    t.step(limit, quiet(100, 1));
    for (let i = 0; i < Limits.copyTuneSteps; i++) t.step(limit, busy(100, 1)); // up to the limit
    expect(t.rate).toBe(limit);
    expect(t.step(limit, busy(100, 1.25 * aim))).toBe(Math.floor(limit / 1.25)); // ratio 1.25 x aim: x 0.8
    expect(t.lastVerdict).toBe("slower");
    expect(t.step(limit, busy(100, 4 * aim))).toBe(Math.floor(Math.floor(limit / 1.25) / 4)); // 4 x aim: a quarter, at once
    const held = t.rate;
    expect(t.step(limit, busy(100, 0.9 * aim))).toBe(held); // between 0.7 x aim and aim
    expect(t.lastVerdict).toBe("hold");
    for (let i = 0; i < 10; i++) t.step(limit, busy(100, 50 * aim));
    expect(t.rate).toBe(floor); // the floor holds: a rebuild always ends
  });

  test("fewer than copyTuneMinOps app writes in a window count as no app IO: nobody to protect, the rate doubles up to the limit", () => {
    const t = new LatencyTuner();
    t.step(limit, quiet(100, 1));
    expect(t.step(limit, busy(n - 1, 100))).toBe(2 * floor); // too few writes to judge: as if none
    expect(t.step(limit, { busyOps: 0, busyMs: 0, quietOps: 0, quietMs: 0 })).toBe(4 * floor);
    expect(t.lastVerdict).toBe("no-app-io");
    for (let i = 0; i < 5; i++) t.step(limit, busy(0, 0));
    expect(t.rate).toBe(limit);
  });

  test("without a quiet baseline the busy mean at the floor stands in for it; a quiet window moves the baseline down by 1/4, up by 1/16", () => {
    const t = new LatencyTuner();
    t.step(limit, busy(100, 9)); // the first window: the start
    expect(t.baselineMs).toBeNull();
    expect(t.step(limit, busy(100, 2))).toBe(floor);
    expect(t.lastVerdict).toBe("learn");
    expect(t.baselineMs).toBe(2);
    t.step(limit, quiet(100, 6)); // up by 1/16
    expect(t.baselineMs).toBe(2.25);
    t.step(limit, quiet(100, 0.25)); // down by 1/4
    expect(t.baselineMs).toBe(1.75);
    // a rate above the floor (no app IO for a while) drops to the floor before it learns
    const u = new LatencyTuner();
    for (let i = 0; i < 4; i++) u.step(limit, busy(0, 0)); // the start, then 3 doublings
    expect(u.rate).toBe(limit);
    expect(u.step(limit, busy(100, 5))).toBe(floor);
    expect(u.baselineMs).toBeNull();
    u.step(limit, busy(100, 5));
    expect(u.baselineMs).toBe(5);
  });
});

describe("dynamicBwThrottling on a device", () => {
  test("app writes answered while a copy IO is pending are busy samples, the others quiet; the tuner sets the bucket once per copyTuneIntervalMs", async () => {
    const clock = manualClock();
    const gauge = new AppIoGauge();
    const t = new DeviceThrottle(clock, gauge);
    const limit = 64 * MiB;
    const floor = limit / Limits.dynamicBwMinShare;
    t.set(policy("dynamicBwThrottling", 1, limit));
    const writes = (k: number, ms: number) => {
      for (let i = 0; i < k; i++) {
        gauge.begin();
        gauge.end(ms);
      }
    };
    writes(50, 1); // before any copy: the baseline's samples
    expect(gauge.quietOps).toBe(50);
    gauge.begin();
    gauge.end(); // a failed write is no sample
    expect(gauge.quietOps + gauge.busyOps).toBe(50);
    // the first copy IO: the tuner starts at the floor with the quiet baseline learnt
    const first = t.admit(64 * 1024, 0);
    expect(t.bucket.rate).toBe(floor);
    expect(t.tuner.baselineMs).toBe(1);
    expect(gauge.copyPending).toBe(1);
    await clock.advance(10);
    const p1 = await first;
    writes(40, 10); // 10x the baseline while the copy runs
    expect(gauge.busyOps).toBe(40);
    p1.release();
    expect(gauge.copyPending).toBe(0);
    // within the interval: no new step
    (await Promise.all([t.admit(1024, 0), clock.advance(10)]))[0].release();
    expect(t.tuner.steps).toBe(1);
    await clock.advance(Limits.copyTuneIntervalMs);
    (await Promise.all([t.admit(1024, 0), clock.advance(10)]))[0].release();
    expect(t.tuner.steps).toBe(2);
    expect(t.tuner.lastVerdict).toBe("slower");
    expect(t.bucket.rate).toBe(floor); // it was at the floor already
    // calm busy windows: faster
    for (let i = 0; i < 3; i++) {
      const p = t.admit(1024, 0);
      writes(40, 1.1);
      await clock.advance(Limits.copyTuneIntervalMs);
      (await p).release();
    }
    expect(t.bucket.rate).toBeGreaterThan(floor);
    expect(t.bucket.rate).toBeLessThanOrEqual(limit);
    // a pause longer than copyTuneRestartMs: the next copy starts again from the floor
    await clock.advance(Limits.copyTuneRestartMs + 1);
    (await Promise.all([t.admit(1024, 0), clock.advance(10)]))[0].release();
    expect(t.bucket.rate).toBe(floor);
  });

  test("at a small limit copy IOs seconds apart are no pause: the tuner keeps its rate between them", async () => {
    const clock = manualClock();
    const t = new DeviceThrottle(clock, new AppIoGauge());
    const limit = 128 * 1024; // 1 MiB chunks: one per 8 s, past copyTuneRestartMs
    expect(MiB / limit).toBeGreaterThan(Limits.copyTuneRestartMs / 1000);
    t.set(policy("dynamicBwThrottling", 1, limit));
    const rates: number[] = [];
    for (let i = 0; i < 4; i++) {
      const p = t.admit(MiB, 0);
      rates.push(t.bucket.rate);
      await clock.advance((1000 * MiB) / t.bucket.rate + 1);
      (await p).release();
    }
    // the start at the floor, then no app IO: doublings (each copy IO seconds after the last)
    expect(rates[0]).toBe(limit / Limits.dynamicBwMinShare);
    expect(rates[3]).toBe(limit);
    expect(t.tuner.lastVerdict).toBe("no-app-io");
  });
});

describe("unlimited", () => {
  test("no concurrency cap, no bandwidth cap, no yield to app IO", async () => {
    const clock = manualClock();
    const gauge = new AppIoGauge();
    const t = new DeviceThrottle(clock, gauge);
    t.set(policy("unlimited", 1, MiB));
    gauge.begin();
    const granted: CopyPermit[] = [];
    for (let i = 0; i < 8; i++) void t.admit(64 * MiB, i).then((p) => granted.push(p));
    await settle();
    expect(granted).toHaveLength(8);
    expect(clock.t).toBe(0);
    expect(t.maxInFlight).toBe(8);
  });
});

test("Slots: a lowered cap lets the holders finish and admits nobody until below it", async () => {
  const s = new Slots(3);
  for (let i = 0; i < 3; i++) await s.acquire(0);
  let next = false;
  void s.acquire(0).then(() => (next = true));
  s.setMax(1);
  s.release();
  s.release();
  await settle();
  expect(next).toBe(false);
  s.release();
  await settle();
  expect(next).toBe(true);
  expect(s.inUse).toBe(1);
});
