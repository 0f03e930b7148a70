// An MDM start under load (src/mdm/core/health.ts StartCatchUp): while the MDM hears fewer than
// CATCH_UP_SHARE of the beats its nodes send, that time does not count against any node, for at
// most its bound; a MDM that keeps up declares a silent node down at the usual timeout.

import { describe, expect, test } from "bun:test";
import { CATCH_UP_SHARE, HealthTracker, StartCatchUp } from "../src/mdm/core/health.ts";

const INTERVAL = 1000;
const TIMEOUT = 5000;
const TICK = 250;

function cluster(n: number) {
  let now = 1_000_000;
  const clock = () => now;
  const health = new HealthTracker(clock, TIMEOUT);
  const ids = Array.from({ length: n }, (_, i) => `sds${i}`);
  health.seedAll(ids, []);
  const catchUp = new StartCatchUp(() => health, clock, INTERVAL);
  /** run `ms` of ticks; each second the first `beating` nodes beat */
  const run = (ms: number, beating: number) => {
    for (let t = 0; t < ms; t += TICK) {
      now += TICK;
      if (now % INTERVAL === 0) for (let i = 0; i < beating; i++) health.sdsSeen(ids[i]!, 1);
      catchUp.tick();
    }
  };
  return { health, catchUp, ids, run, elapsed: () => now - 1_000_000 };
}

describe("StartCatchUp", () => {
  test("an MDM that hears its nodes declares a silent one down at the usual timeout", () => {
    const c = cluster(10);
    c.run(TIMEOUT + TICK, 9); // sds9 never beats; 90 % of the beats arrive
    expect(c.catchUp.forgivenMs).toBe(0);
    expect(c.health.sdsConnected("sds0")).toBe(true);
    expect(c.health.sdsConnected("sds9")).toBe(false);
  });

  test("an MDM hearing fewer than the share of its nodes' beats declares nobody down while it catches up, for at most 3 timeouts", () => {
    const c = cluster(10);
    const few = Math.floor(10 * CATCH_UP_SHARE) - 2; // 3 of 10 nodes' beats get through
    c.run(2 * TIMEOUT, few);
    expect(c.catchUp.forgivenMs).toBeGreaterThan(0);
    for (const id of c.ids) expect(c.health.sdsConnected(id)).toBe(true); // the silent ones too: their beats may be in our queue
    // past the bound the usual rule holds, whatever the rate
    c.run(3 * TIMEOUT - c.elapsed() + TIMEOUT + TICK, few);
    expect(c.health.sdsConnected("sds0")).toBe(true);
    expect(c.health.sdsConnected("sds9")).toBe(false);
    const forgiven = c.catchUp.forgivenMs;
    c.run(10 * TIMEOUT, few);
    expect(c.catchUp.forgivenMs).toBe(forgiven);
  });

  test("once the MDM catches up, deadlines run again", () => {
    const c = cluster(10);
    c.run(3000, 2); // behind: forgiven
    const forgiven = c.catchUp.forgivenMs;
    expect(forgiven).toBeGreaterThan(0);
    c.run(TIMEOUT + 2 * TIMEOUT, 9); // caught up: sds9, silent all along, goes down within a window and a timeout
    expect(c.health.sdsConnected("sds9")).toBe(false);
    expect(c.health.sdsConnected("sds8")).toBe(true);
  });
});
