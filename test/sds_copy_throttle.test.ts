// The per-device copy throttle of each I/O priority policy (src/sds/copy_throttle.ts) on a manual
// clock: limitNumOfConcurrentIos never lets more than N copy IOs through at once; favorAppIos
// holds a copy IO while an app write is in flight on the device, lets it go when the write is
// answered, and never longer than Limits.favorAppIosMaxWaitMs (a rebuild under constant app IO
// still ends); dynamicBwThrottling backs its rate off while app IO arrives and recovers once the
// device is quiet; unlimited lets everything through at once.

import { describe, expect, test } from "bun:test";
import type { CopyIoPolicy } from "../src/proto/cluster_api.ts";
import { Limits } from "../src/proto/limits.ts";
import { AppIoGauge, DeviceThrottle, Slots, type CopyPermit } from "../src/sds/copy_throttle.ts";
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

describe("dynamicBwThrottling", () => {
  test("the rate halves at each copy IO that finds app IO, down to 1/dynamicBwMinShare, and doubles back once quiet", async () => {
    const clock = manualClock();
    const gauge = new AppIoGauge();
    const t = new DeviceThrottle(clock, gauge);
    const limit = 64 * MiB;
    t.set(policy("dynamicBwThrottling", 1, limit));
    expect(t.bucket.rate).toBe(limit);
    const rates: number[] = [];
    for (let i = 0; i < 5; i++) {
      gauge.arrivals++; // an app request reached the device since the last copy IO
      const p = t.admit(64 * 1024, 0);
      rates.push(t.bucket.rate);
      await clock.advance(100);
      (await p).release();
    }
    expect(rates).toEqual([limit / 2, limit / 4, limit / 8, limit / 8, limit / 8]);
    // an app write in flight counts as present as well
    gauge.begin();
    (await Promise.all([t.admit(1024, 0), clock.advance(100)]))[0].release();
    expect(t.bucket.rate).toBe(limit / Limits.dynamicBwMinShare);
    gauge.end();
    // quiet, but not yet for dynamicBwQuietMs: stays
    await clock.advance(Limits.dynamicBwQuietMs / 2);
    (await Promise.all([t.admit(1024, 0), clock.advance(10)]))[0].release();
    expect(t.bucket.rate).toBe(limit / Limits.dynamicBwMinShare);
    await clock.advance(Limits.dynamicBwQuietMs);
    const back: number[] = [];
    for (let i = 0; i < 4; i++) {
      (await Promise.all([t.admit(1024, 0), clock.advance(10)]))[0].release();
      back.push(t.bucket.rate);
    }
    expect(back).toEqual([limit / 4, limit / 2, limit, limit]);
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
