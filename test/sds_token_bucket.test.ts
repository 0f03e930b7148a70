// The copy throttle (src/sds/token_bucket.ts) on a manual clock: the rate bound, and older
// copies (lower priority number) served before younger ones whatever the arrival order.

import { describe, expect, test } from "bun:test";
import type { SdsClock } from "../src/sds/sds_clock.ts";
import { TokenBucket } from "../src/sds/token_bucket.ts";

/** A clock that moves only when a sleeper waits: each sleep advances time by its length. */
function steppingClock(): SdsClock & { t: number } {
  const c = {
    t: 0,
    nowMs: () => c.t,
    sleep: async (ms: number) => {
      c.t += ms;
      await Promise.resolve();
    },
  };
  return c;
}

const MiB = 1024 * 1024;

describe("TokenBucket", () => {
  test("never lets more than rate x elapsed through from a fresh start", async () => {
    const clock = steppingClock();
    const b = new TokenBucket(clock);
    b.setRate(50 * MiB); // 1 MiB per 20 ms
    const at: number[] = [];
    await Promise.all(Array.from({ length: 10 }, () => b.take(MiB).then(() => at.push(clock.t))));
    expect(at).toHaveLength(10);
    at.forEach((t, i) => expect(t).toBeGreaterThanOrEqual((i + 1) * 20 - 1));
    expect(at[9]!).toBeLessThanOrEqual(10 * 20 + 10);
  });

  test("serves the lowest priority number first, equal ones in arrival order", async () => {
    const clock = steppingClock();
    const b = new TokenBucket(clock);
    b.setRate(50 * MiB);
    const order: string[] = [];
    const takes = [b.take(MiB, 5).then(() => order.push("young-1")), b.take(MiB, 5).then(() => order.push("young-2"))];
    takes.push(b.take(MiB, 1).then(() => order.push("old-1")), b.take(MiB, 1).then(() => order.push("old-2")));
    await Promise.all(takes);
    // the first young taker was already at the head when the old ones came: it may go first,
    // every other grant goes to the old job before the young one
    expect(order.indexOf("old-1")).toBeLessThan(order.indexOf("young-2"));
    expect(order.indexOf("old-2")).toBeLessThan(order.indexOf("young-2"));
    expect(order.indexOf("old-1")).toBeLessThan(order.indexOf("old-2"));
  });

  test("unlimited rate lets everything through at once, in order", async () => {
    const clock = steppingClock();
    const b = new TokenBucket(clock);
    const order: number[] = [];
    await Promise.all([3, 1, 2].map((p) => b.take(64 * MiB, p).then(() => order.push(p))));
    expect(clock.t).toBe(0);
    expect(order).toHaveLength(3);
  });
});
